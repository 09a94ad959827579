package instancecli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/internal/instance"
)

// Exec is nsbind exec NAME COMMAND...: it runs req in the instance name
// with this process's stdin and o's stdout and stderr, or with req.TTY on
// a pseudo-terminal of its own, and returns its status as nsbind's (128+N
// when signal N killed it). The caller has checked req.
func Exec(o Output, name string, req instance.ExecRequest) int {
	c, ok := o.dial(name)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	if req.TTY {
		return execTTY(c, req, o)
	}
	return execPlain(c, req, o)
}

// execPlain runs req with this process's stdin and o's stdout and
// stderr, passing SIGINT, SIGTERM and SIGHUP on.
func execPlain(c *instance.Client, req instance.ExecRequest, o Output) int {
	stdout, stderr := o.Stdout, o.Stderr
	out, waitOut, err := outputFile(stdout)
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	errf, waitErr, err := outputFile(stderr)
	if err != nil {
		out.Close()
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	req.Files = []*os.File{os.Stdin, out, errf}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout+30*time.Second)
	e, err := c.Exec(ctx, req)
	cancel()
	// Ours were copies for the process; the pipes end with it.
	closeIfPipe(out, stdout)
	closeIfPipe(errf, stderr)
	if err != nil {
		waitOut()
		waitErr()
		fmt.Fprintf(stderr, "nsbind: %s\n", o.Describe(err))
		return exitFailed
	}
	return waitExec(e, sigs, func() {
		waitOut()
		waitErr()
	}, stderr)
}

// waitExec passes sigs on to e until it ends and returns its status as
// nsbind's; drain is called before.
func waitExec(e *instance.Exec, sigs <-chan os.Signal, drain func(), stderr io.Writer) int {
	type result struct {
		st  instance.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.Wait()
		done <- result{st, err}
	}()
	for {
		select {
		case s := <-sigs:
			e.Signal(s.(syscall.Signal))
		case r := <-done:
			drain()
			if r.err != nil {
				fmt.Fprintf(stderr, "nsbind: %v\n", r.err)
				return exitFailed
			}
			if r.st.Signal != 0 {
				return 128 + r.st.Signal
			}
			return r.st.Code
		}
	}
}

// outputFile is w as a file for the process: w itself when it is one,
// else a pipe copied to w, which wait waits for.
func outputFile(w io.Writer) (f *os.File, wait func(), err error) {
	if f, ok := w.(*os.File); ok {
		return f, func() {}, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		io.Copy(w, r)
		r.Close()
		close(done)
	}()
	return pw, func() { <-done }, nil
}

func closeIfPipe(f *os.File, w io.Writer) {
	if f != w {
		f.Close()
	}
}

// execTTY runs req on a pseudo-terminal made here, on the host: its
// slave goes to the process, this terminal (if stdin is one) goes raw and
// is copied to and from the master, and SIGWINCH resizes it.
func execTTY(c *instance.Client, req instance.ExecRequest, o Output) int {
	stdout, stderr := o.Stdout, o.Stderr
	master, slave, err := openHostPTY()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: opening a pseudo-terminal: %v\n", err)
		return exitFailed
	}
	defer master.Close()
	stdinTTY := isTerminal(os.Stdin)
	if stdinTTY {
		copyWinsize(os.Stdin, master)
	}
	req.Files = []*os.File{slave, slave, slave}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout+30*time.Second)
	e, err := c.Exec(ctx, req)
	cancel()
	slave.Close()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %s\n", o.Describe(err))
		return exitFailed
	}
	if stdinTTY {
		if restore, err := makeRaw(os.Stdin); err == nil {
			defer restore()
		}
	}
	// Input: this goroutine ends with the process (nsbind exits); it may
	// be blocked reading stdin until then.
	go io.Copy(master, os.Stdin)
	copied := make(chan struct{})
	go func() {
		// Until EIO: every holder of the slave has closed it.
		io.Copy(stdout, master)
		close(copied)
	}()
	winch := make(chan os.Signal, 4)
	other := make(chan os.Signal, 4)
	go func() {
		for s := range sigs {
			if s == syscall.SIGWINCH {
				winch <- s
			} else {
				other <- s
			}
		}
	}()
	go func() {
		for range winch {
			if stdinTTY {
				copyWinsize(os.Stdin, master)
			}
		}
	}()
	return waitExec(e, other, func() {
		// What the process wrote last is still in the terminal: read it
		// out, but do not wait for a process it left holding the slave.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
			master.SetReadDeadline(time.Now())
			<-copied
		}
	}, stderr)
}
