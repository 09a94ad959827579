package parent

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// terminalIsOurs reports whether stdin is a terminal whose foreground
// process group is nsbind's, as when a shell runs nsbind as a foreground
// job. The server then gets the terminal.
func terminalIsOurs() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == syscall.Getpgrp()
}

// takeTerminal makes nsbind's process group the terminal's foreground group
// again, after the server had it.
func takeTerminal() {
	// tcsetpgrp from a background group raises SIGTTOU, which would stop
	// nsbind: ignore it for the call.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, syscall.Getpgrp())
}

// stopJob stops nsbind once the server has stopped, as a job of the shell
// that started it. That job is nsbind's process group, which the shell made
// and which may hold more than nsbind: the wrapper of "go run", "bash -c",
// make or npm, waiting for nsbind. The shell takes the terminal back only
// when every process it started in the group has stopped, so nsbind stops
// the whole group (its helper with it, which waits for the server anyway).
//
// Without such a shell — no process of nsbind's session is the parent of
// the group, which POSIX calls an orphaned process group and whose Ctrl-Z
// the kernel discards — the group may be a supervisor's own, and nsbind
// stops only itself, as before job control was its concern.
func stopJob() {
	if shellParent() {
		syscall.Kill(-syscall.Getpgrp(), syscall.SIGSTOP)
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
}

// shellParent reports whether the first ancestor of nsbind outside its
// process group is in nsbind's session: the shell whose job the group is.
func shellParent() bool {
	pgrp := syscall.Getpgrp()
	sid, err := unix.Getsid(0)
	if err != nil {
		return false
	}
	pid := os.Getppid()
	// The bound only guards against a /proc that loops.
	for range 64 {
		ppid, ppgrp, psid, ok := procStat(pid)
		if !ok {
			return false
		}
		if ppgrp != pgrp {
			return psid == sid
		}
		pid = ppid
	}
	return false
}

// procStat reads the parent, process group and session of pid from
// /proc/PID/stat; ok is false for a process that is gone or, like a parent
// outside nsbind's PID namespace, has pid 0.
func procStat(pid int) (ppid, pgrp, sid int, ok bool) {
	if pid <= 0 {
		return 0, 0, 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name may hold spaces and parentheses: the fields
	// start after its last ')': state ppid pgrp session ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	sid, err3 := strconv.Atoi(f[3])
	return ppid, pgrp, sid, err1 == nil && err2 == nil && err3 == nil
}
