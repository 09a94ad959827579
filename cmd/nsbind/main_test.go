package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nsbind/nsbind/internal/parent"
)

// portEntry is one line of the --ports-file the tests read.
type portEntry = parent.PortEntry

// TestMain lets the test binary play every part of a run, so the end-to-end
// tests need no separate build and can run as any user:
//   - nsbind's helper, exec step and probe (chosen by argv[0], as in main),
//   - the nsbind CLI ("__nsbind ARGS..."),
//   - small real servers for the tests ("__server KIND PORT").
func TestMain(m *testing.M) {
	if code, ok := playRole(os.Args); ok {
		os.Exit(code)
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__nsbind":
			denySeccompForTest()
			os.Exit(run(os.Args[2:], os.Stdout, os.Stderr))
		case "__server":
			os.Exit(testServer(os.Args[2:]))
		case "__seccomp_no_userns":
			os.Exit(seccompNoUserns(os.Args[2:]))
		}
	}
	cleanup := prepareRootSuite()
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// testServer runs a small server on a port inside:
//
//	echo PORT      TCP echo on [::]:PORT, each connection half-closed after its echo
//	echo4 PORT     the same on 0.0.0.0:PORT only
//	sigwait        prints "ready", exits 42 on SIGTERM
//	peer PORT [HOLD]  TCP on [::]:PORT: answers each connection with the
//	               client address it sees and closes; with HOLD (ADDR:PORT)
//	               it also keeps a listener there, taking that port inside
//	banner PORT    TCP on [::]:PORT, sends "PORT\n" to each connection and closes it
//	udppeer PORT   UDP on [::]:PORT: answers each datagram with the client
//	               address it sees
//	udpecho PORT   UDP echo on [::]:PORT (both families); udpecho4 on
//	               0.0.0.0:PORT only, udpecho6 on [::]:PORT IPv6 only
//	...            and the servers of the --direct tests (directTestServer)
//	flood, farewell, sink, echo1   servers for the fault tests (faultServer)
//	confinecheck ...  the server of the --confine tests (confineTestServer)
//
// It prints "listening" once it listens.
func testServer(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: __server KIND [PORT]")
		return 2
	}
	switch args[0] {
	case "flood", "farewell", "sink", "echo1":
		return faultServer(args)
	case "echo", "echo4":
		port, _ := strconv.Atoi(args[1])
		network := "tcp"
		if args[0] == "echo4" {
			network = "tcp4"
		}
		ln, err := net.Listen(network, fmt.Sprintf(":%d", port))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	case "peer", "banner":
		ln, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if args[0] == "peer" && len(args) > 2 {
			hold, err := net.Listen("tcp", args[2])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer hold.Close()
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			if args[0] == "peer" {
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			} else {
				fmt.Fprintf(c, "%s\n", args[1])
			}
			c.Close()
		}
	case "udppeer":
		c, err := net.ListenPacket("udp", ":"+args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening")
		buf := make([]byte, 1<<16)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return 1
			}
			c.WriteTo([]byte(from.String()), from)
		}
	case "udpecho", "udpecho4", "udpecho6":
		network := "udp" + strings.TrimPrefix(args[0], "udpecho")
		c, err := net.ListenPacket(network, ":"+args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Many clients' datagrams may wait at once.
		c.(*net.UDPConn).SetReadBuffer(4 << 20)
		fmt.Println("listening")
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return 1
			}
			c.WriteTo(buf[:n], from)
		}
	case "sigwait":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println("ready")
		<-sigs
		fmt.Println("got SIGTERM")
		return 42
	}
	if code, ok := directTestServer(args); ok {
		return code
	}
	if code, ok := confineTestServer(args); ok {
		return code
	}
	fmt.Fprintf(os.Stderr, "unknown test server %q\n", args[0])
	return 2
}
