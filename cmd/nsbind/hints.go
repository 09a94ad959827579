package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsbind/nsbind/forward"
)

// describe turns an error into the one line nsbind prints: what went wrong
// and, for the errors it knows, what to do about it.
func describe(err error) string {
	if s, ok := describeSystem(err); ok {
		return s
	}
	var be *forward.BindError
	if errors.As(err, &be) {
		return describeBind(be)
	}
	return err.Error()
}

func describeBind(be *forward.BindError) string {
	b := be.Binding
	port := b.Host.Port()
	where := fmt.Sprintf("host port %d/%s on %s", port, b.Proto, b.Host.Addr())
	switch {
	case errors.Is(be.Err, syscall.EADDRINUSE):
		return fmt.Sprintf("%s is already in use (-p %s): stop what listens there (see: ss -lnp 'sport = :%d') or choose another host port, e.g. -p %d:%d, or -p %d:0 to let the kernel pick one",
			where, b.Spec, port, b.Inside, nextPort(port), b.Inside)
	case errors.Is(be.Err, syscall.EACCES):
		limit := hostUnprivilegedPortStart()
		return fmt.Sprintf("%s is privileged on this host (net.ipv4.ip_unprivileged_port_start=%d): the first number of -p is the port inside, the second the port on the host, so publish on a host port of %d or above, e.g. -p %d:%d, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=%d",
			where, limit, limit, b.Inside, max(8080, limit), port)
	case errors.Is(be.Err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("%s is not an address of this host (-p %s): use one of its addresses (ip -brief addr), 0.0.0.0 or [::] for every address, or leave the address out for loopback",
			b.Host.Addr(), b.Spec)
	}
	return be.Error()
}

// nextPort suggests another host port near p.
func nextPort(p uint16) uint16 {
	if p >= 65535 {
		return 8080
	}
	return p + 1
}

// hostUnprivilegedPortStart reads the host's lowest port an unprivileged
// user may bind (1024 when it cannot be read).
func hostUnprivilegedPortStart() int {
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
