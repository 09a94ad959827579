package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// HostSocket is a bound host socket and the binding it serves.
type HostSocket struct {
	Binding
	// Addr is the bound address, with the port the kernel chose for port 0.
	Addr netip.AddrPort
	// File is the socket, to hand to the helper.
	File *os.File
	// Role is what the socket does on the native path.
	Role Role
	// Hidden: not an address nsbind prints (the catch-all of the default
	// loopback spec, the IPv4 family socket of [::]).
	Hidden bool
}

// Role is what a host socket does on the native path (BindNative).
type Role string

// The roles of host sockets.
const (
	// RolePlain listens from the start: every socket of the relay, UDP
	// sockets, the socket of one IPv6 address.
	RolePlain Role = ""
	// RoleCatchAll is an AF_INET6 socket, not IPv6-only, that listens from
	// the start and takes the clients of every family no family socket
	// takes: [::] on lo for the default loopback spec (fact 11 of
	// DESIGN.md: 127.0.0.1 and ::1 clients and nobody else), [::] for
	// [::], [::ffff:A] for an IPv4 address A (0.0.0.0 included). A
	// dual-stack server gets it whole.
	RoleCatchAll Role = "catch-all"
	// RoleFamily is a socket of one family (AF_INET, or AF_INET6 with
	// IPV6_V6ONLY) bound to the catch-all's port with SO_REUSEPORT but not
	// listening, so it gets no client. When the server binds that family
	// it listens and is given to the server: the kernel's lookup prefers a
	// listener on the exact address, and an AF_INET one over an AF_INET6
	// one on the wildcard, so it takes its family from the catch-all,
	// which keeps the clients queued on it and the other family.
	RoleFamily Role = "family"
)

// Close closes the socket.
func (h HostSocket) Close() error { return h.File.Close() }

// String formats the socket as nsbind prints it: "127.0.0.1:8080 → :80/tcp".
func (h HostSocket) String() string {
	return fmt.Sprintf("%s → :%d/%s", h.Addr, h.Inside, h.Proto)
}

// BindError is a host socket that could not be bound.
type BindError struct {
	Binding Binding
	Err     error
}

func (e *BindError) Error() string {
	return fmt.Sprintf("binding host %s %s for %q: %v", e.Binding.Proto, hostString(e.Binding.Host), e.Binding.Spec.String(), e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }

// ephemeralTries bounds the attempts to find a kernel-chosen port that is
// free on both loopback addresses.
const ephemeralTries = 20

// Bind binds every host socket of bs. The default loopback of a family the
// host lacks (no ::1 where IPv6 is off) is skipped with a debug line. When a
// spec asks the kernel for a port (port 0) on both default loopback
// addresses, both get the same port. On error nothing stays bound.
//
// With native, the TCP bindings of each spec and inside port get the
// sockets of the native path instead (bindNative): a catch-all and family
// sockets beside it.
func Bind(bs []Binding, native bool, logger *slog.Logger) ([]HostSocket, error) {
	var out []HostSocket
	fail := func(err error) ([]HostSocket, error) {
		CloseAll(out)
		return nil, err
	}
	for i := 0; i < len(bs); {
		// A group is the bindings of one spec and inside port: the
		// addresses of one published port, which share the port the
		// kernel chooses for port 0.
		j := i + 1
		for j < len(bs) && bs[j].Spec == bs[i].Spec && bs[j].Inside == bs[i].Inside && bs[j].Proto == bs[i].Proto {
			j++
		}
		var group []HostSocket
		var err error
		if native && bs[i].Proto == TCP {
			group, err = bindNative(bs[i:j], logger)
		} else {
			group, err = bindGroup(bs[i:j], logger)
		}
		if err != nil {
			return fail(err)
		}
		out = append(out, group...)
		i = j
	}
	return out, nil
}

func bindGroup(group []Binding, logger *slog.Logger) ([]HostSocket, error) {
	tries := 1
	if len(group) > 1 {
		tries = ephemeralTries
	}
	var err error
	for range tries {
		var out []HostSocket
		var port uint16
		for _, b := range group {
			if port != 0 {
				b.Host = netip.AddrPortFrom(b.Host.Addr(), port)
			}
			var h HostSocket
			h, err = bindOne(b)
			if err != nil && b.Default && b.Host.Addr().Is6() && unavailable(err) {
				logger.Debug("IPv6 loopback not available, publishing on IPv4 only", "spec", b.Spec.String(), "err", err)
				err = nil
				continue
			}
			if err != nil {
				break
			}
			port = h.Addr.Port()
			out = append(out, h)
		}
		if err == nil {
			return out, nil
		}
		CloseAll(out)
		if !errors.Is(err, syscall.EADDRINUSE) || group[0].Host.Port() != 0 {
			break
		}
	}
	return nil, err
}

// unavailable reports an error binding an address family the host lacks.
func unavailable(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
}

func bindOne(b Binding) (HostSocket, error) {
	network := string(b.Proto)
	switch {
	case b.Host.Addr().Is4():
		network += "4"
	case !b.Host.Addr().IsUnspecified():
		network += "6" // a specific IPv6 address; [::] stays dual-stack
	}
	var lc net.ListenConfig
	// The relay splices between plain TCP sockets; MPTCP sockets cannot splice.
	lc.SetMultipathTCP(false)
	if b.Proto == TCP && b.Host.Port() == 0 {
		// A port the kernel picks is free: it needs no SO_REUSEADDR, which
		// Go sets on listeners. With it, bind(0) searches only the lower
		// half of the ephemeral range first, through every port taken
		// already: thousands of ports took quadratic time.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0) })
			return nil
		}
	}
	addr := b.Host.String()
	var (
		f     *os.File
		local net.Addr
		err   error
	)
	switch b.Proto {
	case TCP:
		var ln net.Listener
		ln, err = lc.Listen(context.Background(), network, addr)
		if err == nil {
			local = ln.Addr()
			f, err = ln.(*net.TCPListener).File()
			ln.Close()
		}
	case UDP:
		var pc net.PacketConn
		pc, err = lc.ListenPacket(context.Background(), network, addr)
		if err == nil {
			local = pc.LocalAddr()
			f, err = pc.(*net.UDPConn).File()
			pc.Close()
		}
	default:
		err = fmt.Errorf("unknown protocol %q", b.Proto)
	}
	if err != nil {
		return HostSocket{}, &BindError{Binding: b, Err: err}
	}
	var port int
	switch a := local.(type) {
	case *net.TCPAddr:
		port = a.Port
	case *net.UDPAddr:
		port = a.Port
	}
	// Keep the address as asked: the kernel only fills in the port.
	return HostSocket{Binding: b, Addr: netip.AddrPortFrom(b.Host.Addr(), uint16(port)), File: f}, nil
}

// CloseAll closes every socket of hs.
func CloseAll(hs []HostSocket) {
	for _, h := range hs {
		h.Close()
	}
}
