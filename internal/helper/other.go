//go:build !linux

package helper

// The helper needs Linux namespaces; elsewhere its roles only fail.

const exitFailed = 125

// Main is the helper; it runs on Linux only.
func Main() int { return exitFailed }

// ExecMain is the exec step; it runs on Linux only.
func ExecMain(args []string) int { return exitFailed }
