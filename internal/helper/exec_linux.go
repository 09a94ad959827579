package helper

import (
	"encoding/json"
	"fmt"
	"log/slog"
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
	execConfine  = "--confine"   // followed by the nsutil.ConfineConfig in JSON
	execQuiet    = "--quiet"     // print no note (--quiet)
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
	if h.cfg.SocketActivation {
		// The sockets themselves to the server (activation_linux.go).
		listenArgs, listenFiles := h.listenFiles(nsutil.ExecReportFD + 1 + len(execFiles))
		args = append(args, listenArgs...)
		execFiles = append(execFiles, listenFiles...)
		defer closeAll(listenFiles)
	}
	if h.cfg.Confine != nil {
		b, err := json.Marshal(h.cfg.Confine)
		if err != nil {
			return nil, fmt.Errorf("--confine: %w", err)
		}
		args = append(args, execConfine, string(b))
		if strings.EqualFold(h.cfg.LogLevel, slog.LevelError.String()) {
			args = append(args, execQuiet)
		}
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
// capabilities and environment, confines the server with --confine, and
// becomes the server. args are its arguments after argv[0]: the flags
// above, "--", the command.
func ExecMain(args []string) int {
	var o nsutil.ExecOptions
	quiet := false
	var act handOver
	for len(args) > 0 && args[0] != "--" {
		switch args[0] {
		case execKeepCaps:
			o.KeepCaps = true
		case execDirect:
			o.Direct = true
		case execQuiet:
			quiet = true
		case execConfine:
			o.Confine = new(nsutil.ConfineConfig)
			if len(args) < 2 || json.Unmarshal([]byte(args[1]), o.Confine) != nil {
				return nsutil.ReportExecError(fmt.Errorf("the exec step is started by nsbind only (bad %s)", execConfine))
			}
			args = args[1:]
		default:
			if ok, err := act.parseArg(args[0]); err != nil {
				return nsutil.ReportExecError(err)
			} else if !ok {
				return nsutil.ReportExecError(fmt.Errorf("the exec step is started by nsbind only (unknown argument %q)", args[0]))
			}
		}
		args = args[1:]
	}
	if len(args) < 2 {
		return nsutil.ReportExecError(fmt.Errorf("the exec step is started by nsbind only (no command)"))
	}
	env := serverEnv(os.Environ())
	if o.Confine != nil {
		env = nsutil.ServerEnvConfined(env)
		if !quiet {
			// The exec step's stderr is the user's, as the server's
			// will be: the line goes out before the server's first.
			o.Note = func(s string) { fmt.Fprintf(os.Stderr, "nsbind: %s\n", s) }
		}
	}
	if act.active() {
		env, o.HandOver = act.env(env), act.move
	}
	err := nsutil.ExecServer(args[1:], env, o)
	act.restoreReport()
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
