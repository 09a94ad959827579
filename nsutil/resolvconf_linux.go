package nsutil

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// BindResolvConf bind-mounts path over /etc/resolv.conf in the caller's
// mount namespace, so that every program inside resolves names with it.
// It needs a mount namespace of the helper's own (made with its PID
// namespace) and CAP_SYS_ADMIN in the user namespace that owns it; the
// host's /etc/resolv.conf is not touched.
func BindResolvConf(path string) error {
	// Keep the mount from propagating back to the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("using --resolv-conf %s: this host gives nsbind no mount namespace of its own: %w", path, err)
	}
	if err := unix.Mount(path, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("using --resolv-conf %s: bind-mounting it over /etc/resolv.conf: %w", path, err)
	}
	return nil
}
