// Package hints turns the errors of a run into the one line nsbind prints:
// what went wrong and what to type instead (docker's -p order, a privileged
// host port, a busy one).
package hints

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/internal/doctor"
)

// Describe turns an error into the one line nsbind prints: what went wrong
// and, for the errors it knows, what to do about it.
func Describe(err error) string { return DescribeRun(err, nil) }

// DescribeRun is Describe for a run with the -p arguments publish: a
// privileged host port gets a fix for every spec of the run at once.
func DescribeRun(err error, publish []string) string {
	if s, ok := doctor.Describe(err); ok {
		return s
	}
	var se *forward.SpecError
	if errors.As(err, &se) {
		return describeSpecError(se)
	}
	var be *forward.BindError
	if errors.As(err, &be) {
		return describeBind(be, parsedSpecs(publish))
	}
	return err.Error()
}

// parsedSpecs parses what of publish parses; the hints only need those.
func parsedSpecs(publish []string) []forward.Spec {
	var specs []forward.Spec
	for _, p := range publish {
		if s, err := forward.ParseSpec(p); err == nil {
			specs = append(specs, s)
		}
	}
	return specs
}

func describeBind(be *forward.BindError, specs []forward.Spec) string {
	b := be.Binding
	port := b.Host.Port()
	where := fmt.Sprintf("host port %d/%s on %s", port, b.Proto, b.Host.Addr())
	switch {
	case errors.Is(be.Err, syscall.EADDRINUSE):
		// ss -a: a port may be held by a connection (a client's, in
		// TIME_WAIT) as well as by a listener.
		used := fmt.Sprintf("%s is already in use (-p %s): stop what uses it (see: ss -anp 'sport = :%d') or choose another host port",
			where, b.Spec, port)
		if alt, ok := rangeAfter(b.Spec); ok {
			return fmt.Sprintf("%s, e.g. -p %s", used, specArg(alt))
		}
		return fmt.Sprintf("%s, e.g. -p %d:%d, or -p %d:0 to let the kernel pick one", used, b.Inside, nextPort(port), b.Inside)
	case errors.Is(be.Err, syscall.EACCES) && int(port) < HostUnprivilegedPortStart():
		return describePrivileged(be, specs, HostUnprivilegedPortStart())
	case errors.Is(be.Err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("%s is not an address of this host (-p %s): use one of its addresses (ip -brief addr), 0.0.0.0 or [::] for every address, or leave the address out for loopback",
			b.Host.Addr(), b.Spec)
	}
	return be.Error()
}

// rangeAfter is spec with its host range moved to just past itself, for a
// range spec (one port of a range is taken: the next port would be in the
// range too).
func rangeAfter(spec forward.Spec) (forward.Spec, bool) {
	n := spec.Host.Len()
	if n < 2 || spec.Host.Start == 0 || int(spec.Host.End)+n > math.MaxUint16 {
		return forward.Spec{}, false
	}
	spec.Host = forward.PortRange{Start: spec.Host.End + 1, End: spec.Host.End + uint16(n)}
	return spec, true
}

// nextPort suggests another host port near p.
func nextPort(p uint16) uint16 {
	if p == math.MaxUint16 {
		return 8080
	}
	return p + 1
}

// HostUnprivilegedPortStart reads the host's lowest port an unprivileged
// user may bind (1024 when it cannot be read).
func HostUnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}
