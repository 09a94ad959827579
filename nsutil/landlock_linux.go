package nsutil

import (
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// LandlockABI is the Landlock ABI version the running kernel offers, 0
// when it has none (not built in, or not in the lsm= list at boot).
func LandlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// landlockUsableABI is the ABI go-landlock will enforce with: the kernel's,
// but 5 for an ABI 6 kernel whose signal scoping lacks its fix (errata bit
// 2; go-landlock downgrades so too).
func landlockUsableABI() int {
	v := LandlockABI()
	if v >= 6 {
		if errata, err := ll.LandlockGetErrata(); err != nil || errata&0x2 == 0 {
			v = 5
		}
	}
	return v
}

// restrictLandlock is the second layer of Confine: the calling process gets
// a Landlock domain with the best ABI the kernel has that matches the view
// the mount layer made, so that a way around the mounts (a file descriptor
// or a path the view missed) still meets the same rules:
//
//   - read and execute everywhere (what is hidden is already gone);
//   - write (create, remove, truncate, rename within) only in WorkDir, the
//     private /tmp and /dev/shm and the AllowWrite paths, plus the
//     harmless devices (/dev/null, /dev/tty...) and device ioctls;
//   - on ABI 6 and later, no signal to and no abstract unix socket of a
//     process outside the domain: the server cannot signal the helper,
//     pid 1 of the namespace or nsbind.
//
// Not handled, on purpose: the TCP rights (ABI 4) do not cover MPTCP, which
// Go's listeners use by default, so they would stop some servers and not
// others; the network namespace is the network boundary. Connecting to
// pathname unix sockets (ABI 9) is left to the mount layer, which hides the
// sockets of the user's session and of the container engines, and keeps
// those a server may need (/dev/log, the journal, nscd).
//
// Landlock's rights add up along a path, so it cannot make a tree inside a
// writable one read-only: an --allow-read path bound back inside the
// working directory or /tmp is read-only by its mount alone.
//
// go-landlock sets no_new_privs and restricts every thread of the process
// (through libpsx, or TSYNC on ABI 8 and later). It returns the ABI used,
// 0 when the kernel has no Landlock, and whether signals and abstract
// sockets are scoped.
func restrictLandlock(r resolved) (abi int, scoped bool, err error) {
	abi = landlockUsableABI()
	if abi == 0 {
		return 0, false, nil
	}
	cfg := landlock.Config{
		HandledAccessFS: landlock.V11.HandledAccessFS &^ ll.AccessFSResolveUnix,
		Scoped:          landlock.V11.Scoped,
	}.BestEffort()

	writeDirs := []string{r.workDir, "/tmp", "/dev/shm"}
	var writeFiles []string
	for _, b := range r.binds[1:] { // [0] is the working directory
		switch {
		case b.readOnly:
		case b.dir:
			writeDirs = append(writeDirs, b.path)
		default:
			writeFiles = append(writeFiles, b.path)
		}
	}
	dirs := landlock.RWDirs(writeDirs...)
	if abi >= 2 {
		// Renames and links between directories (write a temporary file,
		// rename it into place). Asking for it on ABI 1 would make
		// go-landlock give up Landlock altogether.
		dirs = dirs.WithRefer()
	}
	rules := []landlock.Rule{
		landlock.RODirs("/"),
		dirs,
		landlock.RWFiles("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
			"/dev/tty", "/dev/ptmx", "/dev/pts").IgnoreIfMissing(),
	}
	if len(writeFiles) > 0 {
		rules = append(rules, landlock.RWFiles(writeFiles...))
	}
	if abi >= 5 {
		// Device ioctls (a terminal's size, a tty's modes): the device's
		// own permissions still apply.
		rules = append(rules, landlock.PathAccess(ll.AccessFSIoctlDev, "/dev"))
	}
	if err := cfg.Restrict(rules...); err != nil {
		return abi, false, err
	}
	return abi, abi >= 6, nil
}
