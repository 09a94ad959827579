package parent

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

var (
	localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	localhost6 = netip.IPv6Loopback()
)

// outboundFor checks the outbound flags against each other and the
// published ports, and makes the helper's configuration of outbound
// connections (internal/helper, outbound_linux.go).
func outboundFor(toHost []string, isolated bool, resolvConf string, published []forward.Binding) (nsutil.OutboundConfig, error) {
	out := nsutil.OutboundConfig{Isolated: isolated}
	insideUsed := make(map[string]bool)
	for _, b := range published {
		insideUsed[fmt.Sprintf("%d/%s", b.Inside, b.Proto)] = true
	}
	seen := make(map[string]bool)
	add := func(f nsutil.HostForward) {
		key := f.Inside.String() + "/" + f.Proto
		if !seen[key] {
			seen[key] = true
			out.Forwards = append(out.Forwards, f)
		}
	}
	for _, arg := range toHost {
		t, err := forward.ParseToHost(arg)
		if err != nil {
			return out, err
		}
		if isolated {
			return out, fmt.Errorf("--to-host %s and --isolated contradict each other: --isolated closes every way out, --to-host opens one; drop one of them", arg)
		}
		if insideUsed[fmt.Sprintf("%d/%s", t.Port, t.Proto)] {
			return out, fmt.Errorf("--to-host %s and -p both use port %d/%s inside: a connection to localhost:%d inside cannot go to the server and to the host; choose another port for one of them", arg, t.Port, t.Proto, t.Port)
		}
		add(nsutil.HostForward{Proto: string(t.Proto), Inside: netip.AddrPortFrom(localhost4, t.Port), Host: netip.AddrPortFrom(localhost4, t.HostPort)})
		add(nsutil.HostForward{Proto: string(t.Proto), Inside: netip.AddrPortFrom(localhost6, t.Port), Host: netip.AddrPortFrom(localhost6, t.HostPort)})
	}
	path := "/etc/resolv.conf"
	if resolvConf != "" {
		f, err := os.Open(resolvConf)
		if err != nil {
			return out, fmt.Errorf("--resolv-conf: %w", err)
		}
		st, err := f.Stat()
		f.Close()
		if err == nil && st.IsDir() {
			// It is mounted over the file /etc/resolv.conf, where the
			// kernel refuses a directory (ENOTDIR, which reads the wrong
			// way round).
			return out, fmt.Errorf("--resolv-conf %s is a directory: give a file in resolv.conf(5)'s format, e.g. --resolv-conf ./resolv.conf", resolvConf)
		}
		// The helper mounts it from its own working directory: make it
		// absolute here.
		if abs, err := filepath.Abs(resolvConf); err == nil {
			resolvConf = abs
		}
		out.ResolvConf = resolvConf
		path = resolvConf
	}
	if isolated {
		return out, nil
	}
	// A resolver on a loopback address is the host's; inside, loopback is
	// the namespace's own, so the helper listens there and forwards. A
	// server inside that itself serves port 53 is left alone.
	if f, err := os.Open(path); err == nil {
		servers := loopbackNameservers(f)
		f.Close()
		for _, a := range servers {
			for _, p := range []forward.Proto{forward.UDP, forward.TCP} {
				if !insideUsed["53/"+string(p)] {
					ap := netip.AddrPortFrom(a, 53)
					add(nsutil.HostForward{Proto: string(p), Inside: ap, Host: ap})
				}
			}
		}
	}
	return out, nil
}

// loopbackNameservers lists the nameservers of a resolv.conf that are
// loopback addresses.
func loopbackNameservers(r io.Reader) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// "nameserver ::1%lo" may carry a zone.
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		a = a.WithZone("").Unmap()
		if a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}
