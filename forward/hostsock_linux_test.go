package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A pool that asks for sockets gets them through Add, and Get hands them
// out; an empty pool asks again and gives up after Wait.
func TestSocketPool(t *testing.T) {
	var mu sync.Mutex
	asked := map[SocketKind]int{}
	var p *SocketPool
	p = &SocketPool{Wait: 200 * time.Millisecond, Refill: func(kind SocketKind, n int) error {
		mu.Lock()
		asked[kind]++
		mu.Unlock()
		if kind == UDP6 {
			return nil // never answered
		}
		files, err := NewHostSockets(kind, n)
		if err != nil {
			return err
		}
		go p.Add(kind, files)
		return nil
	}}
	defer p.Close()
	p.Fill()
	for range 3 * poolBatch {
		f, err := p.Get(context.Background(), TCP4)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := p.Get(context.Background(), UDP6); !errors.Is(err, ErrNoHostSocket) {
		t.Fatalf("Get from a pool never refilled: %v, want ErrNoHostSocket", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked[TCP4] < 3 || asked[TCP4] > 3*poolBatch/(poolBatch-poolLow)+2 {
		t.Errorf("asked for tcp4 sockets %d times for %d sockets in batches of %d", asked[TCP4], 3*poolBatch, poolBatch)
	}
}

// A host socket connected by connectHostTCP carries bytes, and the errors
// are the kernel's own.
func TestConnectHostTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.WriteString(c, "hello")
			c.Close()
		}
	}()
	defer ln.Close()
	sock := func(kind SocketKind) *os.File {
		files, err := NewHostSockets(kind, 1)
		if err != nil {
			t.Fatal(err)
		}
		return files[0]
	}
	c, err := connectHostTCP(context.Background(), sock(TCP4), ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}

	closed := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	if _, err := connectHostTCP(context.Background(), sock(TCP4), closed); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
}

func TestKindFor(t *testing.T) {
	tests := []struct {
		proto Proto
		addr  string
		want  SocketKind
	}{
		{TCP, "198.51.100.2", TCP4},
		{TCP, "2001:db8::2", TCP6},
		{TCP, "::ffff:198.51.100.2", TCP4},
		{UDP, "127.0.0.53", UDP4},
		{UDP, "::1", UDP6},
	}
	for _, tt := range tests {
		if got := KindFor(tt.proto, netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("KindFor(%s, %s) = %s, want %s", tt.proto, tt.addr, got, tt.want)
		}
	}
}

// Dial returns the host's error and keeps nothing; a successful Dial's
// connection waits for its flow.
func TestOutboundDial(t *testing.T) {
	p := &SocketPool{}
	p.Refill = func(kind SocketKind, n int) error {
		files, err := NewHostSockets(kind, n)
		if err == nil {
			go p.Add(kind, files)
		}
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := ln.Addr().(*net.TCPAddr).AddrPort()
	closedLn, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := closedLn.Addr().(*net.TCPAddr).AddrPort()
	closedLn.Close()

	// The program inside connects to 127.0.0.1:5432, which --to-host
	// leads to the listener.
	o := &Outbound{Pool: p, Logger: slog.New(slog.DiscardHandler), Stats: new(Stats),
		ToHost: map[netip.AddrPort]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5432"): open}}
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	if err := o.Dial(context.Background(), src, closed); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial to a closed port: %v", err)
	}
	if o.Stats.Failed.Load() != 1 {
		t.Errorf("Failed = %d, want 1", o.Stats.Failed.Load())
	}
	dst := netip.MustParseAddrPort("127.0.0.1:5432")
	var wg sync.WaitGroup
	for range 2 { // the second is a retransmitted SYN
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Dial(context.Background(), src, dst); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c := o.take(outFlow{src, dst})
	if c == nil {
		t.Fatal("no connection kept for the flow")
	}
	defer c.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != open {
		t.Fatalf("connected to %s, want the --to-host address %s", got, open)
	}
	if o.take(outFlow{src, dst}) != nil {
		t.Fatal("a flow's connection was handed out twice")
	}
}
