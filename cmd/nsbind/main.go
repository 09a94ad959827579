package main

import (
	"os"

	"github.com/nsbind/nsbind/internal/doctor"
	"github.com/nsbind/nsbind/internal/helper"
	"github.com/nsbind/nsbind/nsutil"
)

// Exit statuses of nsbind's own failures; otherwise nsbind exits with the
// server's status.
const (
	exitFailed      = 125 // nsbind failed before the server started
	exitCannotRun   = 126 // the command was found but cannot be run
	exitNotFound    = 127 // the command was not found
	exitUnsupported = 125
)

func main() {
	// Descriptors: Go's runtime has already raised this process's soft
	// RLIMIT_NOFILE to the hard limit (less one), in every role, so a busy
	// relay may use all the user allows; and it restores the original soft
	// limit in the programs it starts, so the server keeps the user's
	// (TestFileLimit checks both). nsbind calls no setrlimit of its own: that
	// would hand the raised limit on to the server.
	if code, ok := playRole(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// playRole plays the role of a process nsbind started itself: the helper
// inside the namespaces, the exec step that becomes the server, or nsbind
// doctor's probe. nsbind re-executes itself with the role as argv[0]
// (nsutil.RoleInit...), which nothing in the user's environment can set;
// any other argv[0] is the CLI (ok false). The helper then also needs its
// control channel on descriptor 3 and its configuration as the first
// message there.
func playRole(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case nsutil.RoleInit:
		return helper.Main(), true
	case nsutil.RoleExec:
		return helper.ExecMain(args[1:]), true
	case nsutil.RoleProbe:
		return doctor.ProbeMain(), true
	}
	return 0, false
}
