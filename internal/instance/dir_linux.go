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
	tmp     string // "/tmp": the private directory is tmp/nsbind-UID
	runUser string // "/run/user": root finds other users' XDG_RUNTIME_DIR here
	euid    int
}

func defaultDirs() dirs {
	return dirs{xdg: os.Getenv("XDG_RUNTIME_DIR"), tmp: "/tmp", runUser: "/run/user", euid: os.Geteuid()}
}

// Dir returns the directory of the user's instances, without creating it:
// $XDG_RUNTIME_DIR/nsbind when XDG_RUNTIME_DIR is an absolute path to a
// directory of the user's that nobody else may write, else
// /tmp/nsbind-UID.
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
	return filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(d.euid))
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
// found by root). A directory's uid is the one its path names; openDir
// then refuses it unless that uid owns it.
func (d dirs) search() []userDir {
	out := []userDir{{d.own(), d.euid}}
	if d.euid != 0 {
		return out
	}
	add := func(pattern, prefix, suffix string) {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			rest := strings.TrimSuffix(strings.TrimPrefix(m, prefix), suffix)
			uid, err := strconv.ParseUint(rest, 10, 32)
			if err != nil || int(uid) == d.euid && m == out[0].path {
				continue
			}
			out = append(out, userDir{m, int(uid)})
		}
	}
	add(filepath.Join(d.runUser, "*", "nsbind"), d.runUser+"/", "/nsbind")
	add(filepath.Join(d.tmp, "nsbind-*"), filepath.Join(d.tmp, "nsbind-"), "")
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
