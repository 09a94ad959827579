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
}

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
func Bind(bs []Binding, logger *slog.Logger) ([]HostSocket, error) {
	var out []HostSocket
	fail := func(err error) ([]HostSocket, error) {
		CloseAll(out)
		return nil, err
	}
	for i := 0; i < len(bs); {
		// A group is the bindings of one spec and inside port that let
		// the kernel choose the port: they must share the chosen port.
		j := i + 1
		if bs[i].Host.Port() == 0 {
			for j < len(bs) && bs[j].Host.Port() == 0 && bs[j].Spec == bs[i].Spec && bs[j].Inside == bs[i].Inside {
				j++
			}
		}
		group, err := bindGroup(bs[i:j], logger)
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
