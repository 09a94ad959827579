//go:build !linux

package forward

import "io"

// copyStream copies src to dst until src ends (io.Copy, which splices on
// Linux; copy_linux.go does it without holding pipes while idle).
func copyStream(dst, src leg) (int64, error) {
	return io.Copy(dst, src)
}
