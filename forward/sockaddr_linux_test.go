package forward

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr encodes ap as the kernel's struct sockaddr_in or sockaddr_in6,
// laid out by x/sys's definitions of them (the port in network order).
func sockaddr(ap netip.AddrPort) []byte {
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], ap.Port())
	if ap.Addr().Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: *(*uint16)(unsafe.Pointer(&port)), Addr: ap.Addr().As4()}
		return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)))
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: *(*uint16)(unsafe.Pointer(&port)), Addr: ap.Addr().As16()}
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)))
}

func TestParseSockaddr(t *testing.T) {
	unixAddr := make([]byte, 110)
	binary.NativeEndian.PutUint16(unixAddr, unix.AF_UNIX)
	withFlowAndScope := sockaddr(netip.MustParseAddrPort("[fe80::1]:22"))
	binary.NativeEndian.PutUint32(withFlowAndScope[4:], 7)  // sin6_flowinfo
	binary.NativeEndian.PutUint32(withFlowAndScope[24:], 2) // sin6_scope_id
	tests := []struct {
		name string
		b    []byte
		want string // "" when not ok
	}{
		{"IPv4", sockaddr(netip.MustParseAddrPort("0.0.0.0:80")), "0.0.0.0:80"},
		{"IPv4 loopback", sockaddr(netip.MustParseAddrPort("127.0.0.1:8080")), "127.0.0.1:8080"},
		{"IPv4 with trailing bytes", append(sockaddr(netip.MustParseAddrPort("192.0.2.1:53")), 1, 2, 3), "192.0.2.1:53"},
		{"IPv6", sockaddr(netip.MustParseAddrPort("[::]:443")), "[::]:443"},
		{"IPv6 without scope id (RFC 2133)", sockaddr(netip.MustParseAddrPort("[::1]:53"))[:24], "[::1]:53"},
		{"IPv6 flow info and scope id ignored", withFlowAndScope, "[fe80::1]:22"},
		{"IPv4-mapped stays IPv6", sockaddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")), "[::ffff:127.0.0.1]:80"},
		{"IPv4 too short", sockaddr(netip.MustParseAddrPort("0.0.0.0:80"))[:8], ""},
		{"IPv6 too short", sockaddr(netip.MustParseAddrPort("[::]:80"))[:20], ""},
		{"unix socket", unixAddr, ""},
		{"family only", sockaddr(netip.MustParseAddrPort("0.0.0.0:80"))[:2], ""},
		{"one byte", []byte{unix.AF_INET}, ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		ap, ok := ParseSockaddr(tt.b)
		got := ""
		if ok {
			got = ap.String()
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzParseSockaddr checks two properties. Raw bytes, as read from another
// process's memory: either ParseSockaddr refuses them, for a family other
// than the internet ones or fewer bytes than the kernel takes for the
// family, or the address it returns encodes to the same family, port and
// address bytes. And every address reads back as encoded, taking the
// input as a port and an address of 4 or 16 bytes.
func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr(netip.MustParseAddrPort("127.0.0.1:80")))
	f.Add(sockaddr(netip.MustParseAddrPort("[2001:db8::1]:443")))
	f.Add(sockaddr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:53"))[:24])
	f.Add(sockaddr(netip.MustParseAddrPort("[::1]:53"))[:23])
	f.Add([]byte{0, 80, 127, 0, 0, 1})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, ok := ParseSockaddr(b)
		var family uint16
		if len(b) >= 2 {
			family = binary.NativeEndian.Uint16(b)
		}
		minLen := map[uint16]int{unix.AF_INET: unix.SizeofSockaddrInet4, unix.AF_INET6: 24}[family]
		if wantOK := minLen != 0 && len(b) >= minLen; ok != wantOK {
			t.Fatalf("ParseSockaddr(%x): ok %v, want %v (family %d)", b, ok, wantOK, family)
		}
		if ok {
			enc := sockaddr(ap)
			// Family and port; then the address, after sin6_flowinfo
			// for IPv6.
			same := bytes.Equal(enc[:4], b[:4])
			if family == unix.AF_INET {
				same = same && bytes.Equal(enc[4:8], b[4:8])
			} else {
				same = same && bytes.Equal(enc[8:24], b[8:24])
			}
			if !same {
				t.Fatalf("ParseSockaddr(%x) = %s, which encodes to %x", b, ap, enc)
			}
		}

		if len(b) < 2 {
			return
		}
		a, ok := netip.AddrFromSlice(b[2:])
		if !ok {
			return
		}
		want := netip.AddrPortFrom(a, binary.BigEndian.Uint16(b))
		if got, ok := ParseSockaddr(sockaddr(want)); !ok || got != want {
			t.Fatalf("ParseSockaddr(sockaddr(%s)) = %s, %v", want, got, ok)
		}
	})
}
