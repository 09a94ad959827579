package parent

import (
	"os/signal"
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
