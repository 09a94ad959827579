package parent

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

func TestLoopbackNameservers(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"systemd-resolved", "# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", []string{"127.0.0.53"}},
		{"remote only", "nameserver 192.0.2.53\nnameserver 2001:db8::53\n", nil},
		{"mixed", "nameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver ::1\n", []string{"127.0.0.1", "::1"}},
		{"zone and mapped", "nameserver ::1%lo\nnameserver ::ffff:127.0.0.54\n", []string{"::1", "127.0.0.54"}},
		{"junk", "nameserver\nnameserver localhost\n  nameserver   127.0.0.2  \n", []string{"127.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range loopbackNameservers(strings.NewReader(tt.conf)) {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOutboundFor(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 127.0.0.53\n"), 0o644)
	ap := netip.MustParseAddrPort
	fw := func(p forward.Proto, in, host string) nsutil.HostForward {
		return nsutil.HostForward{Proto: string(p), Inside: ap(in), Host: ap(host)}
	}
	tests := []struct {
		name      string
		toHost    []string
		isolated  bool
		published []forward.Binding
		want      []nsutil.HostForward
		wantErr   string
	}{
		{name: "resolver only", want: []nsutil.HostForward{
			fw(forward.UDP, "127.0.0.53:53", "127.0.0.53:53"), fw(forward.TCP, "127.0.0.53:53", "127.0.0.53:53")}},
		{name: "to-host both families", toHost: []string{"5432:15432"}, want: []nsutil.HostForward{
			fw(forward.TCP, "127.0.0.1:5432", "127.0.0.1:15432"), fw(forward.TCP, "[::1]:5432", "[::1]:15432"),
			fw(forward.UDP, "127.0.0.53:53", "127.0.0.53:53"), fw(forward.TCP, "127.0.0.53:53", "127.0.0.53:53")}},
		{name: "server publishes 53/udp", published: []forward.Binding{{Proto: forward.UDP, Inside: 53}}, want: []nsutil.HostForward{
			fw(forward.TCP, "127.0.0.53:53", "127.0.0.53:53")}},
		{name: "isolated", isolated: true},
		{name: "isolated and to-host", isolated: true, toHost: []string{"5432"}, wantErr: "contradict"},
		{name: "published and to-host", toHost: []string{"8080/udp"}, published: []forward.Binding{{Proto: forward.UDP, Inside: 8080}}, wantErr: "both use port 8080/udp"},
		{name: "bad to-host", toHost: []string{"x"}, wantErr: "invalid --to-host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := outboundFor(tt.toHost, tt.isolated, resolv, tt.published)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Isolated != tt.isolated || got.ResolvConf != resolv || !slices.Equal(got.Forwards, tt.want) {
				t.Fatalf("got %+v, want forwards %v", got, tt.want)
			}
		})
	}
}
