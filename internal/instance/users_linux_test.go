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

// Root's tests with the unprivileged test user: the peer check, and root
// seeing (and being served by) other users' instances.

func TestPeerCredRefused(t *testing.T) {
	u := asOtherUser(t)
	d := testDirs(t)
	s, _ := listenServe(t, d, "web", newTestHandler())

	// As the directory stands, the other user cannot even reach the
	// socket.
	if err := os.Chmod(d.tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	r := startChild(t, u.bin, "dial", u.cred, "NSBIND_INSTANCE_TEST_PATH="+s.Path()).result(t)
	if r.Errno != int(syscall.EACCES) || strings.Contains(r.Err, "may not use") {
		t.Fatalf("the other user's connect through the 0700 directory: %+v, want EACCES from the kernel", r)
	}
	// Opened up (as a socket passed on or a loosened directory would be),
	// the server itself refuses the other uid.
	if err := os.Chmod(filepath.Dir(s.Path()), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Path(), 0o777); err != nil {
		t.Fatal(err)
	}
	r = startChild(t, u.bin, "dial", u.cred, "NSBIND_INSTANCE_TEST_PATH="+s.Path()).result(t)
	if r.Errno != int(syscall.EACCES) || !strings.Contains(r.Err, "uid "+strconv.Itoa(u.uid)+" may not use the instance web of uid 0") || r.Info != nil {
		t.Fatalf("the other user's request: %+v, want refused by the server", r)
	}
	// Root is still served.
	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Info(ctx10(t)); err != nil {
		t.Errorf("root's Info after the refusal: %v", err)
	}
}

func TestRootSeesOtherUsers(t *testing.T) {
	u := asOtherUser(t)
	d := testDirs(t)
	// d.tmp stands for /tmp (sticky, everyone's), d.runUser for /run/user
	// with the test user's XDG_RUNTIME_DIR in it.
	if err := os.Chmod(d.tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	xdg := filepath.Join(d.runUser, strconv.Itoa(u.uid))
	if err := os.MkdirAll(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.runUser, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(xdg, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	env := childEnv(d)
	web := startChild(t, u.bin, "serve", u.cred, append(env, "NSBIND_INSTANCE_TEST_NAME=web")...)
	webPath := web.ready(t)
	api := startChild(t, u.bin, "serve", u.cred, append(env, "NSBIND_INSTANCE_TEST_NAME=api", "NSBIND_INSTANCE_TEST_XDG="+xdg)...)
	apiPath := api.ready(t)
	if want := filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(u.uid), "web.sock"); webPath != want {
		t.Fatalf("the user's web at %s, want %s", webPath, want)
	}
	if want := filepath.Join(xdg, "nsbind", "api.sock"); apiPath != want {
		t.Fatalf("the user's api at %s, want %s", apiPath, want)
	}
	listenServe(t, d, "db", newTestHandler()) // root's own

	l, err := listIn(d)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ii := range l {
		got = append(got, ii.Name+"/"+strconv.Itoa(ii.UID)+"/"+strconv.Itoa(ii.Pid))
	}
	want := []string{"db/0/" + strconv.Itoa(os.Getpid()),
		"api/" + strconv.Itoa(u.uid) + "/" + strconv.Itoa(api.cmd.Process.Pid),
		"web/" + strconv.Itoa(u.uid) + "/" + strconv.Itoa(web.cmd.Process.Pid)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("root's List: %v, want %v", got, want)
	}

	// Root is served by the user's instance.
	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.UID() != u.uid {
		t.Errorf("web's uid %d, want %d", c.UID(), u.uid)
	}
	if added, err := c.PortAdd(ctx10(t), []string{"8080"}); err != nil || len(added) != 1 {
		t.Errorf("root's PortAdd on the user's instance: %+v, %v", added, err)
	}

	// The user lists its own, not root's; and root's directory is closed
	// to it.
	r := startChild(t, u.bin, "list", u.cred, env...).result(t)
	if r.Err != "" || len(r.List) != 1 || r.List[0].Name != "web" || r.List[0].Sockets[0].Host != "127.0.0.1:8080" {
		t.Errorf("the user's List: %+v, want its web alone", r)
	}
	r = startChild(t, u.bin, "dial", u.cred, "NSBIND_INSTANCE_TEST_PATH="+filepath.Join(d.tmp, "nsbind-0", "db.sock")).result(t)
	if r.Errno != int(syscall.EACCES) {
		t.Errorf("the user's dial of root's db: %+v, want EACCES", r)
	}

	// A SIGKILLed run of the user: root's List removes its socket, through
	// the directory it checked.
	web.cmd.Process.Kill()
	web.cmd.Wait()
	if l, err = listIn(d); err != nil || len(l) != 2 {
		t.Errorf("root's List after web's SIGKILL: %+v, %v, want db and api", l, err)
	}
	if _, err := os.Lstat(webPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("web's stale socket after root's List: %v, want removed", err)
	}
}

// TestRootIgnoresPlantedDirectory: a directory named for one user but
// owned by another (made first in /tmp, to catch the sockets) is not
// listed by root.
func TestRootIgnoresPlantedDirectory(t *testing.T) {
	u := asOtherUser(t)
	d := testDirs(t)
	// The test user's directory, but "for" uid u.uid+1.
	planted := filepath.Join(d.tmp, "nsbind-"+strconv.Itoa(u.uid+1))
	otherOwned(t, planted)
	s, _ := listenServe(t, d, "web", newTestHandler())
	// Put a live socket of root's into the planted directory by a
	// hard link: a live server answers there, yet root must not list it.
	path := s.Path()
	if err := os.Link(path, filepath.Join(planted, "web.sock")); err != nil {
		t.Fatal(err)
	}
	l, err := listIn(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Socket != path {
		t.Errorf("root's List: %+v, want only %s", l, path)
	}
}
