package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The child side of these tests is this test binary run again with
// activationModeEnv set: TestMain then plays the activated
// process and prints one activationReportPrefix line of JSON.
const (
	activationModeEnv      = "NSBIND_TEST_ACTIVATION"
	activationSpecsEnv     = "NSBIND_TEST_ACTIVATION_SPECS"
	activationFDsEnv       = "NSBIND_TEST_ACTIVATION_FDS"
	activationReportPrefix = "activation-report: "
	activationTimeout      = 30 * time.Second
)

// activationReport is what the child saw.
type activationReport struct {
	// SocketFDs are the child's descriptors that are sockets.
	SocketFDs []int
	Sockets   []string
	// CloseOnExec is FD_CLOEXEC of descriptors 3.. after Inherited.
	CloseOnExec []bool
	Claimed     []string
	Rest        []string
	Err         string
}

// TestMain lets the test binary play the activated process when
// activationModeEnv is set (before anything opens a descriptor, as nsbind's
// parent does), and run the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(activationModeEnv) != "" {
		activationChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// activationChild is the activated process.
func activationChild() {
	mode := os.Getenv(activationModeEnv)
	if mode == "out" {
		activationOutChild()
		return
	}
	var r activationReport
	report := func() {
		b, _ := json.Marshal(r)
		fmt.Printf("%s%s\n", activationReportPrefix, b)
	}
	defer report()
	// Inherited first, before anything opens a descriptor, as nsbind's
	// parent does: a descriptor 3.. that is missing would be taken.
	socks, err := Inherited(os.Environ(), os.Getpid())
	r.SocketFDs = socketFDs()
	for _, fd := range r.SocketFDs {
		if fd >= ListenFDsStart {
			flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			r.CloseOnExec = append(r.CloseOnExec, flags&unix.FD_CLOEXEC != 0)
		}
	}
	if err != nil {
		r.Err = "inherited: " + err.Error()
		return
	}
	for _, a := range socks {
		r.Sockets = append(r.Sockets, a.String())
	}
	var specs []Spec
	for _, arg := range strings.Fields(os.Getenv(activationSpecsEnv)) {
		s, err := ParseSpec(arg)
		if err != nil {
			r.Err = err.Error()
			return
		}
		specs = append(specs, s)
	}
	bs, err := Expand(specs)
	if err != nil {
		r.Err = err.Error()
		return
	}
	claimed, rest, err := Claim(bs, socks)
	if err != nil {
		var ue *UnclaimedError
		if !errors.As(err, &ue) {
			r.Err = "claim: not an *UnclaimedError: " + err.Error()
			return
		}
		r.Err = "claim: " + err.Error()
		return
	}
	for _, h := range claimed {
		r.Claimed = append(r.Claimed, h.String())
	}
	for _, b := range rest {
		r.Rest = append(r.Rest, hostString(b.Host))
	}
}

// activationOutChild plays the exec step of --socket-activation: it moves
// the sockets listed in activationFDsEnv to 3.. and execs the test binary
// again, as the activated server, with ActivationEnv of its own pid.
func activationOutChild() {
	var fds []int
	var names []string
	for _, f := range strings.Fields(os.Getenv(activationFDsEnv)) {
		fdText, name, _ := strings.Cut(f, "=")
		fd, _ := strconv.Atoi(fdText)
		fds = append(fds, fd)
		names = append(names, name)
	}
	if err := ActivationFDs(fds); err != nil {
		fmt.Printf("%s{\"Err\": %q}\n", activationReportPrefix, "ActivationFDs: "+err.Error())
		return
	}
	env := WithoutActivationEnv(os.Environ())
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, activationModeEnv+"=") })
	env = append(env, activationModeEnv+"=claim")
	env = append(env, ActivationEnv(names, os.Getpid())...)
	exe, _ := os.Executable()
	err := syscall.Exec(exe, []string{exe, "-test.run=^TestActivationChild$"}, env)
	fmt.Printf("%s{\"Err\": %q}\n", activationReportPrefix, "exec: "+err.Error())
}

// childGORACE keeps a child built with -race from sleeping a second at
// exit (the race detector's atexit_sleep_ms) on top of the test's options.
func childGORACE() string {
	v := os.Getenv("GORACE")
	if v != "" {
		v += " "
	}
	return "GORACE=" + v + "atexit_sleep_ms=0"
}

// socketFDs lists the calling process's descriptors that are sockets.
func socketFDs() []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			out = append(out, fd)
		}
	}
	slices.Sort(out)
	return out
}

// runActivated runs the child with files at 3.., env added to the test's
// own (without LISTEN_*). With setPID, LISTEN_PID becomes the child's own
// pid the way systemd sets it: a shell exports its $$ and execs the child,
// which keeps the pid.
func runActivated(t *testing.T, files []*os.File, env []string, setPID bool) activationReport {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), activationTimeout)
	defer cancel()
	args := []string{exe, "-test.run=^TestActivationChild$"}
	if setPID {
		args = append([]string{"/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`, "sh"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(append(WithoutActivationEnv(os.Environ()), env...), childGORACE())
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return parseActivationReport(t, out)
}

func parseActivationReport(t *testing.T, out []byte) activationReport {
	t.Helper()
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, activationReportPrefix); ok {
			var r activationReport
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("child report %q: %v", rest, err)
			}
			return r
		}
	}
	t.Fatalf("child printed no report:\n%s", out)
	return activationReport{}
}

// sockSpec is a socket a test hands the child: the network of Go's
// ListenConfig ("tcp" with :: is dual-stack, "tcp6" with :: IPv6-only) and
// the address; the port is the row's.
type sockSpec struct {
	network, addr string
}

// bindRow binds socks all on one port the kernel chooses (retrying when
// another socket of the row finds it taken) and returns them as files with
// the port.
func bindRow(t *testing.T, socks []sockSpec) ([]*os.File, int) {
	t.Helper()
	var lastErr error
	for range 20 {
		var files []*os.File
		port := 0
		var err error
		for _, s := range socks {
			var f *os.File
			f, port, err = bindSock(s, port)
			if err != nil {
				break
			}
			files = append(files, f)
		}
		if err == nil {
			t.Cleanup(func() {
				for _, f := range files {
					f.Close()
				}
			})
			return files, port
		}
		for _, f := range files {
			f.Close()
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("binding %v: %v", socks, lastErr)
	return nil, 0
}

func bindSock(s sockSpec, port int) (*os.File, int, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // plain TCP, as a socket unit makes
	addr := net.JoinHostPort(s.addr, strconv.Itoa(port))
	if strings.HasPrefix(s.network, "udp") {
		pc, err := lc.ListenPacket(context.Background(), s.network, addr)
		if err != nil {
			return nil, 0, err
		}
		defer pc.Close()
		f, err := pc.(*net.UDPConn).File()
		return f, pc.LocalAddr().(*net.UDPAddr).Port, err
	}
	ln, err := lc.Listen(context.Background(), s.network, addr)
	if err != nil {
		return nil, 0, err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	return f, ln.Addr().(*net.TCPAddr).Port, err
}

// needIPv6 skips when the host has no IPv6 loopback.
func needIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

func TestActivationClaim(t *testing.T) {
	needIPv6(t)
	var (
		lo4   = sockSpec{"tcp4", "127.0.0.1"}
		lo4b  = sockSpec{"tcp4", "127.0.0.2"}
		lo6   = sockSpec{"tcp6", "::1"}
		dual  = sockSpec{"tcp", "::"}
		only6 = sockSpec{"tcp6", "::"}
		any4  = sockSpec{"tcp4", "0.0.0.0"}
		udp4  = sockSpec{"udp4", "127.0.0.1"}
		udpD  = sockSpec{"udp", "::"}
	)
	for _, tc := range []struct {
		name  string
		socks []sockSpec
		// names is LISTEN_FDNAMES, unset when empty.
		names string
		// specs, wants: {P} is the row's port.
		specs   string
		sockets []string
		claimed []string
		rest    []string
		errHas  []string
		errNot  []string
	}{
		{name: "default spec takes a dual-stack [::] socket", socks: []sockSpec{dual}, specs: "80:{P}",
			sockets: []string{"fd 3 (tcp [::]:{P}, dual-stack)"}, claimed: []string{"[::]:{P} → :80/tcp"}},
		{name: "default spec takes 127.0.0.1 and binds no ::1", socks: []sockSpec{lo4}, specs: "80:{P}",
			sockets: []string{"fd 3 (tcp 127.0.0.1:{P})"}, claimed: []string{"127.0.0.1:{P} → :80/tcp"}},
		{name: "default spec takes both loopback sockets", socks: []sockSpec{lo4, lo6}, specs: "80:{P}",
			claimed: []string{"127.0.0.1:{P} → :80/tcp", "[::1]:{P} → :80/tcp"}},
		{name: "default spec takes IPv6-only [::] and 0.0.0.0", socks: []sockSpec{only6, any4}, specs: "80:{P}",
			sockets: []string{"fd 3 (tcp [::]:{P}, IPv6 only)", "fd 4 (tcp 0.0.0.0:{P})"},
			claimed: []string{"[::]:{P} → :80/tcp", "0.0.0.0:{P} → :80/tcp"}},
		{name: "0.0.0.0 spec takes the IPv4 wildcard socket", socks: []sockSpec{any4}, specs: "80:0.0.0.0:{P}",
			claimed: []string{"0.0.0.0:{P} → :80/tcp"}},
		{name: "[::] spec takes a dual-stack [::] socket", socks: []sockSpec{dual}, specs: "80:[::]:{P}",
			claimed: []string{"[::]:{P} → :80/tcp"}},
		{name: "[::] spec takes an IPv6-only [::] socket", socks: []sockSpec{only6}, specs: "80:[::]:{P}",
			claimed: []string{"[::]:{P} → :80/tcp"}},
		{name: "an address spec beats the default one", socks: []sockSpec{lo4b, lo4}, specs: "80:{P} 81:127.0.0.2:{P}",
			claimed: []string{"127.0.0.1:{P} → :80/tcp", "127.0.0.2:{P} → :81/tcp"}},
		{name: "udp spec takes a datagram socket", socks: []sockSpec{udp4}, specs: "53:{P}/udp",
			sockets: []string{"fd 3 (udp 127.0.0.1:{P})"}, claimed: []string{"127.0.0.1:{P} → :53/udp"}},
		{name: "tcp and udp of one port", socks: []sockSpec{dual, udpD}, specs: "80:{P} 80:{P}/udp",
			sockets: []string{"fd 3 (tcp [::]:{P}, dual-stack)", "fd 4 (udp [::]:{P}, dual-stack)"},
			claimed: []string{"[::]:{P} → :80/tcp", "[::]:{P} → :80/udp"}},
		{name: "names come from LISTEN_FDNAMES", socks: []sockSpec{lo4, udp4}, names: "web.socket:dns", specs: "80:{P} 53:{P}/udp",
			sockets: []string{`fd 3 "web.socket" (tcp 127.0.0.1:{P})`, `fd 4 "dns" (udp 127.0.0.1:{P})`},
			claimed: []string{"127.0.0.1:{P} → :80/tcp", "127.0.0.1:{P} → :53/udp"}},
		{name: "other specs are left to bind", socks: []sockSpec{lo4}, specs: "80:{P} 81:0",
			claimed: []string{"127.0.0.1:{P} → :80/tcp"}, rest: []string{"127.0.0.1:0", "[::1]:0"}},
		{name: "unclaimed: a datagram socket and a tcp spec", socks: []sockSpec{udp4}, specs: "53:{P}",
			errHas: []string{"inherited socket fd 3 (udp 127.0.0.1:{P}) is not published", "-p INSIDE:{P}/udp", "-p INSIDE:127.0.0.1:{P}/udp"}},
		{name: "unclaimed: host port 0 never matches", socks: []sockSpec{lo4}, specs: "80:0",
			errHas: []string{"fd 3 (tcp 127.0.0.1:{P}) is not published", "-p INSIDE:{P},"}},
		{name: "unclaimed: another address", socks: []sockSpec{dual}, specs: "80:0.0.0.0:{P}",
			errHas: []string{"fd 3 (tcp [::]:{P}, dual-stack) is not published", "-p INSIDE:[::]:{P}"}},
		{name: "unclaimed: only the socket no spec takes is named", socks: []sockSpec{lo4, udp4}, names: "web:dns", specs: "80:{P}",
			errHas: []string{`fd 4 "dns" (udp 127.0.0.1:{P}) is not published`}, errNot: []string{"fd 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, port := bindRow(t, tc.socks)
			p := func(s string) string { return strings.ReplaceAll(s, "{P}", strconv.Itoa(port)) }
			ps := func(ss []string) []string {
				out := make([]string, len(ss))
				for i, s := range ss {
					out[i] = p(s)
				}
				return out
			}
			env := []string{activationModeEnv + "=claim", activationSpecsEnv + "=" + p(tc.specs), "LISTEN_FDS=" + strconv.Itoa(len(files))}
			if tc.names != "" {
				env = append(env, "LISTEN_FDNAMES="+tc.names)
			}
			r := runActivated(t, files, env, true)
			if len(tc.errHas) == 0 && r.Err != "" {
				t.Fatalf("child: %s", r.Err)
			}
			for _, s := range ps(tc.errHas) {
				if !strings.Contains(r.Err, s) {
					t.Errorf("error %q does not contain %q", r.Err, s)
				}
			}
			for _, s := range ps(tc.errNot) {
				if strings.Contains(r.Err, s) {
					t.Errorf("error %q contains %q", r.Err, s)
				}
			}
			if len(tc.errHas) > 0 {
				return
			}
			if tc.sockets != nil && !slices.Equal(r.Sockets, ps(tc.sockets)) {
				t.Errorf("sockets = %q, want %q", r.Sockets, ps(tc.sockets))
			}
			if !slices.Equal(r.Claimed, ps(tc.claimed)) {
				t.Errorf("claimed = %q, want %q", r.Claimed, ps(tc.claimed))
			}
			if !slices.Equal(r.Rest, ps(tc.rest)) {
				t.Errorf("rest = %q, want %q", r.Rest, ps(tc.rest))
			}
			if want := slices.Repeat([]bool{true}, len(files)); !slices.Equal(r.CloseOnExec, want) {
				t.Errorf("close-on-exec of fds 3.. = %v, want %v", r.CloseOnExec, want)
			}
		})
	}
}

func TestActivationOtherPID(t *testing.T) {
	files, _ := bindRow(t, []sockSpec{{"tcp4", "127.0.0.1"}})
	// LISTEN_PID names this process, not the child: the child ignores
	// the variables and leaves the descriptor alone.
	env := []string{activationModeEnv + "=claim", "LISTEN_FDS=1", "LISTEN_PID=" + strconv.Itoa(os.Getpid())}
	r := runActivated(t, files, env, false)
	if r.Err != "" || len(r.Sockets) != 0 || len(r.Claimed) != 0 {
		t.Errorf("with another LISTEN_PID the child got %+v, want nothing", r)
	}
	if !slices.Equal(r.CloseOnExec, []bool{false}) {
		t.Errorf("close-on-exec of fd 3 = %v, want it untouched (false)", r.CloseOnExec)
	}
}

func TestActivationBadValues(t *testing.T) {
	mk := func(t *testing.T, f func(t *testing.T) *os.File) []*os.File {
		file := f(t)
		t.Cleanup(func() { file.Close() })
		return []*os.File{file}
	}
	tcp := func(t *testing.T) *os.File {
		files, _ := bindRow(t, []sockSpec{{"tcp4", "127.0.0.1"}})
		return files[0]
	}
	rawSock := func(family, typ, proto int, setup func(fd int) error) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File {
			fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
			if err != nil {
				t.Skipf("socket(%d, %d, %d): %v", family, typ, proto, err)
			}
			f := os.NewFile(uintptr(fd), "sock")
			if setup != nil {
				if err := setup(fd); err != nil {
					f.Close()
					t.Fatal(err)
				}
			}
			return f
		}
	}
	bindLo := func(fd int) error { return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) }
	for _, tc := range []struct {
		name  string
		files func(t *testing.T) []*os.File
		env   []string
		// setPID sets LISTEN_PID to the child's pid.
		setPID bool
		errHas string
	}{
		{name: "LISTEN_FDS not a number", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			env: []string{"LISTEN_FDS=abc"}, setPID: true, errHas: `LISTEN_FDS="abc" is not a number`},
		{name: "LISTEN_FDS negative", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			env: []string{"LISTEN_FDS=-1"}, setPID: true, errHas: `LISTEN_FDS="-1" is not a number`},
		{name: "LISTEN_FDS empty", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			env: []string{"LISTEN_FDS="}, setPID: true, errHas: `LISTEN_FDS="" is not a number`},
		{name: "LISTEN_FDS above the descriptors passed", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			// The child's Go runtime keeps cgroup files open from its start
			// (for GOMAXPROCS) at the lowest free descriptors, so 4 is
			// "not open" or "not a socket", never taken for a socket.
			env: []string{"LISTEN_FDS=2"}, setPID: true, errHas: "descriptor 4"},
		{name: "LISTEN_PID not a number", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			env: []string{"LISTEN_FDS=1", "LISTEN_PID=self"}, errHas: `LISTEN_PID="self" is not a process id`},
		{name: "LISTEN_FDNAMES count differs", files: func(t *testing.T) []*os.File { return mk(t, tcp) },
			env: []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=a:b"}, setPID: true, errHas: `LISTEN_FDNAMES="a:b" names 2 descriptors but LISTEN_FDS=1`},
		{name: "not a socket", files: func(t *testing.T) []*os.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return []*os.File{r}
		}, env: []string{"LISTEN_FDS=1"}, setPID: true, errHas: "descriptor 3: is not a socket"},
		{name: "unix socket", files: func(t *testing.T) []*os.File {
			ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			f, err := ln.(*net.UnixListener).File()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return []*os.File{f}
		}, env: []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=api"}, setPID: true, errHas: `descriptor 3 ("api"): is a unix socket`},
		{name: "stream socket that does not listen", files: func(t *testing.T) []*os.File {
			return mk(t, rawSock(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, bindLo))
		}, env: []string{"LISTEN_FDS=1"}, setPID: true, errHas: "descriptor 3: is a TCP socket that does not listen"},
		{name: "unbound UDP socket", files: func(t *testing.T) []*os.File {
			return mk(t, rawSock(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP, nil))
		}, env: []string{"LISTEN_FDS=1"}, setPID: true, errHas: "descriptor 3: is a udp socket that is not bound"},
		{name: "connected UDP socket", files: func(t *testing.T) []*os.File {
			return mk(t, rawSock(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP, func(fd int) error {
				return unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 9})
			}))
		}, env: []string{"LISTEN_FDS=1"}, setPID: true, errHas: "descriptor 3: is a connected UDP socket"},
		{name: "MPTCP socket", files: func(t *testing.T) []*os.File {
			return mk(t, rawSock(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, func(fd int) error {
				if err := bindLo(fd); err != nil {
					return err
				}
				return unix.Listen(fd, 1)
			}))
		}, env: []string{"LISTEN_FDS=1"}, setPID: true, errHas: "descriptor 3: is an MPTCP socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := tc.files(t)
			env := append([]string{activationModeEnv + "=claim"}, tc.env...)
			r := runActivated(t, files, env, tc.setPID)
			if !strings.Contains(r.Err, tc.errHas) {
				t.Errorf("error %q does not contain %q", r.Err, tc.errHas)
			}
		})
	}
	t.Run("LISTEN_FDS=0 is no sockets", func(t *testing.T) {
		r := runActivated(t, nil, []string{activationModeEnv + "=claim", "LISTEN_FDS=0", activationSpecsEnv + "=80:0"}, true)
		if r.Err != "" || len(r.Sockets) != 0 || !slices.Equal(r.Rest, []string{"127.0.0.1:0", "[::1]:0"}) {
			t.Errorf("child got %+v, want no sockets and both loopbacks left to bind", r)
		}
	})
}

// TestActivationOut runs the exec step of --socket-activation for real:
// the child gets the sockets at 4 and 5 (3 stands for the exec report
// pipe), moves them to 3 and 4 crosswise, and execs the activated process,
// which must find exactly those two sockets with the names it was given.
func TestActivationOut(t *testing.T) {
	needIPv6(t)
	udp, _ := bindRow(t, []sockSpec{{"udp6", "::1"}})
	tcp, _ := bindRow(t, []sockSpec{{"tcp4", "127.0.0.1"}})
	udpPort := localPort(t, udp[0])
	tcpPort := localPort(t, tcp[0])
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	env := []string{
		activationModeEnv + "=out",
		// fd 5 (tcp) goes to 3, fd 4 (udp) to 4.
		activationFDsEnv + "=5=80/tcp 4=bad:name",
		activationSpecsEnv + "=" + fmt.Sprintf("80:%d 53:[::1]:%d/udp", tcpPort, udpPort),
	}
	rep := runActivated(t, []*os.File{w, udp[0], tcp[0]}, env, false)
	if rep.Err != "" {
		t.Fatalf("child: %s", rep.Err)
	}
	if !slices.Equal(rep.SocketFDs, []int{3, 4}) {
		t.Errorf("the activated process's socket descriptors are %v, want [3 4]", rep.SocketFDs)
	}
	wantSockets := []string{
		fmt.Sprintf(`fd 3 "80/tcp" (tcp 127.0.0.1:%d)`, tcpPort),
		fmt.Sprintf(`fd 4 "unknown" (udp [::1]:%d)`, udpPort),
	}
	if !slices.Equal(rep.Sockets, wantSockets) {
		t.Errorf("sockets = %q, want %q", rep.Sockets, wantSockets)
	}
	wantClaimed := []string{
		fmt.Sprintf("127.0.0.1:%d → :80/tcp", tcpPort),
		fmt.Sprintf("[::1]:%d → :53/udp", udpPort),
	}
	if !slices.Equal(rep.Claimed, wantClaimed) {
		t.Errorf("claimed = %q, want %q", rep.Claimed, wantClaimed)
	}
}

func localPort(t *testing.T, f *os.File) int {
	t.Helper()
	sa, err := unix.Getsockname(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	t.Fatalf("unexpected address %T", sa)
	return 0
}

// TestActivationSystemdSocketActivate has the real activator of the
// systemd package bind a socket and exec this test binary, which must find
// it through Inherited with the name given by --fdname.
func TestActivationSystemdSocketActivate(t *testing.T) {
	activator, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("systemd-socket-activate (package systemd) is required: %v", err)
		}
		t.Skipf("systemd-socket-activate (package systemd) not installed: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []Proto{TCP, UDP} {
		t.Run(string(proto), func(t *testing.T) {
			var out []byte
			var port int
			for try := 0; ; try++ {
				port = freePort(t, proto)
				spec := fmt.Sprintf("80:%d", port)
				args := []string{"-l", fmt.Sprintf("127.0.0.1:%d", port), "--fdname=web"}
				if proto == UDP {
					args = append(args, "--datagram")
					spec += "/udp"
				}
				args = append(args, "-E", childGORACE(), "-E", activationModeEnv+"=claim", "-E", activationSpecsEnv+"="+spec,
					"--", exe, "-test.run=^TestActivationChild$")
				var busy bool
				out, busy = runSocketActivate(t, activator, args, proto, port)
				if !busy {
					break
				}
				if try == 5 {
					t.Fatalf("port after port was taken before systemd-socket-activate bound it")
				}
			}
			r := parseActivationReport(t, out)
			if r.Err != "" {
				t.Fatalf("child: %s", r.Err)
			}
			wantSockets := []string{fmt.Sprintf(`fd 3 "web" (%s 127.0.0.1:%d)`, proto, port)}
			wantClaimed := []string{fmt.Sprintf("127.0.0.1:%d → :80/%s", port, proto)}
			if !slices.Equal(r.Sockets, wantSockets) || !slices.Equal(r.Claimed, wantClaimed) || len(r.Rest) != 0 {
				t.Errorf("child saw sockets %q, claimed %q, rest %q; want %q, %q, none", r.Sockets, r.Claimed, r.Rest, wantSockets, wantClaimed)
			}
		})
	}
}

// freePort is a port of proto that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T, proto Proto) int {
	t.Helper()
	if proto == UDP {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runSocketActivate runs systemd-socket-activate, which execs its command
// only at the first connection or datagram: once it says it listens, one
// is sent. busy reports that the port was taken meanwhile.
func runSocketActivate(t *testing.T, activator string, args []string, proto Proto, port int) (out []byte, busy bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), activationTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, activator, args...)
	cmd.Env = WithoutActivationEnv(os.Environ())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(stdout)
		outc <- b
	}()
	listening := make(chan bool, 1)
	var errText strings.Builder
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			errText.WriteString(sc.Text() + "\n")
			if !said && strings.HasPrefix(sc.Text(), "Listening on ") {
				said = true
				listening <- true
			}
		}
		if !said {
			listening <- false
		}
	}()
	var conn net.Conn
	if <-listening {
		network := "tcp4"
		if proto == UDP {
			network = "udp4"
		}
		conn, err = net.Dial(network, fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("reaching systemd-socket-activate: %v", err)
		}
		defer conn.Close()
		if proto == UDP {
			conn.Write([]byte("wake up"))
		}
	}
	out = <-outc
	<-errDone
	err = cmd.Wait()
	if conn == nil {
		if strings.Contains(errText.String(), "Address already in use") {
			return nil, true
		}
		t.Fatalf("systemd-socket-activate did not listen: %v\n%s", err, errText.String())
	}
	if err != nil {
		t.Fatalf("systemd-socket-activate %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errText.String())
	}
	return out, false
}
