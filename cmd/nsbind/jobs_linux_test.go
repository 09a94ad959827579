package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmuxShell is an interactive bash, with job control, in a tmux pane: a
// real terminal, as a user has. The tmux server has a socket of its own.
type tmuxShell struct {
	t      *testing.T
	tmux   string
	socket string
	pane   int // the shell's pid
	// lastScreen is the pane as last read, for the log of a failure.
	lastScreen string
}

// prompt is the shell's prompt, without the space capture-pane trims off
// the end of a line.
const prompt = "PROMPT$"

func startTmuxShell(t *testing.T) *tmuxShell {
	t.Helper()
	requireUserns(t)
	s := &tmuxShell{t: t, tmux: needProgram(t, "tmux"), socket: filepath.Join(t.TempDir(), "tmux.sock")}
	bash := needProgram(t, "bash")
	s.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "250", "-y", "50",
		"exec env PS1='"+prompt+" ' TERM=screen "+bash+" --norc --noprofile -i")
	var server int
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := exec.Command(s.tmux, "-S", s.socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "t").Output(); err == nil {
				s.lastScreen = string(out)
			}
		}
		// Whatever the shell left (a stopped job) is killed by pid
		// before the tmux server goes.
		for _, p := range descendants(s.pane) {
			syscall.Kill(p, syscall.SIGKILL)
		}
		exec.Command(s.tmux, "-S", s.socket, "kill-server").Run()
		deadline := time.Now().Add(10 * time.Second)
		for server > 0 && alive(server) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("terminal:\n%s", s.lastScreen)
		}
	})
	server, _ = strconv.Atoi(s.run("display-message", "-p", "-t", "t", "#{pid}"))
	s.pane, _ = strconv.Atoi(s.run("display-message", "-p", "-t", "t", "#{pane_pid}"))
	if server == 0 || s.pane == 0 {
		t.Fatal("tmux did not say its pids")
	}
	s.waitPrompts(1)
	return s
}

// run runs a tmux command against the test's server and returns its output.
func (s *tmuxShell) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tmux, append([]string{"-S", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// screen is what the pane shows, its history included.
func (s *tmuxShell) screen() string {
	s.lastScreen = s.run("capture-pane", "-p", "-J", "-S", "-", "-t", "t")
	return s.lastScreen
}

// typeLine types line and Enter.
func (s *tmuxShell) typeLine(line string) {
	s.t.Helper()
	s.run("send-keys", "-t", "t", "-l", line)
	s.run("send-keys", "-t", "t", "Enter")
}

// key sends one key, e.g. C-z.
func (s *tmuxShell) key(k string) {
	s.t.Helper()
	s.run("send-keys", "-t", "t", k)
}

// waitPrompts waits until the shell has shown its prompt n times: it has
// the terminal and reads a command.
func (s *tmuxShell) waitPrompts(n int) {
	s.t.Helper()
	// Each look is a tmux command: look less often than waitUntil.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(s.screen(), prompt) < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("not within 20s: the shell did not show its prompt %d times", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// absolute is args with the test binary, args[0], as an absolute path: the
// shell line may run in another directory (make -C).
func absolute(t *testing.T, args []string) []string {
	t.Helper()
	exe, err := filepath.Abs(args[0])
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe}, args[1:]...)
}

// shellQuote quotes args for a shell command line.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestGoRunStandIn is not a test: run as "TEST-BINARY -test.run=^TestGoRunStandIn$
// -- COMMAND...", it behaves as "go run" does once it has built the
// program. go run starts the program as a child in its own process group
// (the shell's job), catches SIGINT and SIGQUIT so that they reach the
// program alone, waits for it and exits 1 ("exit status N") when it fails.
// It does nothing about job control: a SIGTSTP to the job stops it by the
// default action, and it never sees the program stop. Without a Go
// toolchain for every user this stands in for it in the tests.
func TestGoRunStandIn(t *testing.T) {
	var args []string
	for i, a := range os.Args {
		if a == "--" {
			args = os.Args[i+1:]
			break
		}
	}
	if len(args) == 0 {
		return // the test suite itself runs it: nothing to stand in for
	}
	signal.Notify(make(chan os.Signal, 1), os.Interrupt, syscall.SIGQUIT)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Acceptance 4: Ctrl-Z on a real terminal stops nsbind's whole job when
// nsbind is not the shell's job itself but runs under a wrapper in the same
// process group — bash -c, go run, make — so the shell gets the terminal
// back; fg continues the job and the server answers. Once the server has
// gone to the background nsbind holds the terminal itself, and Ctrl-Z
// reaches the wrapper and nsbind at once: the shell then has the terminal
// back before nsbind stops, and keeps it.
func TestJobControlUnderWrappers(t *testing.T) {
	python := needProgram(t, "python3")
	bashC := func(t *testing.T, dir, nsbind string) string {
		return "bash -c " + shellQuote([]string{nsbind + "; echo done"})
	}
	for _, tt := range []struct {
		name string
		// command is the line typed at the prompt, for the nsbind
		// command line nsbind (quoted).
		command func(t *testing.T, dir, nsbind string) string
		// daemon runs the server in the background of a shell that
		// exits 0 at once.
		daemon bool
	}{
		{"daemon under bash -c", bashC, true},
		{"bash -c", bashC, false},
		{"go run", func(t *testing.T, dir, nsbind string) string {
			return shellQuote(absolute(t, []string{os.Args[0], "-test.run=^TestGoRunStandIn$", "--"})) + " " + nsbind
		}, false},
		{"make", func(t *testing.T, dir, nsbind string) string {
			needProgram(t, "make")
			mk := "serve:\n\t" + strings.ReplaceAll(nsbind, "$", "$$") + "\n"
			if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644); err != nil {
				t.Fatal(err)
			}
			return shellQuote([]string{"make", "-s", "-C", dir, "serve"})
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := serverTempDir(t)
			portsFile := filepath.Join(dir, "ports.json")
			server := []string{python, "-m", "http.server", "--directory", dir, "80"}
			if tt.daemon {
				server = append([]string{"sh", "-c", `"$0" "$@" & exit 0`}, server...)
			}
			nsbind := shellQuote(absolute(t, nsbindCmd(append([]string{"run", "--ports-file", portsFile, "-p", "80:0", "--"}, server...)...).Args))
			os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
			sh := startTmuxShell(t)
			sh.typeLine(tt.command(t, dir, nsbind))
			url := "http://" + waitPortsFile(t, portsFile) + "/hello.txt"
			if got := curl(t, url); got != "hello\n" {
				t.Fatalf("got %q", got)
			}

			if tt.daemon {
				waitUntil(t, 10*time.Second, func() bool { return strings.Contains(sh.screen(), backgroundLine) },
					func() string { return "nsbind did not say the command went to the background" })
			}

			sh.key("C-z")
			sh.waitPrompts(2)
			sh.typeLine("jobs")
			sh.waitPrompts(3)
			s := sh.screen()
			if !strings.Contains(s[strings.LastIndex(s, "jobs"):], "Stopped") {
				t.Fatal("jobs does not show the job stopped")
			}
			// A shell whose terminal is taken away reads EOF from it
			// and answers "exit".
			if strings.Contains(s, "There are stopped jobs") {
				t.Fatal("the shell lost the terminal after Ctrl-Z")
			}
			// The shell's view is that of its child; every process of
			// the job is stopped: the wrapper, nsbind, its helper, the
			// server.
			job := descendants(sh.pane)
			if r := running(job); len(r) > 0 {
				t.Errorf("processes of the stopped job run: %v", r)
			}

			sh.typeLine("fg")
			if got := curl(t, url); got != "hello\n" {
				t.Fatalf("after fg: got %q", got)
			}
			if r := running(job); len(r) != len(job) {
				t.Errorf("after fg only these of %d processes run: %v", len(job), r)
			}
			if tt.daemon {
				// sh started the server with SIGINT ignored, as
				// for any command it runs with &: end it by
				// nsbind's SIGTERM, which goes to every process.
				for _, p := range job {
					if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), "__nsbind\x00run") {
						syscall.Kill(p, syscall.SIGTERM)
					}
				}
			} else {
				sh.key("C-c")
			}
			sh.waitPrompts(4)
		})
	}
}

// waitPortsFile waits for nsbind's ports file and returns the address of
// its first socket.
func waitPortsFile(t *testing.T, path string) string {
	t.Helper()
	var ports []portEntry
	waitUntil(t, 20*time.Second, func() bool {
		b, err := os.ReadFile(path)
		return err == nil && json.Unmarshal(b, &ports) == nil && len(ports) > 0
	}, func() string { return "nsbind did not write its ports file" })
	return fmt.Sprintf("%s:%d", ports[0].HostIP, ports[0].HostPort)
}

// SIGTSTP to nsbind's job when no terminal is involved (what a shell's
// "kill -TSTP %1" does): the server stops first, then nsbind stops its
// whole process group — here a shell script waiting for it, started by the
// test as a shell starts a job — and SIGCONT to the group continues all.
// The same holds for a server that went to the background.
func TestStopWholeJob(t *testing.T) {
	for _, tt := range []struct {
		name    string
		command []string
	}{
		{"server", []string{os.Args[0], "__server", "echo", "80"}},
		{"daemon", []string{"sh", "-c", `"$0" __server echo 80 & exit 0`, os.Args[0]}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			requireUserns(t)
			dir := t.TempDir()
			portsFile := filepath.Join(dir, "ports.json")
			nsbind := nsbindCmd(append([]string{"run", "--ports-file", portsFile, "-p", "80:0", "--"}, tt.command...)...)
			cmd := exec.Command("sh", "-c", shellQuote(nsbind.Args)+"; echo done")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out := new(lockedBuffer)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				cmd.Wait()
				close(done)
			}()
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				for _, p := range descendants(cmd.Process.Pid) {
					syscall.Kill(p, syscall.SIGKILL)
				}
				<-done
				if t.Failed() {
					t.Logf("output:\n%s", out.String())
				}
			})
			addr := netip.MustParseAddrPort(waitPortsFile(t, portsFile))
			if err := echoThrough(addr, 1<<10); err != nil {
				t.Fatal(err)
			}
			if tt.name == "daemon" {
				waitUntil(t, 10*time.Second, func() bool { return strings.Contains(out.String(), backgroundLine) },
					func() string { return "nsbind did not say the command went to the background" })
			}
			job := append([]int{cmd.Process.Pid}, descendants(cmd.Process.Pid)...)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTSTP)
			waitUntil(t, 10*time.Second, func() bool { return len(running(job)) == 0 },
				func() string { return fmt.Sprintf("still running: %v", running(job)) })
			syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
			waitUntil(t, 10*time.Second, func() bool { return len(running(job)) == len(job) },
				func() string { return "not all continued" })
			if err := echoThrough(addr, 1<<16); err != nil {
				t.Fatalf("after SIGCONT: %v", err)
			}
		})
	}
}

// running lists the processes of pids that run (are not stopped), with
// their command lines.
func running(pids []int) []string {
	var out []string
	for _, p := range pids {
		if alive(p) && !stopped(p) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			out = append(out, fmt.Sprintf("%d %q", p, b))
		}
	}
	return out
}
