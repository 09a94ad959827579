package parent

import (
	"fmt"
	"os"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// startHelper starts the helper (nsbind itself, argv[0] nsutil.RoleInit)
// in new namespaces with the host sockets from nsutil.FirstFD on, and
// sends it its configuration, the first message on the control channel.
// The environment goes to the helper as it is: nothing in it chooses a
// role or changes the run, and the helper hands the server the
// environment without nsbind's own variables.
func (r *run) startHelper(socks []forward.HostSocket) error {
	files := make([]*os.File, len(socks))
	for i, s := range socks {
		files[i] = s.File
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding nsbind's own binary: %w", err)
	}
	h, err := nsutil.Start(nsutil.Config{
		Path:   self,
		Args:   []string{nsutil.RoleInit},
		Env:    os.Environ(),
		Files:  files,
		Root:   r.Root,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Logger: r.Logger,
	})
	if err != nil {
		return err
	}
	if err := h.Ctrl.SendConfig(r.cfg); err != nil {
		h.Kill()
		<-h.Done()
		return err
	}
	r.h = h
	return nil
}
