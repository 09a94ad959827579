//go:build !linux

package forward

import (
	"io"
	"net"
)

// copyStream copies src to dst until src ends (io.Copy, which splices on
// Linux; copy_linux.go does it without holding pipes while idle).
func copyStream(dst, src *net.TCPConn) (int64, error) {
	return io.Copy(dst, src)
}
