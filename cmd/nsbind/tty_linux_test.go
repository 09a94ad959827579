package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		s.Close()
	})
	return m, s
}

// terminalRun is nsbind started on a terminal, as a shell's foreground job
// (session leader with the terminal as its controlling terminal).
type terminalRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File
	screen *lockedBuffer
	done   <-chan struct{}
}

func startOnTerminal(t *testing.T, args ...string) *terminalRun {
	t.Helper()
	requireUserns(t)
	master, slave := openPTY(t)
	r := &terminalRun{t: t, master: master, screen: new(lockedBuffer)}
	r.cmd = nsbindCmd(args...)
	r.cmd.Env = append(os.Environ(), "PS1=PROMPT$ ", "TERM=dumb")
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = slave, slave, slave
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("terminal:\n%s", r.screen.String())
		}
	})
	r.done = startCmd(t, r.cmd)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			r.screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *terminalRun) send(s string) {
	r.t.Helper()
	if _, err := r.master.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// expect waits until the terminal shows s after what it showed at mark.
func (r *terminalRun) expect(mark int, s string) int {
	r.t.Helper()
	var at int
	waitUntil(r.t, 15*time.Second, func() bool {
		screen := r.screen.String()
		i := strings.Index(screen[mark:], s)
		at = mark + i + len(s)
		return i >= 0
	}, func() string { return fmt.Sprintf("terminal does not show %q", s) })
	return at
}

func (r *terminalRun) exitCode(d time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		r.t.Fatalf("nsbind did not exit within %v", d)
		return -1
	}
}

// An interactive shell inside gets the terminal with job control, and
// Ctrl-C reaches the program in its foreground.
func TestInteractiveShell(t *testing.T) {
	bash := needProgram(t, "bash")
	r := startOnTerminal(t, "run", "-q", "-p", "80:0", "--", bash, "--norc", "--noprofile", "-i")
	at := r.expect(0, "PROMPT$ ")
	if strings.Contains(r.screen.String(), "no job control") {
		t.Fatalf("the shell has no job control:\n%s", r.screen.String())
	}
	r.send("sleep 60\n")
	processNamed(t, r.cmd.Process.Pid, "sleep")
	r.send("\x03") // Ctrl-C
	at = r.expect(at, "PROMPT$ ")
	r.send("echo status-$?\n")
	at = r.expect(at, "status-130")
	r.send("sleep 61 &\n")
	at = r.expect(at, "[1]")
	r.send("jobs\n")
	r.expect(at, "Running")
	r.send("kill %1; wait; exit 3\n")
	if code := r.exitCode(15 * time.Second); code != 3 {
		t.Fatalf("exit %d, want the shell's 3", code)
	}
}

// Ctrl-Z stops the server and nsbind with it, as a shell's job; SIGCONT
// continues both, and Ctrl-C then reaches the server.
func TestStopAndContinue(t *testing.T) {
	r := startOnTerminal(t, "run", "-q", "--", "sleep", "60")
	server := processNamed(t, r.cmd.Process.Pid, "sleep")
	r.send("\x1a") // Ctrl-Z
	waitUntil(t, 10*time.Second, func() bool { return stopped(server) && stopped(r.cmd.Process.Pid) },
		func() string {
			return fmt.Sprintf("server stopped %v, nsbind stopped %v", stopped(server), stopped(r.cmd.Process.Pid))
		})
	// What a shell's "fg" does: the terminal back to the job, then SIGCONT.
	unix.IoctlSetPointerInt(int(r.master.Fd()), unix.TIOCSPGRP, r.cmd.Process.Pid)
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGCONT)
	waitUntil(t, 10*time.Second, func() bool { return !stopped(server) && !stopped(r.cmd.Process.Pid) },
		func() string { return "not continued" })
	waitUntil(t, 10*time.Second, func() bool { return foreground(t, r.master) != r.cmd.Process.Pid },
		func() string { return "the server did not get the terminal back" })
	r.send("\x03")
	if code := r.exitCode(15 * time.Second); code != 130 {
		t.Fatalf("exit %d, want 130 (SIGINT)", code)
	}
}

// stopped reports whether pid is stopped.
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'T' || s[i+2] == 't')
}

// foreground is the terminal's foreground process group.
func foreground(t *testing.T, master *os.File) int {
	pgrp, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPGRP)
	if err != nil {
		t.Fatal(err)
	}
	return pgrp
}
