package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The relay through the real binary (--direct=false), side by side with
// the same echo server straight on host loopback, so one run gives the
// ratio of what the relay costs with everything the helper does around it
// (its namespace's rules and congestion control, its scheduler settings):
//
//	go test -run '^$' -bench Relayed ./cmd/nsbind/

// startRelayedEcho starts the echo test server on host loopback (via is
// false) or inside "nsbind run --direct=false" published on a free host
// port, and returns where clients reach it once it answers.
func startRelayedEcho(b *testing.B, via bool) string {
	b.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := nsbindCmd("run", "-q", "--direct=false", "-p", "7000:127.0.0.1:"+strconv.Itoa(port), "--", os.Args[0], "__server", "echo", "7000")
	if !via {
		cmd = exec.Command(os.Args[0], "__server", "echo4", strconv.Itoa(port))
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Write([]byte{1})
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
			if err == nil {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing answers on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func benchmarkRelayedConnect(b *testing.B, via bool) {
	addr := startRelayedEcho(b, via)
	buf := []byte{1}
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(buf)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkRelayedConnect is a connection per request through nsbind's
// relay: dial, one byte each way, close.
func BenchmarkRelayedConnect(b *testing.B) { benchmarkRelayedConnect(b, true) }

// BenchmarkRelayedConnectDirect is the same straight to the server.
func BenchmarkRelayedConnectDirect(b *testing.B) { benchmarkRelayedConnect(b, false) }

func benchmarkRelayedRoundTrip(b *testing.B, via bool) {
	addr := startRelayedEcho(b, via)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := []byte{1}
	for b.Loop() {
		c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelayedRoundTrip is a request and its answer on a kept
// connection through nsbind's relay (the keep-alive case).
func BenchmarkRelayedRoundTrip(b *testing.B) { benchmarkRelayedRoundTrip(b, true) }

// BenchmarkRelayedRoundTripDirect is the same straight to the server.
func BenchmarkRelayedRoundTripDirect(b *testing.B) { benchmarkRelayedRoundTrip(b, false) }

func benchmarkRelayedStream(b *testing.B, via bool) {
	addr := startRelayedEcho(b, via)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const chunk = 1 << 20
	b.SetBytes(chunk)
	done := make(chan error, 1)
	go func() { // the echo comes back: drain it
		_, err := io.Copy(io.Discard, c)
		done <- err
	}()
	buf := make([]byte, chunk)
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRelayedStream is one TCP stream through nsbind's relay and its
// echo back (both directions at once).
func BenchmarkRelayedStream(b *testing.B) { benchmarkRelayedStream(b, true) }

// BenchmarkRelayedStreamDirect is the same straight to the server.
func BenchmarkRelayedStreamDirect(b *testing.B) { benchmarkRelayedStream(b, false) }
