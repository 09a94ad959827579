//go:build !linux

package forward

import "net"

// clientGone reports whether client has gone away; only Linux says.
func clientGone(*net.TCPConn) bool { return false }
