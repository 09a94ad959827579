//go:build !linux

package parent

import "fmt"

// Run needs Linux namespaces; elsewhere it only says so.
func Run(o Options) int {
	fmt.Fprintln(o.Stderr, "nsbind: nsbind runs on Linux only (it needs user and network namespaces)")
	return 125
}
