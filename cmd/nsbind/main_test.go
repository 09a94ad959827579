package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
)

// TestMain lets the test binary play every part of a run, so the end-to-end
// tests need no separate build and can run as any user:
//   - nsbind's helper and exec step (chosen by the role variable, as in main),
//   - the nsbind CLI ("__nsbind ARGS..."),
//   - small real servers for the tests ("__server KIND PORT").
func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case roleInit:
		os.Exit(helperMain())
	case roleExec:
		os.Exit(execMain())
	case roleProbe:
		os.Exit(probeMain())
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__nsbind":
			os.Exit(run(os.Args[2:], os.Stdout, os.Stderr))
		case "__server":
			os.Exit(testServer(os.Args[2:]))
		case "__seccomp_no_userns":
			os.Exit(seccompNoUserns(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// testServer runs a small server on a port inside:
//
//	echo PORT      TCP echo on [::]:PORT, each connection half-closed after its echo
//	echo4 PORT     the same on 0.0.0.0:PORT only
//	sigwait        prints "ready", exits 42 on SIGTERM
//	flood, farewell, sink, echo1   servers for the fault tests (faultServer)
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
	case "sigwait":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println("ready")
		<-sigs
		fmt.Println("got SIGTERM")
		return 42
	}
	fmt.Fprintf(os.Stderr, "unknown test server %q\n", args[0])
	return 2
}
