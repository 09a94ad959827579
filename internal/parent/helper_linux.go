package parent

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// IDs is the id plan of a run (nsutil.PlanIDs) and the user the server
// runs as on the host.
type IDs struct {
	Plan nsutil.IDPlan
	// Name and Home are the user's, from the user database ("" when it
	// has no entry).
	Name, Home string
}

// PlanIDs decides the id maps of a run with --root (root) and --user
// (user) from nsbind's own ids. Run as host root, the server runs as
// user, else as the user sudo was called by (SUDO_UID, SUDO_GID), and
// never as host root (fact 13 of DESIGN.md): without either, it fails
// with a message that names --user. nsbind doctor reports what it says.
func PlanIDs(root bool, user string) (IDs, error) {
	in := nsutil.IDPlanInput{
		CallerUID: os.Geteuid(), CallerGID: os.Getegid(),
		NotHostRoot: os.Geteuid() == 0 && !rootIsHostRoot(),
		Root:        root,
		TargetUID:   -1, TargetGID: -1,
	}
	var ids IDs
	// The user whose ranges the namespace maps: the target for root,
	// the caller otherwise.
	mapped := in.CallerUID
	switch {
	case user != "":
		uid, gid, name, home, err := nsutil.LookupUser(user)
		if err != nil {
			return IDs{}, fmt.Errorf("--user: %w", err)
		}
		in.TargetUID, in.TargetGID = uid, gid
		ids.Name, ids.Home = name, home
		mapped = uid
	case in.CallerUID == 0 && !in.NotHostRoot:
		uid, gid, ok, err := sudoUser()
		if err != nil {
			return IDs{}, err
		}
		if ok {
			in.TargetUID, in.TargetGID = uid, gid
			mapped = uid
			ids.Name, ids.Home = lookupID(uid)
		}
	default:
		ids.Name, ids.Home = lookupID(in.CallerUID)
	}
	in.TargetName = ids.Name
	if in.CallerUID != 0 && in.TargetUID == in.CallerUID {
		// --user naming the caller is the caller: nothing to switch.
		in.TargetUID, in.TargetGID = -1, -1
	}
	if root && (in.CallerUID != 0 || in.TargetUID > 0) {
		var err error
		if in.SubUIDs, err = nsutil.ReadSubIDs(nsutil.SubUIDFile, ids.Name, mapped); err != nil {
			return IDs{}, err
		}
		if in.SubGIDs, err = nsutil.ReadSubIDs(nsutil.SubGIDFile, ids.Name, mapped); err != nil {
			return IDs{}, err
		}
		in.NewUIDMap, in.NewGIDMap = nsutil.FindNewIDMap()
	}
	plan, err := nsutil.PlanIDs(in)
	if err != nil {
		return IDs{}, err
	}
	ids.Plan = plan
	return ids, nil
}

// rootIsHostRoot says whether uid 0 of nsbind's user namespace is uid 0
// of the namespace above it, as /proc/self/uid_map says: in the host's
// own namespace, or in a container whose root is the host's. A rootless
// container's uid 0 is an unprivileged user on the host. What cannot be
// read counts as host root: nsbind assumes the worst.
func rootIsHostRoot() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		inside, err1 := strconv.Atoi(f[0])
		host, err2 := strconv.Atoi(f[1])
		count, err3 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil && err3 == nil && inside == 0 && count > 0 {
			return host == 0
		}
	}
	return true
}

// lookupID is the name and home of uid in the user database, "" when it
// has no entry.
func lookupID(uid int) (name, home string) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return "", ""
	}
	return u.Username, u.HomeDir
}

// planIDs decides the run's id maps before anything starts (PlanIDs) and
// prints the plan's note, if any, as one line.
func (r *run) planIDs() error {
	ids, err := PlanIDs(r.Root, r.User)
	if err != nil {
		return err
	}
	plan := ids.Plan
	r.ids = plan
	r.env = os.Environ()
	if plan.Switch {
		// The server's environment says who it is: root's HOME would
		// be a directory it may not use.
		r.env = setEnv(r.env, "HOME", ids.Home)
		r.env = setEnv(r.env, "USER", ids.Name)
		r.env = setEnv(r.env, "LOGNAME", ids.Name)
		r.Logger.Debug("running the server as another user, not host root",
			"user", ids.Name, "uid", plan.HostUID, "gid", plan.HostGID)
		r.Confine = confineAs(r.Confine, ids.Home, plan.HostUID)
	}
	if plan.Note != "" && !r.Quiet {
		fmt.Fprintf(r.Stderr, "nsbind: %s\n", plan.Note)
	}
	r.Logger.Debug("id maps", "uid_map", plan.UIDMap, "gid_map", plan.GIDMap, "newuidmap", plan.NewUIDMap)
	return nil
}

// confineAs is cfg (nil: no --confine) for a server that runs as host
// uid uid with home home ("" when the user database has none): the home
// and runtime directory it hides as the user's (and whose secrets it hides
// again when the working directory shows them) are that user's, not those
// of root's environment ($HOME under sudo is often /root, and
// XDG_RUNTIME_DIR /run/user/0), or a run from the user's home would leave
// its ~/.ssh in view. Those of the environment are hidden too.
func confineAs(cfg *nsutil.ConfineConfig, home string, uid int) *nsutil.ConfineConfig {
	if cfg == nil {
		return nil
	}
	c := *cfg
	c.Hide = slices.Clone(cfg.Hide)
	for _, p := range []string{cfg.Home, cfg.RuntimeDir} {
		if p != "" {
			c.Hide = append(c.Hide, p)
		}
	}
	c.Home = home
	c.RuntimeDir = fmt.Sprintf("/run/user/%d", uid)
	return &c
}

// sudoUser is the user sudo was called by, from SUDO_UID and SUDO_GID
// (ok false when sudo did not start nsbind).
func sudoUser() (uid, gid int, ok bool, err error) {
	su, sg := os.Getenv("SUDO_UID"), os.Getenv("SUDO_GID")
	if su == "" {
		return 0, 0, false, nil
	}
	uid, err1 := strconv.Atoi(su)
	gid, err2 := strconv.Atoi(sg)
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, false, errors.New("SUDO_UID and SUDO_GID are not both ids: name the user the server runs as with --user NAME")
	}
	return uid, gid, true, nil
}

// setEnv sets key to value in env ("" removes it).
func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	if value != "" {
		out = append(out, key+"="+value)
	}
	return out
}

// startHelper starts the helper (nsbind itself, argv[0] nsutil.RoleInit)
// in new namespaces with the host sockets from nsutil.FirstFD on, writes
// its id maps (nsutil.Start does, once it runs), and sends it its
// configuration, the first message on the control channel: only then
// does the helper use an id. The environment goes to the helper as it is
// (but for HOME, USER and LOGNAME, as root, the server's user's): nothing
// in it chooses a role or changes the run, and the helper hands the
// server the environment without nsbind's own variables.
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
		Env:    r.env,
		Files:  files,
		IDs:    &r.ids,
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
