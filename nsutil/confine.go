package nsutil

import (
	"fmt"
	"strings"
)

// ConfineConfig says what a confined server may see and change (Confine,
// CheckConfine). Paths may be relative to the caller's working directory
// and may contain symbolic links; Confine resolves them.
type ConfineConfig struct {
	// WorkDir is the server's working directory: visible and writable,
	// even when it lies inside a hidden tree (the home, /tmp). Confine
	// changes the calling thread's working directory to it.
	WorkDir string
	// Home is the user's home: hidden (an empty read-only directory),
	// except WorkDir and the Allow paths inside it. Empty: only the
	// trees every confined server loses (/home, /root) are hidden.
	Home string
	// RuntimeDir is the user's runtime directory ($XDG_RUNTIME_DIR, else
	// /run/user/UID): the agent sockets and the session bus. Hidden.
	RuntimeDir string
	// Hide are more directories hidden as the runtime directory is, those
	// that exist: run as root for another user, the home and runtime
	// directory of nsbind's own environment, which are not the server's.
	Hide []string
	// AllowRead are bound back read-only after hiding, AllowWrite
	// read-write; either may name a directory or a file.
	AllowRead, AllowWrite []string
}

// ConfineConfigFromEnv is the configuration of a server run in workDir by a
// user with environment env: Home from $HOME, RuntimeDir from
// $XDG_RUNTIME_DIR or else /run/user/uid.
func ConfineConfigFromEnv(env []string, uid int, workDir string) ConfineConfig {
	cfg := ConfineConfig{WorkDir: workDir, RuntimeDir: fmt.Sprintf("/run/user/%d", uid)}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME" && v != "":
			cfg.Home = v
		case k == "XDG_RUNTIME_DIR" && v != "":
			cfg.RuntimeDir = v
		}
	}
	return cfg
}

// ConfineReport says what Confine could enforce on this kernel.
type ConfineReport struct {
	// LandlockABI is the Landlock ABI the rules were enforced with, 0 when
	// the kernel has no Landlock: then the mount layer alone confines the
	// server.
	LandlockABI int
	// Scoped is true when signals and abstract unix sockets are scoped to
	// the server's Landlock domain (ABI 6 and later): it can signal no
	// process outside it (the helper, nsbind) and connect to no abstract
	// socket made outside it.
	Scoped bool
	// PerMountRemount is true when the kernel lacks mount_setattr(2)
	// (before Linux 5.12) and the view was made read-only mount by mount.
	PerMountRemount bool
}

// Note is the one line the caller prints when the confinement is weaker
// than the full design (no Landlock, or Landlock without scoping), or ""
// when nothing is missing.
func (r ConfineReport) Note() string {
	switch {
	case r.LandlockABI == 0:
		return "--confine: this kernel has no Landlock; the server is confined by its mount namespace alone"
	case !r.Scoped:
		return fmt.Sprintf("--confine: Landlock ABI %d has no signal scoping (ABI 6, Linux 6.12); the server can still signal the helper", r.LandlockABI)
	}
	return ""
}

// confinedEnvDrop are the variables a confined server does not get. Each
// names a channel to the user's session outside the jail: an agent that
// signs or decrypts for the user (ssh-agent, gpg-agent, the keyring), a bus
// or display server that acts for the user (D-Bus, X11, Wayland, the ICE
// session manager, the sound server), a container engine that is root in
// all but name (docker, podman), a Kerberos ticket cache, or the runtime
// directory that holds the sockets of all of them. The mount layer hides
// what they point to; removing them too keeps the server from learning the
// paths and makes programs fall back to what works inside (e.g. /tmp for a
// runtime directory) instead of failing on a socket that is not there.
// Secrets the user put in the environment on purpose (tokens, passwords)
// are not guessed at: nsbind cannot tell them from settings, so they stay
// the user's to leave out (env -u NAME nsbind run ...).
var confinedEnvDrop = []string{
	"SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "GNOME_KEYRING_CONTROL",
	"DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS",
	"DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "SESSION_MANAGER",
	"PULSE_SERVER", "PIPEWIRE_REMOTE",
	"DOCKER_HOST", "DOCKER_CERT_PATH", "CONTAINER_HOST", "CONTAINER_SSHKEY",
	"KRB5CCNAME",
	"XDG_RUNTIME_DIR",
}

// ServerEnvConfined is env without the variables a confined server must not
// get (confinedEnvDrop says which and why).
func ServerEnvConfined(env []string) []string {
	out := make([]string, 0, len(env))
outer:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, d := range confinedEnvDrop {
			if k == d {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// ConfinePathError is a path of a ConfineConfig that cannot be used: it
// does not exist, or is not what it must be. What says which path it is
// ("working directory", "--allow-read", "--allow-write").
type ConfinePathError struct {
	What string
	Path string
	Err  error
}

func (e *ConfinePathError) Error() string {
	return fmt.Sprintf("--confine: %s %s: %v", e.What, e.Path, e.Err)
}

func (e *ConfinePathError) Unwrap() error { return e.Err }
