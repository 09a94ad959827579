package nsutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The confined view (Confine) is made of these, in this order:
//
//  1. a mount namespace of the calling thread's own (unshare), its mounts
//     private, so nothing below reaches the helper or the host;
//  2. a detached copy (open_tree) of every tree to bind back — WorkDir and
//     the Allow paths — taken while they are still visible;
//  3. every mount made read-only (readOnlyTree on "/");
//  4. a tmpfs over each hidden tree: /tmp and /dev/shm (private, writable),
//     /home, /root, /run/user, the home and the runtime directory (empty,
//     read-only once the mount points in them exist);
//  5. the copies moved back to their own paths, parents before children,
//     the AllowRead ones made read-only;
//  6. the secrets of the home (secretPaths) hidden again where a bound-back
//     tree shows them, and the container engines' sockets covered;
//  7. Landlock (landlock_linux.go), then chdir to WorkDir.
//
// Mounts copied from the host into a user namespace are locked (mount
// namespaces(7)): they cannot be unmounted, a child cannot be bound
// without its parent's children (so every copy is recursive), and a flag
// the host set (nosuid, nodev, noexec, ro, the atime mode) cannot be
// cleared. Adding MS_RDONLY is allowed.

// hiddenTrees are covered with an empty tmpfs for every confined server:
// other users' homes and root's.
var hiddenTrees = []string{"/home", "/root", "/run/user"}

// privateTrees are covered with a writable tmpfs of the server's own.
var privateTrees = []string{"/tmp", "/dev/shm"}

// secretPaths, relative to the home, are hidden again when a bound-back
// tree (the working directory is the home, or --allow-read ~) shows them,
// unless a bound-back path lies in them (the user asked for it).
var secretPaths = []string{
	".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker",
	".password-store", ".local/share/keyrings", ".mozilla",
	".config/google-chrome", ".config/chromium", ".config/gh",
	".netrc", ".git-credentials", ".pgpass", ".pypirc", ".npmrc", ".vault-token",
	".Xauthority",
}

// engineSockets are covered because a process that may connect to them is
// root on the host in all but name; the user's group membership alone
// decides, and a read-only mount does not stop connect(2).
var engineSockets = []string{
	"/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock",
}

// CheckConfine validates cfg before anything starts: WorkDir and every
// Allow path must exist. The error is a *ConfinePathError naming the path.
func CheckConfine(cfg ConfineConfig) error {
	_, err := resolveConfine(cfg)
	return err
}

// binding is a tree bound back into the view.
type binding struct {
	path     string // resolved, absolute
	readOnly bool
	dir      bool
	fd       int // the detached copy
}

// resolved is a ConfineConfig with every path absolute and without
// symbolic links.
type resolved struct {
	workDir    string
	home       string
	runtimeDir string
	hide       []string
	binds      []binding
}

func resolveConfine(cfg ConfineConfig) (resolved, error) {
	var r resolved
	if cfg.WorkDir == "" {
		return r, &ConfinePathError{What: "working directory", Path: `""`, Err: errors.New("not set")}
	}
	add := func(what, p string, readOnly bool) (string, error) {
		abs, err := canonical(p)
		if err != nil {
			return "", &ConfinePathError{What: what, Path: p, Err: err}
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return "", &ConfinePathError{What: what, Path: p, Err: err}
		}
		r.binds = append(r.binds, binding{path: abs, readOnly: readOnly, dir: fi.IsDir(), fd: -1})
		return abs, nil
	}
	w, err := add("working directory", cfg.WorkDir, false)
	if err != nil {
		return r, err
	}
	if !r.binds[0].dir {
		return r, &ConfinePathError{What: "working directory", Path: cfg.WorkDir, Err: unix.ENOTDIR}
	}
	if w == "/" {
		// A bind of / over / would make the whole host writable.
		return r, &ConfinePathError{What: "working directory", Path: cfg.WorkDir,
			Err: errors.New("is the root: run the server from its own directory")}
	}
	r.workDir = w
	for _, p := range cfg.AllowRead {
		if _, err := add("--allow-read", p, true); err != nil {
			return r, err
		}
	}
	for _, p := range cfg.AllowWrite {
		if _, err := add("--allow-write", p, false); err != nil {
			return r, err
		}
	}
	// The home and the runtime directory are hidden if they exist; an
	// absent one hides nothing.
	if cfg.Home != "" {
		r.home, _ = canonical(cfg.Home)
	}
	if cfg.RuntimeDir != "" {
		r.runtimeDir, _ = canonical(cfg.RuntimeDir)
	}
	for _, p := range cfg.Hide {
		if c, err := canonical(p); err == nil {
			r.hide = append(r.hide, c)
		}
	}
	return r, nil
}

// canonical is p absolute and with its symbolic links resolved.
func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// within reports whether p is dir or lies inside it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// Confine confines the calling process to the view ConfineConfig
// describes: the host's filesystem read-only, WorkDir and a private /tmp
// writable, the home (but WorkDir and the Allow paths in it), the runtime
// directory, other users' homes and the home's secrets hidden; then, where
// the kernel has it, Landlock rules that match the view and scope signals
// and abstract unix sockets (landlock_linux.go).
//
// It runs in the exec step, the last process before the server, before
// that drops its capabilities: it needs CAP_SYS_ADMIN in the user namespace
// (the helper's ambient capabilities give it). The calling process may or
// may not be in a mount namespace of its own already: Confine makes one.
//
// A mount namespace made by unshare(2), a working directory and a Landlock
// domain's no_new_privs belong to the calling thread, and execve(2) keeps
// the calling thread's: Confine locks the calling goroutine to its thread
// for good, and the server must be executed from that goroutine. Other
// threads keep the old view until the exec ends them. Landlock also sets
// no_new_privs. After Confine the thread can mount nothing more (Landlock
// forbids it).
func Confine(cfg ConfineConfig) (ConfineReport, error) {
	runtime.LockOSThread() // never unlocked: see above
	var rep ConfineReport
	r, err := resolveConfine(cfg)
	if err != nil {
		return rep, err
	}
	perMount, err := confineMounts(r)
	if err != nil {
		return rep, err
	}
	rep.PerMountRemount = perMount
	if err := unix.Chdir(r.workDir); err != nil {
		// The old working directory is a reference into the view before
		// the binds: read-only, and in the hidden trees.
		return rep, fmt.Errorf("--confine: entering %s: %w", r.workDir, err)
	}
	abi, scoped, err := restrictLandlock(r)
	if err != nil {
		return rep, fmt.Errorf("--confine: Landlock: %w", err)
	}
	rep.LandlockABI, rep.Scoped = abi, scoped
	return rep, nil
}

// confineMounts builds the view in a new mount namespace of the calling
// thread (steps 1 to 6 above).
func confineMounts(r resolved) (perMount bool, err error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return false, fmt.Errorf("--confine: making a mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return false, fmt.Errorf("--confine: making mounts private: %w", err)
	}

	// 2. Copies of the trees to bind back, while they are visible.
	binds := slices.Clone(r.binds)
	defer func() {
		for _, b := range binds {
			if b.fd >= 0 {
				unix.Close(b.fd)
			}
		}
	}()
	for i := range binds {
		if binds[i].fd, err = copyTree(binds[i].path); err != nil {
			return false, err
		}
	}

	// 3. Everything read-only.
	perMount, err = readOnlyTree("/")
	if err != nil {
		return perMount, fmt.Errorf("--confine: making the view read-only: %w", err)
	}

	// 4. The hidden and private trees.
	var readOnlyLater []int
	defer func() {
		for _, fd := range readOnlyLater {
			unix.Close(fd)
		}
	}()
	if err := hideTrees(r, &readOnlyLater); err != nil {
		return perMount, err
	}
	// $HOME stays a directory (empty unless something is bound back into
	// it): programs that stat it or chdir to it keep working.
	hasHome := r.home != "" && r.home != "/"
	if hasHome && !slices.ContainsFunc(binds, func(b binding) bool { return within(r.home, b.path) }) {
		_ = os.MkdirAll(r.home, 0o755) // fails only outside the tmpfs, where it exists
	}

	// 5. The copies back in their places, parents first.
	sort.SliceStable(binds, func(i, j int) bool {
		return strings.Count(binds[i].path, "/") < strings.Count(binds[j].path, "/")
	})
	for _, b := range binds {
		if err := bindBack(b); err != nil {
			return perMount, err
		}
	}

	// 6. Secrets shown again by a bound-back tree, and the engines' sockets.
	if hasHome {
		for _, s := range secretPaths {
			p := filepath.Join(r.home, s)
			if fi, err := os.Lstat(p); err == nil {
				if err := coverUnlessBound(binds, p, fi.IsDir()); err != nil {
					return perMount, err
				}
			}
		}
	}
	for _, s := range engineSockets {
		p, err := canonical(s)
		if err != nil {
			continue
		}
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			if err := coverUnlessBound(binds, p, false); err != nil {
				return perMount, err
			}
		}
	}

	// The hiding tmpfs read-only, now that its mount points exist.
	for _, fd := range readOnlyLater {
		if err := readOnlyFD(fd); err != nil {
			return perMount, fmt.Errorf("--confine: making a hidden tree read-only: %w", err)
		}
	}
	return perMount, nil
}

// copyTree takes the detached recursive copy of the mount at path that
// step 5 binds back (step 2).
func copyTree(path string) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path,
		unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			err = fmt.Errorf("%w (open_tree(2) needs Linux 5.2)", err)
		}
		return -1, fmt.Errorf("--confine: copying the mount of %s: %w", path, err)
	}
	return fd, nil
}

// hideTrees covers the private trees with a writable tmpfs and the hidden
// ones (hiddenTrees, the home, the runtime directory) with an empty one,
// shortest path first, skipping what is missing, not a directory, or
// already under a cover (step 4). It appends to readOnlyLater a descriptor
// of each hiding tmpfs, which is made read-only once the mount points in
// it exist; the caller closes them.
func hideTrees(r resolved, readOnlyLater *[]int) error {
	type hide struct {
		path     string
		writable bool
	}
	var hides []hide
	for _, p := range privateTrees {
		hides = append(hides, hide{path: p, writable: true})
	}
	for _, p := range hiddenTrees {
		hides = append(hides, hide{path: p})
	}
	for _, p := range append([]string{r.home, r.runtimeDir}, r.hide...) {
		if p != "" {
			hides = append(hides, hide{path: p})
		}
	}
	var covered []string // resolved paths a tmpfs covers
	sort.SliceStable(hides, func(i, j int) bool { return len(hides[i].path) < len(hides[j].path) })
	for _, h := range hides {
		p, err := canonical(h.path)
		if err != nil {
			continue // not there: nothing to hide
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		if slices.ContainsFunc(covered, func(c string) bool { return within(p, c) }) {
			continue // already gone with a tree that holds it
		}
		if p == "/" {
			continue // a home of / (nobody's): the read-only view is enough
		}
		mode := "mode=0755"
		if h.writable {
			mode = "mode=1777"
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, mode); err != nil {
			return fmt.Errorf("--confine: hiding %s: %w", p, err)
		}
		covered = append(covered, p)
		if !h.writable {
			fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("--confine: hiding %s: %w", p, err)
			}
			*readOnlyLater = append(*readOnlyLater, fd)
		}
	}
	return nil
}

// bindBack moves the copy of b back to its path, making the mount point
// first where a hiding tmpfs lost it, and the tree read-only for an
// AllowRead path (step 5).
func bindBack(b binding) error {
	if err := mountPoint(b.path, b.dir); err != nil {
		return fmt.Errorf("--confine: binding %s back: %w", b.path, err)
	}
	if err := unix.MoveMount(b.fd, "", unix.AT_FDCWD, b.path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("--confine: binding %s back: %w", b.path, err)
	}
	if b.readOnly {
		if _, err := readOnlyTree(b.path); err != nil {
			return fmt.Errorf("--confine: making %s read-only: %w", b.path, err)
		}
	}
	return nil
}

// coverUnlessBound hides p (coverPath) unless a bound-back tree lies in
// it: the user asked for that one, or the working directory is in it
// (step 6).
func coverUnlessBound(binds []binding, p string, dir bool) error {
	if slices.ContainsFunc(binds, func(b binding) bool { return within(b.path, p) }) {
		return nil
	}
	if err := coverPath(p, dir); err != nil {
		return fmt.Errorf("--confine: hiding %s: %w", p, err)
	}
	return nil
}

// mountPoint makes sure path exists as a directory (dir) or file to mount
// on. It is missing only inside a hiding tmpfs, which is still writable.
func mountPoint(path string, dir bool) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// coverPath hides path: an empty read-only tmpfs over a directory, the
// null device over anything else (it reads as empty; connect(2) to it is
// refused).
func coverPath(path string, dir bool) error {
	if dir {
		return unix.Mount("tmpfs", path, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700")
	}
	return unix.Mount("/dev/null", path, "", unix.MS_BIND, "")
}

// readOnlyTree makes the mount at path and every mount under it read-only.
// mount_setattr(2) with AT_RECURSIVE does it in one call and sets nothing
// but the flag (Linux 5.12). Before it, each mount is remounted on its
// own, and a remount must repeat every locked flag (see readOnlyMount).
// perMount says which way it went.
func readOnlyTree(path string) (perMount bool, err error) {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err = unix.MountSetattr(unix.AT_FDCWD, path, unix.AT_RECURSIVE, &attr)
	if !errors.Is(err, unix.ENOSYS) {
		return false, err
	}
	mounts, err := readMountInfo()
	if err != nil {
		return true, err
	}
	for _, m := range mounts {
		if !within(m.point, path) {
			continue
		}
		if err := readOnlyMount(m.point, m.opts); err != nil {
			return true, fmt.Errorf("%s: %w", m.point, err)
		}
	}
	return true, nil
}

// readOnlyFD makes the mount fd is the root of read-only (only that one).
func readOnlyFD(fd int) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	// A tmpfs of our own has no locked flags: these are the ones it got.
	return unix.Mount("", fmt.Sprintf("/proc/thread-self/fd/%d", fd), "",
		unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// readOnlyMount remounts the mount at point read-only with
// MS_REMOUNT|MS_BIND, which changes the mount's flags and not the
// filesystem's. The call sets the mount's flags to exactly those given, and
// in a user namespace the kernel refuses (EPERM) to clear a flag that the
// host set on a copied mount: opts (the mount's options from mountinfo) are
// repeated.
func readOnlyMount(point string, opts string) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "strictatime":
			flags |= unix.MS_STRICTATIME
		case "nosymfollow":
			flags |= unix.MS_NOSYMFOLLOW
		}
	}
	err := unix.Mount("", point, "", flags, "")
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) {
		// Covered by a later mount, or under a directory this uid cannot
		// search: not reachable by path, so not by the server either.
		return nil
	}
	return err
}

// mountEntry is a line of mountinfo: the mount point and its per-mount
// options.
type mountEntry struct {
	point string
	opts  string
}

// readMountInfo reads the calling thread's mounts: after unshare(2) the
// thread's mount namespace is not the process's, so /proc/self would show
// the wrong ones.
func readMountInfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(fields[4]), opts: fields[5]})
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			o := s[i+1 : i+4]
			if o[0] >= '0' && o[0] <= '3' && o[1] >= '0' && o[1] <= '7' && o[2] >= '0' && o[2] <= '7' {
				b.WriteByte((o[0]-'0')<<6 | (o[1]-'0')<<3 | (o[2] - '0'))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
