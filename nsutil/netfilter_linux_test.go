package nsutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// insideEnv marks the copy of the test binary that runs inside the
// namespaces made by inNamespace.
const insideEnv = "NSUTIL_TEST_INSIDE"

// inNamespace runs the test named test of this binary again in a new user
// and network namespace, as the helper runs (the user mapped to itself,
// ambient CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW), and fails t with
// its output if it fails. It skips where user namespaces cannot be made,
// except under NSBIND_TEST_REQUIRE_USERNS=1.
func inNamespace(t *testing.T, test string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_NET_RAW},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "fork/exec") {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("cannot create a user namespace here (NSBIND_TEST_REQUIRE_USERNS=1): %v", err)
		}
		t.Skipf("cannot create a user namespace here: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s inside the namespaces: %v\n%s", test, err, out)
	}
}

// The probe finds what this kernel has; scripts/test.sh runs on kernels
// that have it all.
func TestProbeOutbound(t *testing.T) {
	if os.Getenv(insideEnv) != "1" {
		inNamespace(t, "TestProbeOutbound")
		return
	}
	if err := ProbeOutbound(); err != nil {
		t.Fatalf("ProbeOutbound: %v", err)
	}
	// The probe leaves the namespace it runs in alone. (/proc/net is the
	// main thread's, which may be the probe's own, parked for good.)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if routes, _ := os.ReadFile("/proc/thread-self/net/route"); strings.Count(string(routes), "\n") > 1 {
		t.Fatalf("the probe left routes behind:\n%s", routes)
	}
}

// A SYN held in the queue gets the verdict the helper gives: a redirect to
// the helper's listener with the original destination, or the errors the
// program's connect() then sees, at once.
func TestQueueVerdicts(t *testing.T) {
	if os.Getenv(insideEnv) != "1" {
		inNamespace(t, "TestQueueVerdicts")
		return
	}
	if err := SetupLoopback(); err != nil {
		t.Fatal(err)
	}
	ln4, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln4.Addr().(*net.TCPAddr).Port)
	ln6, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback, Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetupOutbound(OutboundRules{Queue: 3, TCPPort: port, UDPPort: port}); err != nil {
		t.Fatal(err)
	}
	q, err := OpenQueue(3)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	verdicts := map[uint16]Verdict{81: VerdictRefuse, 82: VerdictHostUnreach, 83: VerdictNetUnreach, 84: VerdictProhibited}
	go func() {
		var buf []byte
		for {
			syns, err := q.Next(&buf)
			if err != nil {
				return
			}
			for _, s := range syns {
				q.Verdict(s, verdicts[s.Dst.Port()]) // 80: VerdictAccept
			}
		}
	}()
	go func() {
		for _, ln := range []*net.TCPListener{ln4, ln6} {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					rc, _ := c.(*net.TCPConn).SyscallConn()
					rc.Control(func(fd uintptr) {
						level := unix.SOL_IP
						if c.LocalAddr().(*net.TCPAddr).IP.To4() == nil {
							level = unix.SOL_IPV6
						}
						// SO_ORIGINAL_DST: a sockaddr whose port is
						// enough to check.
						var b [28]byte
						n := uint32(len(b))
						unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), unix.SO_ORIGINAL_DST,
							uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
						fmt.Fprintf(c, "%d", uint16(b[2])<<8|uint16(b[3]))
					})
					c.Close()
				}
			}()
		}
	}()
	tests := []struct {
		port uint16
		want error
	}{
		{81, syscall.ECONNREFUSED},
		{82, syscall.EHOSTUNREACH},
		{83, syscall.ENETUNREACH},
	}
	for _, host := range []string{"198.51.100.2", "2001:db8::2"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, "80"), 5*time.Second)
		if err != nil {
			t.Fatalf("%s:80 accepted: %v", host, err)
		}
		b := make([]byte, 8)
		n, _ := c.Read(b)
		c.Close()
		if string(b[:n]) != "80" {
			t.Errorf("%s:80: the listener saw original port %q, want 80", host, b[:n])
		}
		for _, tt := range tests {
			start := time.Now()
			_, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(tt.port)), 5*time.Second)
			if !errors.Is(err, tt.want) || time.Since(start) > time.Second {
				t.Errorf("%s:%d: %v after %v, want %v at once", host, tt.port, err, time.Since(start), tt.want)
			}
		}
	}
}

func TestParseTCPTuple(t *testing.T) {
	syn4 := []byte{0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 198, 51, 100, 2,
		0x9c, 0x40, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0, 0xa0, 0x02}
	syn6 := make([]byte, 40, 60)
	syn6[0], syn6[6] = 0x60, 6
	copy(syn6[8:], netip.IPv6Loopback().AsSlice())
	copy(syn6[24:], netip.MustParseAddr("2001:db8::2").AsSlice())
	syn6 = append(syn6, 0x9c, 0x40, 0x01, 0xbb, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, 0x02)
	udp4 := append([]byte(nil), syn4...)
	udp4[9] = 17
	tests := []struct {
		name     string
		pkt      []byte
		src, dst string
		headLen  int
		ok       bool
	}{
		{"ipv4", syn4, "127.0.0.1:40000", "198.51.100.2:80", 28, true},
		{"ipv6", syn6, "[::1]:40000", "[2001:db8::2]:443", 48, true},
		{"udp", udp4, "", "", 0, false},
		{"short", syn4[:22], "", "", 0, false},
		{"empty", nil, "", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, head, ok := parseTCPTuple(tt.pkt)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if src.String() != tt.src || dst.String() != tt.dst || len(head) != tt.headLen {
				t.Fatalf("got %s -> %s (%d bytes quoted), want %s -> %s (%d)", src, dst, len(head), tt.src, tt.dst, tt.headLen)
			}
		})
	}
}
