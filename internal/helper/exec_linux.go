package helper

import (
	"fmt"
	"os"
	"strings"

	"github.com/nsbind/nsbind/nsutil"
)

// The exec step's flags, between its argv[0] (nsutil.RoleExec) and "--".
// They travel in argv, never in the environment, so nothing the user sets
// can change them.
const (
	execKeepCaps = "--keep-caps" // --root: keep the namespace's capabilities
	execDirect   = "--direct"    // install the bind filter (--direct)
)

// startServer starts the server through the exec step and, with --direct,
// the director that answers its binds.
func (h *helper) startServer() (*nsutil.Server, error) {
	args := []string{nsutil.RoleExec}
	if h.cfg.Root {
		args = append(args, execKeepCaps)
	}
	// --direct: the exec step sends its bind filter's listener to the
	// director (director_linux.go).
	var notify, notifyExec *os.File
	var execFiles []*os.File
	if h.cfg.Direct && len(h.cfg.Sockets) > 0 {
		h.dir = newDirector(h)
		var err error
		if notify, notifyExec, err = nsutil.BindNotifyPair(); err != nil {
			return nil, err
		}
		h.dir.sendTrapConfig(notify)
		args = append(args, execDirect)
		execFiles = append(execFiles, notifyExec)
	}
	srv, err := nsutil.StartServer(nsutil.ServerConfig{
		Path:       "/proc/self/exe",
		Args:       append(append(args, "--"), h.cfg.Command...),
		Env:        serverEnv(os.Environ()),
		Foreground: h.cfg.Foreground,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: execFiles,
	})
	if notifyExec != nil {
		notifyExec.Close()
	}
	if err != nil {
		if notify != nil {
			notify.Close()
		}
		return nil, err
	}
	if h.dir != nil {
		h.dir.start(notify)
	}
	return srv, nil
}

// ExecMain is the exec step (argv[0] nsutil.RoleExec): it drops nsbind's
// capabilities and environment and becomes the server. args are its
// arguments after argv[0]: the flags above, "--", the command.
func ExecMain(args []string) int {
	var keep, direct bool
	for len(args) > 0 && args[0] != "--" {
		switch args[0] {
		case execKeepCaps:
			keep = true
		case execDirect:
			direct = true
		default:
			return nsutil.ReportExecError(fmt.Errorf("the exec step is started by nsbind only (unknown argument %q)", args[0]))
		}
		args = args[1:]
	}
	if len(args) < 2 {
		return nsutil.ReportExecError(fmt.Errorf("the exec step is started by nsbind only (no command)"))
	}
	err := nsutil.ExecServer(args[1:], serverEnv(os.Environ()), keep, direct)
	return nsutil.ReportExecError(err)
}

// serverEnv is env without nsbind's own variables: the server must not see
// them.
func serverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NSBIND_") {
			out = append(out, kv)
		}
	}
	return out
}
