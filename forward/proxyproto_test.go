package forward

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
)

func TestProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name          string
		version       int
		client, local netip.AddrPort
		want          string // v1: the text; v2: hex
	}{
		{"v1 ipv4", 1, ap("198.51.100.10:38124"), ap("127.0.0.1:8080"), "PROXY TCP4 198.51.100.10 127.0.0.1 38124 8080\r\n"},
		{"v1 ipv4 through a dual-stack socket", 1, ap("[::ffff:198.51.100.10]:38124"), ap("[::ffff:192.0.2.1]:80"), "PROXY TCP4 198.51.100.10 192.0.2.1 38124 80\r\n"},
		{"v1 ipv6", 1, ap("[2001:db8::10]:5000"), ap("[::1]:8080"), "PROXY TCP6 2001:db8::10 ::1 5000 8080\r\n"},
		{"v2 ipv4", 2, ap("198.51.100.10:38124"), ap("127.0.0.1:8080"),
			"0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "c633640a" + "7f000001" + "94ec" + "1f90"},
		{"v2 ipv6", 2, ap("[2001:db8::10]:5000"), ap("[::1]:8080"),
			"0d0a0d0a000d0a515549540a" + "21" + "21" + "0024" + "20010db8000000000000000000000010" + "00000000000000000000000000000001" + "1388" + "1f90"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProxyHeader(tt.version, tt.client, tt.local)
			if err != nil {
				t.Fatal(err)
			}
			want := []byte(tt.want)
			if tt.version == 2 {
				want, _ = hex.DecodeString(tt.want)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %q (%x), want %q", got, got, want)
			}
		})
	}
	if _, err := ProxyHeader(3, ap("1.2.3.4:1"), ap("1.2.3.4:2")); err == nil {
		t.Fatal("version 3 accepted")
	}
}
