package forward

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ParseSockaddr reads a struct sockaddr_in or sockaddr_in6: the address a
// server passed to bind(2) (read from its memory, so any bytes at all), or
// one the kernel reports (SO_ORIGINAL_DST, IP_ORIGDSTADDR). An IPv6 address
// stays 16 bytes long (an IPv4-mapped one included). ok is false for other
// families and for a buffer shorter than the kernel accepts (bind then
// fails with EINVAL by itself).
func ParseSockaddr(b []byte) (ap netip.AddrPort, ok bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, false
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), true
	case unix.AF_INET6:
		// The kernel accepts the 24 bytes of RFC 2133, without scope id.
		if len(b) < 24 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:])), true
	}
	return netip.AddrPort{}, false
}
