package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dirs says where instances live. defaultDirs reads the environment; tests
// build their own in temporary directories.
type dirs struct {
	xdg     string // $XDG_RUNTIME_DIR, "" when unset
	tmp     string // "/tmp": the private directory is tmp/nsbind-HOSTUID
	runUser string // "/run/user": root finds other users' XDG_RUNTIME_DIR here
	// euid is our uid as our user namespace sees it: the owner that
	// stat(2) shows for a directory of ours, so the one the checks want.
	euid int
	// uidMap is /proc/self/uid_map: it names the tmp directories by
	// host uid (see hostUID). nil maps every uid to itself.
	uidMap []uidRange
}

func defaultDirs() dirs {
	return dirs{xdg: os.Getenv("XDG_RUNTIME_DIR"), tmp: "/tmp", runUser: "/run/user", euid: os.Geteuid(),
		uidMap: readUIDMap()}
}

// uidRange is one line of a uid_map: count ids from inside in our
// namespace are the ids from outside in the namespace above it.
type uidRange struct{ inside, outside, count uint64 }

// readUIDMap reads /proc/self/uid_map; nil (every uid itself) when it
// cannot. The map goes up one level only: in a namespace the host's made
// (unshare, a rootless container) its outside ids are host uids; a
// namespace nested in one of those gets the ids of the one above.
func readUIDMap() []uidRange {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return nil
	}
	var m []uidRange
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		out, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseUint(f[2], 10, 33)
		if err1 == nil && err2 == nil && err3 == nil {
			m = append(m, uidRange{in, out, n})
		}
	}
	return m
}

// hostUID is our uid outside our user namespace, as the namespace above
// sees it: the uid of the user who owns the run. It names the directory
// in /tmp, which the namespaces share: inside unshare --map-root-user a
// run's uid is 0, and keyed by that it would meet the host root's
// /tmp/nsbind-0 (which it cannot open: to it that directory belongs to
// the overflow uid). Keyed by the host uid it is its owner's, which from
// inside is owned by uid 0: the owner check stays the local euid's.
func (d dirs) hostUID() int {
	if d.uidMap == nil {
		return d.euid
	}
	u := uint64(d.euid)
	for _, r := range d.uidMap {
		if u >= r.inside && u-r.inside < r.count {
			return int(r.outside + u - r.inside)
		}
	}
	return d.euid // unmapped: cannot be, as we run as it
}

// localUID is the uid that host uid h is in our namespace; false when it
// has none there (its files are the overflow uid's to us).
func (d dirs) localUID(h int) (int, bool) {
	if d.uidMap == nil {
		return h, true
	}
	u := uint64(h)
	for _, r := range d.uidMap {
		if u >= r.outside && u-r.outside < r.count {
			return int(r.inside + u - r.outside), true
		}
	}
	return 0, false
}

// Dir returns the directory of the user's instances, without creating it:
// $XDG_RUNTIME_DIR/nsbind when XDG_RUNTIME_DIR is an absolute path to a
// directory of the user's that nobody else may write, else
// /tmp/nsbind-UID, UID the host's uid of the user (in a user namespace
// too, e.g. unshare --map-root-user).
func Dir() string { return defaultDirs().own() }

func (d dirs) own() string {
	if d.xdg != "" && filepath.IsAbs(d.xdg) {
		var st unix.Stat_t
		// The parent of our directory must be the user's alone: whoever
		// can write it can rename our directory and put another in its
		// place. (sudo may keep another user's XDG_RUNTIME_DIR.)
		if unix.Lstat(d.xdg, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR &&
			int(st.Uid) == d.euid && st.Mode&0o022 == 0 {
			return filepath.Join(d.xdg, "nsbind")
		}
	}
	// /tmp is sticky: once the directory is ours, nobody else can rename
	// or remove it, so checking it once at open is enough.
	return filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(d.hostUID()))
}

// ensure creates the user's directory if needed and opens it, refusing one
// that is not a real directory (a symlink), is owned by someone else, or
// may be read or entered by anyone else: in a shared /tmp another user can
// make /tmp/nsbind-UID first, to catch or answer for the user's sockets.
func (d dirs) ensure() (*os.File, error) {
	path := d.own()
	err := unix.Mkdir(path, 0o700)
	created := err == nil
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("creating the instance directory %s: %w", path, err)
	}
	f, err := openDir(path, d.euid)
	if err == nil || !created {
		return f, err
	}
	// Ours, just made: the umask may have taken bits from 0700.
	if errors.Is(err, errDirMode) {
		if err := unix.Chmod(path, 0o700); err != nil {
			return nil, fmt.Errorf("setting the mode of %s: %w", path, err)
		}
		return openDir(path, d.euid)
	}
	return nil, err
}

var errDirMode = errors.New("wrong mode")

// openDir opens path without following a symlink and checks, on the open
// directory itself, that uid owns it with mode 0700.
func openDir(path string, uid int) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("the instance directory %s is not a directory (a symlink?): remove it: %w", path, err)
		}
		return nil, fmt.Errorf("opening the instance directory %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("checking the instance directory %s: %w", path, err)
	}
	if int(st.Uid) != uid {
		unix.Close(fd)
		return nil, fmt.Errorf("the instance directory %s belongs to uid %d, not %d: remove it (another user may have made it to catch the sockets): %w",
			path, st.Uid, uid, unix.EPERM)
	}
	if st.Mode&0o777 != 0o700 {
		unix.Close(fd)
		return nil, fmt.Errorf("the instance directory %s has mode %04o, not 0700: chmod 700 it or remove it: %w", path, st.Mode&0o777, errDirMode)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// userDir is a directory of one user's instances.
type userDir struct {
	path string
	uid  int
}

// search returns the directories whose instances this process may see:
// the user's own; for root also every other user's, in /run/user/UID/nsbind
// and /tmp/nsbind-UID (a run whose XDG_RUNTIME_DIR is elsewhere is not
// found by root). A directory's uid is the one its path names (for /tmp, a
// host uid, translated to ours; one without an id here is skipped);
// openDir then refuses it unless that uid owns it.
func (d dirs) search() []userDir {
	out := []userDir{{d.own(), d.euid}}
	if d.euid != 0 {
		return out
	}
	add := func(pattern, prefix, suffix string, host bool) {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			rest := strings.TrimSuffix(strings.TrimPrefix(m, prefix), suffix)
			n, err := strconv.ParseUint(rest, 10, 32)
			if err != nil || m == out[0].path {
				continue
			}
			uid, ok := int(n), true
			if host {
				uid, ok = d.localUID(uid)
			}
			if ok {
				out = append(out, userDir{m, uid})
			}
		}
	}
	add(filepath.Join(d.runUser, "*", "nsbind"), d.runUser+"/", "/nsbind", false)
	add(filepath.Join(d.tmp, "nsbind-*"), filepath.Join(d.tmp, "nsbind-"), "", true)
	return out
}

// lock takes the directory's lock. The lock makes "the socket refuses, so
// remove it" and "bind" one step: without it a cleaner could remove the
// socket another run has just bound in place of the stale one.
func lock(dir *os.File, wait bool) error {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		err := unix.Flock(int(dir.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func unlock(dir *os.File) { unix.Flock(int(dir.Fd()), unix.LOCK_UN) }

// removeSocket removes the entry name of dir if it is a socket, through
// the open directory: root cleaning a user's directory never follows a
// path the user can change.
func removeSocket(dir *os.File, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s in %s is not a socket", name, dir.Name())
	}
	return unix.Unlinkat(int(dir.Fd()), name, 0)
}
