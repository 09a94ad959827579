package nsutil

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"
)

// testSYNs are a SYN of each family as the queue hands them over: IPv4
// 127.0.0.1:40000 -> 198.51.100.2:80 and IPv6 [::1]:40000 ->
// [2001:db8::2]:443, each with its TCP options.
func testSYNs(t *testing.T) (syn4, syn6 QueuedSYN) {
	t.Helper()
	p4, _ := hex.DecodeString("4500003c1c4640004006a8ad7f000001c6336402" +
		"9c400050a1b2c3d400000000a002faf0fe300000020405b40402080a0001e2400000000001030307")
	p6, _ := hex.DecodeString("600d2a4b002806400000000000000000000000000000000120010db8000000000000000000000002" +
		"9c4001bb0a0b0c0d00000000a002ffc4003000000204ffc40402080a0001e2400000000001030307")
	for _, c := range []struct {
		p   []byte
		out *QueuedSYN
	}{{p4, &syn4}, {p6, &syn6}} {
		src, dst, head, ok := parseTCPTuple(c.p)
		if !ok {
			t.Fatalf("parseTCPTuple(%x) failed", c.p)
		}
		*c.out = QueuedSYN{ID: 7, Src: src, Dst: dst, head: head}
	}
	if syn4.Src != netip.MustParseAddrPort("127.0.0.1:40000") || syn6.Dst != netip.MustParseAddrPort("[2001:db8::2]:443") {
		t.Fatalf("test SYNs read as %v, %v", syn4, syn6)
	}
	return syn4, syn6
}

// The ICMP errors that answer a SYN, byte for byte: the type and code
// of each verdict, the unused word, the quoted IP header and first 8
// bytes of TCP, and for IPv4 the checksum (the kernel fills in ICMPv6's).
func TestUnreachMessage(t *testing.T) {
	syn4, syn6 := testSYNs(t)
	tests := []struct {
		name string
		s    QueuedSYN
		v    Verdict
		want string
	}{
		{"ipv4 host", syn4, VerdictHostUnreach, "0301" + "c778" + "00000000" +
			"4500003c1c4640004006a8ad7f000001c63364029c400050a1b2c3d4"},
		{"ipv4 net", syn4, VerdictNetUnreach, "0300" + "c779" + "00000000" +
			"4500003c1c4640004006a8ad7f000001c63364029c400050a1b2c3d4"},
		{"ipv4 prohibited", syn4, VerdictProhibited, "030d" + "c76c" + "00000000" +
			"4500003c1c4640004006a8ad7f000001c63364029c400050a1b2c3d4"},
		{"ipv6 host", syn6, VerdictHostUnreach, "0103" + "0000" + "00000000" +
			"600d2a4b002806400000000000000000000000000000000120010db8000000000000000000000002" + "9c4001bb0a0b0c0d"},
		{"ipv6 net", syn6, VerdictNetUnreach, "0100" + "0000" + "00000000" +
			"600d2a4b002806400000000000000000000000000000000120010db8000000000000000000000002" + "9c4001bb0a0b0c0d"},
		{"ipv6 prohibited", syn6, VerdictProhibited, "0101" + "0000" + "00000000" +
			"600d2a4b002806400000000000000000000000000000000120010db8000000000000000000000002" + "9c4001bb0a0b0c0d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := unreachMessage(tt.s, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(msg); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// The queue's messages carry the attributes the kernel expects, byte for
// byte: headers in host order, values big-endian, each padded to 4 bytes.
func TestQueueAttributes(t *testing.T) {
	cfg, err := configAttrs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg) != 2 {
		t.Fatalf("%d configuration messages, want 2", len(cfg))
	}
	hostOrder := func(n uint16) string { return hex.EncodeToString(binary.NativeEndian.AppendUint16(nil, n)) }
	tests := []struct {
		name string
		got  func() ([]byte, error)
		want string
	}{
		{"bind", func() ([]byte, error) { return cfg[0], nil }, hostOrder(8) + hostOrder(nfqaCfgCmd) + "01000000"},
		{"params and length", func() ([]byte, error) { return cfg[1], nil },
			hostOrder(9) + hostOrder(nfqaCfgParams) + "0000ffff02" + "000000" + hostOrder(8) + hostOrder(nfqaCfgQueueMaxlen) + "00001000"},
		{"accept", func() ([]byte, error) { return verdictAttrs(0x01020304, nfAccept, MarkAccept) },
			hostOrder(12) + hostOrder(nfqaVerdictHdr) + "0000000101020304" + hostOrder(8) + hostOrder(nfqaMark) + fmt.Sprintf("%08x", MarkAccept)},
		{"drop", func() ([]byte, error) { return verdictAttrs(0x01020304, nfDrop, 0) },
			hostOrder(12) + hostOrder(nfqaVerdictHdr) + "0000000001020304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.got()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// A queued packet's message gives its id and payload; attributes of other
// types are skipped, and reading stops at one that is cut short.
func TestPacketAttrs(t *testing.T) {
	attr := func(typ uint16, val []byte) []byte {
		b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(val)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	// struct nfqnl_msg_packet_hdr: id 0x0a0b0c0d, ETH_P_IP, hook 3.
	msg := append(attr(nfqaPacketHdr, []byte{0x0a, 0x0b, 0x0c, 0x0d, 0x08, 0x00, 3}), attr(5, []byte{1, 2})...)
	msg = append(msg, attr(nfqaPayload, []byte("packet"))...)
	id, ok, payload := packetAttrs(msg)
	if !ok || id != 0x0a0b0c0d || string(payload) != "packet" {
		t.Errorf("packetAttrs = %#x, %v, %q", id, ok, payload)
	}
	// Cut inside the payload: the id is there, the payload is not (the
	// packet is then accepted unchanged).
	if id, ok, payload := packetAttrs(msg[:len(msg)-3]); !ok || id != 0x0a0b0c0d || payload != nil {
		t.Errorf("a truncated message: %#x, %v, payload %q", id, ok, payload)
	}
	if _, ok, payload := packetAttrs(msg[:2]); ok || payload != nil {
		t.Errorf("half an attribute header: ok %v, payload %q", ok, payload)
	}
}
