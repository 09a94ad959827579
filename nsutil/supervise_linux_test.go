package nsutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const subreaperChildEnv = "NSUTIL_TEST_SUBREAPER_CHILD"

// Without a PID namespace the caller of StartServer is a child subreaper:
// a server that puts itself in the background (here with setsid, out of its
// process group and session, as daemons do) stays below it, Remaining
// counts it, SignalAll reaches it and Empty reports the last end; KillAll
// ends what a failing command left. StartServer reaps every child of its
// process, so each case runs in a child process of its own.
func TestServerInBackgroundWithoutPIDNamespace(t *testing.T) {
	if c := os.Getenv(subreaperChildEnv); c != "" {
		os.Exit(subreaperChild(c))
	}
	for _, c := range []string{"daemon", "failing"} {
		t.Run(c, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestServerInBackgroundWithoutPIDNamespace$")
			cmd.Env = append(os.Environ(), subreaperChildEnv+"="+c)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "ok\n") {
				t.Fatalf("%v:\n%s", err, out)
			}
		})
	}
}

// subreaperChild runs one case and prints "ok" or what went wrong.
func subreaperChild(c string) int {
	script := "exec 3>&-; setsid sleep 1000 & exit 0"
	if c == "failing" {
		script = "exec 3>&-; setsid sleep 1000 & exit 3"
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	srv, err := StartServer(ServerConfig{
		Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: os.Environ(),
		Stdin: null, Stdout: null, Stderr: null,
	})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	wait := func(ch <-chan Status) (Status, bool) {
		select {
		case st := <-ch:
			return st, true
		case <-time.After(10 * time.Second):
			return Status{}, false
		}
	}
	st, ok := wait(srv.Exited())
	if !ok {
		fmt.Println("the command did not exit")
		return 1
	}
	left := descendants()
	if len(left) != 1 || srv.Remaining() != 1 {
		fmt.Println("want the one background process below, found", left)
		return 1
	}
	switch c {
	case "daemon":
		if st.ExitCode() != 0 {
			fmt.Println("exit", st.ExitCode())
			return 1
		}
		srv.SignalAll(syscall.SIGTERM)
	case "failing":
		if st.ExitCode() != 3 {
			fmt.Println("exit", st.ExitCode())
			return 1
		}
		srv.KillAll()
	}
	last, ok := wait(srv.Empty())
	if !ok {
		fmt.Println("the background process did not end:", descendants())
		return 1
	}
	if want := map[string]syscall.Signal{"daemon": syscall.SIGTERM, "failing": syscall.SIGKILL}[c]; last.Signal != want {
		fmt.Printf("the last process ended with %+v, want signal %v\n", last, want)
		return 1
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", left[0])); err == nil {
		fmt.Println("the background process is still there")
		return 1
	}
	fmt.Println("ok")
	return 0
}
