package instance

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func modeOf(t *testing.T, path string) (os.FileMode, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode(), int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestDirCreated0700(t *testing.T) {
	d := testDirs(t)
	// A umask that takes the owner's write bit: the directory made is
	// still 0700. (Umask is the process's: no parallel tests here.)
	old := syscall.Umask(0o277)
	dir, err := d.ensure()
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	dir.Close()
	want := filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(os.Geteuid()))
	if dir.Name() != want {
		t.Errorf("directory %s, want %s", dir.Name(), want)
	}
	mode, uid := modeOf(t, want)
	if !mode.IsDir() || mode.Perm() != 0o700 || uid != os.Geteuid() {
		t.Errorf("directory mode %v uid %d, want drwx------ of uid %d", mode, uid, os.Geteuid())
	}
	// A second run opens the same directory.
	if dir, err = d.ensure(); err != nil {
		t.Fatal(err)
	}
	dir.Close()
}

func TestDirRefusesSymlink(t *testing.T) {
	d := testDirs(t)
	target := filepath.Join(d.tmp, "elsewhere")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, d.own()); err != nil {
		t.Fatal(err)
	}
	_, err := listenIn(d, "web", newTestHandler())
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Listen through a symlinked directory: %v, want refused", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("something was made through the symlink: %v", entries)
	}
	if _, err := listIn(d); err == nil {
		t.Error("List through a symlinked directory did not fail")
	}
}

func TestDirRefusesWrongMode(t *testing.T) {
	d := testDirs(t)
	if err := os.Mkdir(d.own(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.own(), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := listenIn(d, "web", newTestHandler())
	if err == nil || !strings.Contains(err.Error(), "mode 0755") {
		t.Fatalf("Listen in a 0755 directory: %v, want refused", err)
	}
	// Refused, not repaired: a directory one did not make is the user's
	// to look at.
	if mode, _ := modeOf(t, d.own()); mode.Perm() != 0o755 {
		t.Errorf("mode changed to %v", mode)
	}
}

// otherOwned makes a directory at path owned by the test user (as root,
// by chown).
func otherOwned(t *testing.T, path string) {
	t.Helper()
	u := asOtherUser(t)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
}

func TestDirRefusesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		// Unprivileged, a directory of another user is one of root's:
		// the check ensure applies to the directory it opened.
		if _, err := openDir("/", os.Geteuid()); !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "belongs to uid 0") {
			t.Fatalf("opening root's / as the instance directory: %v, want refused", err)
		}
		return
	}
	d := testDirs(t)
	otherOwned(t, d.own())
	_, err := listenIn(d, "web", newTestHandler())
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "belongs to uid") {
		t.Fatalf("Listen in a directory of another user: %v, want refused", err)
	}
	if _, err := listIn(d); err == nil {
		t.Error("List in a directory of another user did not fail")
	}
	if entries, _ := os.ReadDir(d.own()); len(entries) != 0 {
		t.Errorf("something was made in it: %v", entries)
	}
}

func TestXDGRuntimeDir(t *testing.T) {
	d := testDirs(t)
	xdg := filepath.Join(d.tmp, "xdg")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(d.euid))
	for _, tc := range []struct {
		name  string
		setup func() string // returns XDG_RUNTIME_DIR
		want  string
	}{
		{"the user's 0700 directory", func() string { return xdg }, filepath.Join(xdg, "nsbind")},
		{"unset", func() string { return "" }, private},
		{"relative", func() string { return "xdg" }, private},
		{"missing", func() string { return filepath.Join(d.tmp, "none") }, private},
		{"group-writable", func() string {
			p := filepath.Join(d.tmp, "xdg-gw")
			os.Mkdir(p, 0o700)
			os.Chmod(p, 0o770)
			return p
		}, private},
		{"a symlink to the user's directory", func() string {
			p := filepath.Join(d.tmp, "xdg-link")
			os.Symlink(xdg, p)
			return p
		}, private},
		{"another user's (sudo keeps XDG_RUNTIME_DIR)", func() string {
			if os.Geteuid() != 0 {
				return "/" // root's
			}
			p := filepath.Join(d.tmp, "xdg-other")
			otherOwned(t, p)
			return p
		}, private},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := d
			d.xdg = tc.setup()
			if got := d.own(); got != tc.want {
				t.Errorf("XDG_RUNTIME_DIR=%q: directory %s, want %s", d.xdg, got, tc.want)
			}
		})
	}
	// And the real thing uses it.
	d.xdg = xdg
	s, err := listenIn(d, "web", newTestHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := filepath.Join(xdg, "nsbind", "web.sock"); s.Path() != want {
		t.Errorf("socket %s, want %s", s.Path(), want)
	}
	if mode, _ := modeOf(t, filepath.Join(xdg, "nsbind")); mode.Perm() != 0o700 {
		t.Errorf("mode %v", mode)
	}
}

// TestDirKeyedByHostUID runs a server in a user namespace of its own whose
// uid 0 is a user of the host (as unshare --map-root-user makes): its
// directory in /tmp is named by that host uid, not by 0, where the host
// root's directory is (and, to the namespace, belongs to the overflow
// uid). The user finds the run from the host.
func TestDirKeyedByHostUID(t *testing.T) {
	d := testDirs(t)
	if err := os.Chmod(d.tmp, 0o1777); err != nil { // as /tmp is
		t.Fatal(err)
	}
	bin, host, hostGID := self(t), os.Geteuid(), os.Getegid()
	var u *otherUser
	if os.Geteuid() == 0 {
		// The namespace's uid 0 is the test user; the host root's
		// directory is there already.
		u = asOtherUser(t)
		bin, host, hostGID = u.bin, u.uid, u.gid
		if err := os.Mkdir(filepath.Join(d.tmp, "nsbind-0"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	attr := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: host, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostGID, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	srv := startChildAttr(t, bin, "serve", attr, append(childEnv(d), "NSBIND_INSTANCE_TEST_NAME=web")...)
	l := srv.line(t)
	if strings.Contains(l, "operation not permitted") && os.Getenv("NSBIND_TEST_REQUIRE_USERNS") != "1" {
		t.Skipf("no user namespace here: %s", l)
	}
	path, ok := strings.CutPrefix(l, "ready ")
	if !ok {
		t.Fatalf("the server in the namespace said %q", l)
	}
	want := filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(host), "web.sock")
	if path != want {
		t.Fatalf("the run of uid 0 in a namespace of host uid %d is at %s, want %s", host, path, want)
	}
	mode, uid := modeOf(t, filepath.Dir(path))
	if !mode.IsDir() || mode.Perm() != 0o700 || uid != host {
		t.Errorf("directory mode %v uid %d, want drwx------ of uid %d", mode, uid, host)
	}
	// The user, on the host, lists it.
	var list []InstanceInfo
	if u != nil {
		r := startChild(t, u.bin, "list", u.cred, childEnv(d)...).result(t)
		if r.Err != "" {
			t.Fatalf("the user's list: %s", r.Err)
		}
		list = r.List
	} else {
		var err error
		if list, err = listIn(d); err != nil {
			t.Fatal(err)
		}
	}
	if len(list) != 1 || list[0].Name != "web" || list[0].Socket != path || list[0].Error != "" {
		t.Errorf("the user's list on the host: %+v, want web at %s", list, path)
	}
}
