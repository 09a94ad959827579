// Command benchserver is the server and the small clients of
// scripts/bench.sh:
//
//	benchserver serve -http ADDR -udp ADDR     HTTP ("hello") and UDP echo
//	benchserver serve -shape N -http PORT -sink PORT
//	                                           HTTP, and a TCP sink that reads and
//	                                           discards, on sockets of shape N (1 one
//	                                           dual-stack [::], 2 0.0.0.0 and [::]
//	                                           IPv6-only, 3 0.0.0.0 only)
//	benchserver blast -addr ADDR -d 3s         Gbit/s sent to a sink over one connection
//	benchserver udpping -addr ADDR -d 3s -c 4  UDP echo round trips per second
//	benchserver hold -addr ADDR -n 10000       hold N idle TCP connections until stdin closes
//	benchserver startup -url URL -- CMD...     ms from starting CMD to its first HTTP answer
//
// It is a real server on real sockets: the same binary serves every mode
// of the benchmark, so the ratios compare forwarders, not servers.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchserver serve|udpping|hold|startup ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "udpping":
		err = udpping(os.Args[2:])
	case "hold":
		err = hold(os.Args[2:])
	case "blast":
		err = blast(os.Args[2:])
	case "startup":
		err = startup(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	httpAddr := fs.String("http", ":80", "HTTP address")
	udpAddr := fs.String("udp", "", "UDP echo address (empty: none)")
	shape := fs.String("shape", "", "listen on -http and -sink (ports) as server socket shape 1, 2 or 3")
	sink := fs.String("sink", "", "with -shape: the port of a TCP sink")
	iperf := fs.String("iperf3", "", "also run iperf3 -s on this port (with -shape 3 on 0.0.0.0 only), as a child")
	fs.Parse(args)
	if *iperf != "" {
		// A child, so that the command nsbind runs is this Go binary
		// itself: nsbind traps getsockname for other programs when the
		// host port differs from the inside port (README, Performance).
		iargs := []string{"-s", "-p", *iperf}
		if *shape == "3" {
			iargs = append(iargs, "-B", "0.0.0.0")
		}
		cmd := exec.Command("iperf3", iargs...)
		if err := cmd.Start(); err != nil {
			return err
		}
		defer cmd.Process.Kill()
	}
	if *shape != "" {
		return serveShape(*shape, *httpAddr, *sink)
	}
	if *udpAddr != "" {
		pc, err := net.ListenPacket(network("udp", *udpAddr), *udpAddr)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
	}
	body := []byte("hello\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), network("tcp", *httpAddr), *httpAddr)
	if err != nil {
		return err
	}
	return http.Serve(ln, h)
}

// network is "tcp4"/"udp4" for an IPv4 address: Go would make a dual-stack
// IPv6 socket for 0.0.0.0, which nsbind --direct does not give an IPv4
// host socket to.
func network(base, addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		return base + "4"
	}
	return base
}

func udpping(args []string) error {
	fs := flag.NewFlagSet("udpping", flag.ExitOnError)
	addr := fs.String("addr", "", "UDP echo server")
	d := fs.Duration("d", 3*time.Second, "duration")
	c := fs.Int("c", 4, "concurrent clients, one datagram in flight each")
	size := fs.Int("size", 64, "datagram size")
	fs.Parse(args)
	var total atomic.Int64
	var lost atomic.Int64
	deadline := time.Now().Add(*d)
	var wg sync.WaitGroup
	for range *c {
		conn, err := net.Dial("udp", *addr)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			msg := make([]byte, *size)
			buf := make([]byte, 65536)
			for time.Now().Before(deadline) {
				conn.Write(msg)
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := conn.Read(buf); err != nil {
					lost.Add(1)
					continue
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%.0f\n", float64(total.Load())/d.Seconds())
	if lost.Load() > 0 {
		fmt.Fprintf(os.Stderr, "benchserver: %d datagrams lost\n", lost.Load())
	}
	return nil
}

func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "", "TCP address")
	n := fs.Int("n", 10000, "connections")
	fs.Parse(args)
	conns := make([]net.Conn, 0, *n)
	for i := range *n {
		c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	// Each connection is proven through by one request and its answer.
	for i, c := range conns {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}
	fmt.Println("held")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

func startup(args []string) error {
	fs := flag.NewFlagSet("startup", flag.ExitOnError)
	url := fs.String("url", "", "URL that answers once the server is up")
	rounds := fs.Int("n", 5, "rounds (the median is printed)")
	fs.Parse(args)
	cmdline := fs.Args()
	if len(cmdline) == 0 {
		return fmt.Errorf("startup: no command")
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var times []float64
	for range *rounds {
		cmd := exec.Command(cmdline[0], cmdline[1:]...)
		cmd.Stderr = io.Discard
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		var up time.Duration
		for time.Since(start) < 10*time.Second {
			resp, err := client.Get(*url)
			if err == nil {
				resp.Body.Close()
				up = time.Since(start)
				break
			}
			time.Sleep(500 * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		waited := make(chan struct{})
		go func() { cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if up == 0 {
			return fmt.Errorf("startup: %s did not answer within 10s", *url)
		}
		times = append(times, float64(up.Microseconds())/1000)
	}
	sort.Float64s(times)
	fmt.Printf("%.1f\n", times[len(times)/2])
	return nil
}

// shapeListeners listens on port as server socket shape does.
func shapeListeners(shape, port string) ([]net.Listener, error) {
	var addrs [][2]string
	switch shape {
	case "1":
		addrs = [][2]string{{"tcp", ":" + port}}
	case "2":
		addrs = [][2]string{{"tcp4", "0.0.0.0:" + port}, {"tcp6", "[::]:" + port}}
	case "3":
		addrs = [][2]string{{"tcp4", "0.0.0.0:" + port}}
	default:
		return nil, fmt.Errorf("unknown shape %q", shape)
	}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen(a[0], a[1])
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveShape serves HTTP on httpPort and a sink on sinkPort, each on the
// sockets of shape.
func serveShape(shape, httpPort, sinkPort string) error {
	body := []byte("hello\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	lns, err := shapeListeners(shape, httpPort)
	if err != nil {
		return err
	}
	if sinkPort != "" {
		sinks, err := shapeListeners(shape, sinkPort)
		if err != nil {
			return err
		}
		for _, ln := range sinks {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						io.Copy(io.Discard, c)
						c.Close()
					}()
				}
			}()
		}
	}
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errs <- http.Serve(ln, h) }()
	}
	return <-errs
}

// blast sends as fast as it can to a sink for d over one connection and
// prints Gbit/s.
func blast(args []string) error {
	fs := flag.NewFlagSet("blast", flag.ExitOnError)
	addr := fs.String("addr", "", "sink address")
	d := fs.Duration("d", 3*time.Second, "duration")
	fs.Parse(args)
	c, err := net.Dial("tcp", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	var n int64
	start := time.Now()
	deadline := start.Add(*d)
	c.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	fmt.Printf("%.2f\n", float64(n)*8/time.Since(start).Seconds()/1e9)
	return nil
}
