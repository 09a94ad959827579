package main

import (
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// suiteCopyEnv names the directory of the copy of the test binary that the
// suite runs from as root (prepareRootSuite), removed at the end.
const suiteCopyEnv = "NSBIND_TEST_SUITE_COPY"

// prepareRootSuite makes the end-to-end tests run as root the way root is
// meant to run nsbind: through sudo. As host root, nsbind runs the server
// as the user sudo was called by (SUDO_UID, SUDO_GID), never as host
// root, and refuses without one. The suite's runs get the test user
// (NSBIND_TEST_USER, default nsbind-test; nobody when it does not exist)
// unless the environment names one already; the tests of that choice
// itself (ids_linux_test.go) set or remove the variables per run.
//
// The servers the tests start are then that user's processes, so they
// must be programs it may run: the go tool builds the test binary in a
// directory only root can read, so the suite re-executes itself from a
// copy others may run, and PATH keeps only directories others may
// search (root's own tool directories go). It returns what to do when
// the tests are over.
func prepareRootSuite() (cleanup func()) {
	cleanup = func() {}
	if os.Getuid() != 0 {
		return cleanup
	}
	if dir := os.Getenv(suiteCopyEnv); dir != "" {
		cleanup = func() { os.RemoveAll(dir) }
	} else if exe, err := os.Executable(); err == nil && !othersReach(exe) {
		if copy, dir, err := copyForOthers(exe); err == nil {
			os.Setenv(suiteCopyEnv, dir)
			// Returns only when the exec failed: go on from here.
			syscall.Exec(copy, append([]string{copy}, os.Args[1:]...), os.Environ())
			os.RemoveAll(dir)
			os.Unsetenv(suiteCopyEnv)
		}
	}
	var path []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if othersReach(d) {
			path = append(path, d)
		}
	}
	os.Setenv("PATH", strings.Join(path, string(filepath.ListSeparator)))
	if os.Getenv("SUDO_UID") == "" {
		u, err := user.Lookup(testUserName())
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err == nil {
			os.Setenv("SUDO_UID", u.Uid)
			os.Setenv("SUDO_GID", u.Gid)
			os.Setenv("SUDO_USER", u.Username)
		}
	}
	return cleanup
}

// othersReach says whether users other than the owner may reach path:
// every directory above it searchable by others, and path itself too.
func othersReach(path string) bool {
	path, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// copyForOthers copies the executable exe into a new directory others may
// read.
func copyForOthers(exe string) (copy, dir string, err error) {
	dir, err = os.MkdirTemp("", "nsbind-suite-")
	if err != nil {
		return "", "", err
	}
	copy = filepath.Join(dir, filepath.Base(exe))
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = copyExecutable(exe, copy)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return copy, dir, nil
}

func copyExecutable(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// testUserName is the unprivileged test user scripts/test.sh creates.
func testUserName() string {
	if name := os.Getenv("NSBIND_TEST_USER"); name != "" {
		return name
	}
	return "nsbind-test"
}

// serverUID is the host uid the server runs as without --root: nsbind's
// own, or as root the sudo user's.
func serverUID() int {
	if os.Getuid() == 0 {
		if uid, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil {
			return uid
		}
	}
	return os.Getuid()
}

// serverGID is the host gid the server runs as without --root: nsbind's
// own, or as root the sudo user's.
func serverGID() int {
	if os.Getuid() == 0 {
		if gid, err := strconv.Atoi(os.Getenv("SUDO_GID")); err == nil {
			return gid
		}
	}
	return os.Getgid()
}

// serverTempDir is t.TempDir made readable by others: when root runs
// nsbind, the server is another user, and reads the files the test puts
// there.
func serverTempDir(t interface {
	TempDir() string
	Fatal(...any)
}) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
