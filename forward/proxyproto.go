package forward

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// proxyV2Signature starts every PROXY protocol v2 header.
var proxyV2Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// ProxyHeader is the PROXY protocol header (version 1 or 2, as HAProxy
// specifies it) that tells a server expecting one that a TCP connection
// from client arrived at local. Addresses of mixed families are sent as
// IPv6 (an IPv4 one mapped).
func ProxyHeader(version int, client, local netip.AddrPort) ([]byte, error) {
	c, l := client.Addr().Unmap(), local.Addr().Unmap()
	v4 := c.Is4() && l.Is4()
	if !v4 {
		c, l = as16(c), as16(l)
	}
	switch version {
	case 1:
		family := "TCP6"
		if v4 {
			family = "TCP4"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", family, c, l, client.Port(), local.Port()), nil
	case 2:
		b := append([]byte(nil), proxyV2Signature[:]...)
		b = append(b, 0x21) // version 2, command PROXY
		if v4 {
			b = append(b, 0x11) // AF_INET, STREAM
			b = binary.BigEndian.AppendUint16(b, 12)
			s, d := c.As4(), l.As4()
			b = append(b, s[:]...)
			b = append(b, d[:]...)
		} else {
			b = append(b, 0x21) // AF_INET6, STREAM
			b = binary.BigEndian.AppendUint16(b, 36)
			s, d := c.As16(), l.As16()
			b = append(b, s[:]...)
			b = append(b, d[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, client.Port())
		b = binary.BigEndian.AppendUint16(b, local.Port())
		return b, nil
	}
	return nil, fmt.Errorf("unknown PROXY protocol version %d (use 1 or 2)", version)
}

// as16 is a as an IPv6 address, IPv4 ones mapped.
func as16(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
