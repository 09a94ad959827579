// Package instancecli is the client side of the instance commands nsbind
// ps, port, exec, stats and stop: each connects to a running nsbind run
// over its control socket (internal/instance), asks, prints the answer as
// a table or JSON, and returns the command's exit status. cmd/nsbind
// parses the flags and arguments and hands this package what they say;
// the errors it does not word itself it prints through Output.Describe,
// the CLI's hints.
//
// Exec copies too: without a terminal, the process gets this process's
// stdin and Output's stdout and stderr (each through a pipe copied to it
// when it is not a file), and SIGINT, SIGTERM and SIGHUP are passed on.
// With req.TTY it opens a pseudo-terminal on the host (tty_linux.go),
// gives the process its slave, puts this terminal in raw mode, copies
// both ways and passes SIGWINCH on as a resize.
//
// Processes: the short-lived CLI process, on the host, with the user's
// uid; never the run, the helper or the server.
//
// Concurrency: each function is a whole command, called once from the
// main goroutine; Stats and Exec take signals for their duration
// (signal.NotifyContext, signal.Notify) and stop taking them on return.
// Exec's copying goroutines end with the process; the one reading stdin
// may stay blocked until nsbind exits.
package instancecli
