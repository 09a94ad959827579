package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bug 1: a range of 1,300 ports (2,600 host sockets) failed with E2BIG,
// "argument list too long", when the helper's configuration was an
// environment variable (Linux bounds one to 128 KiB). It now travels on
// the control channel.
//
// The helper starts with the soft descriptor limit nsbind was started with
// (Go restores it in every child) and 2,600 descriptors open; a static
// nsbind raises it before it opens anything, but the race detector's test
// binary is dynamically linked, and its loader would fail to open libc
// under a soft limit of 1024. So nsbind starts here with the soft limit at
// the hard one.
func TestManyPortsStart(t *testing.T) {
	requireUserns(t)
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	prlimit := needProgram(t, "prlimit")
	cmd := nsbindCmd("run", "-q", "-p", "10000-11299:0", "true")
	cmd.Args = append([]string{prlimit, fmt.Sprintf("--nofile=%d:%d", lim.Max, lim.Max), "--"}, cmd.Args...)
	cmd.Path = prlimit
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runBounded(cmd, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || stderr.String() != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr.String())
	}
}

// A publication whose native-path sockets do not fit under the descriptor
// limit, while the relay's do, is relayed with one line saying why, rather
// than refused: 120 ports are 360 host sockets on the native path (a
// catch-all and two family sockets each) and 240 through the relay.
func TestManyPortsFallBackToRelay(t *testing.T) {
	requireUserns(t)
	if relayMode() {
		t.Skip("the relay pass relays every port anyway")
	}
	prlimit := needProgram(t, "prlimit")
	cmd := nsbindCmd("run", "-p", "10000-10119:0", "true")
	cmd.Args = append([]string{prlimit, "--nofile=300:300", "--"}, cmd.Args...)
	cmd.Path = prlimit
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runBounded(cmd, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(stderr.String(), "nsbind: relaying the published ports: the native path needs 360 host sockets") {
		t.Fatalf("exit %d, stderr %q; want 0 and the line that says the ports are relayed", code, stderr.String())
	}
}

// The role of a process is not the user's to choose: nsbind's old and
// internal variables in the environment change nothing of a run, and the
// server still sees none of them.
func TestRoleNotFromEnvironment(t *testing.T) {
	requireUserns(t)
	for _, env := range [][]string{
		{"NSBIND_ROLE=init"},
		{"NSBIND_ROLE=exec"},
		{"NSBIND_ROLE=probe"},
		{"NSBIND_ROLE=init", "NSBIND_CONFIG=garbage", "NSBIND_KEEP_CAPS=1", "NSBIND_DIRECT=1"},
	} {
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			cmd := nsbindCmd("run", "-p", "80:0", "--", "sh", "-c", `grep CapEff /proc/self/status; env | grep NSBIND_ || true`)
			cmd.Env = append(os.Environ(), env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := runBounded(cmd, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(stderr.String(), "→ :80/tcp") {
				t.Fatalf("exit %d, stderr %q; want 0 and the published socket", code, stderr.String())
			}
			if out := stdout.String(); !strings.Contains(out, "CapEff:\t0000000000000000") || strings.Contains(out, "NSBIND_") {
				t.Fatalf("the server saw:\n%s\nwant no capabilities and no NSBIND_ variable", out)
			}
		})
	}
}

// BenchmarkStartup measures a whole run of "nsbind run -p RANGE:0 true",
// from its start to its exit, for 100, 1,000 and 10,000 published ports,
// each on 127.0.0.1 and [::1]:
//
//	go test -run '^$' -bench Startup -benchtime 3x ./cmd/nsbind/
//
// Where the hard descriptor limit cannot hold two host sockets per port,
// the ports are published on 127.0.0.1 only (the name says so).
func BenchmarkStartup(b *testing.B) {
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	for _, n := range []int{100, 1000, 10000} {
		spec := fmt.Sprintf("10000-%d:0", 10000+n-1)
		name := fmt.Sprintf("ports=%d", n)
		if uint64(2*n+256) > lim.Max {
			spec = fmt.Sprintf("10000-%d:127.0.0.1:0", 10000+n-1)
			name += "/ipv4-only"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				cmd := nsbindCmd("run", "-q", "-p", spec, "true")
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		})
	}
}
