package nsutil

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// idmapChildEnv marks the copy of the test binary that runs as the child of
// an id-map test; its value is the child's idmapSpec as JSON.
const idmapChildEnv = "NSUTIL_TEST_IDMAP_CHILD"

// idmapSpec tells the child what to do once its maps are written.
type idmapSpec struct {
	// Plan is handed to EnterIDs (which acts only when Plan.Switch is set).
	Plan IDPlan
	// Dir is where the child creates a file after setuid(65534).
	Dir string
	// HostGroups, when set, are supplementary groups the child starts
	// with (as host root's under sudo); only root may give them. The
	// parent never has them: not JSON, for the parent only.
	HostGroups []int `json:"-"`
	// EndForker ends the thread that forked the child once the child has
	// reported, and expects the child to die of its parent-death signal.
	EndForker bool `json:"-"`
	// Sysctl makes the child write net.ipv4.ip_unprivileged_port_start in
	// its network namespace, which takes CAP_NET_ADMIN there.
	Sysctl bool
}

// idmapReport is what the child saw; an error is its text, "" for none.
type idmapReport struct {
	// BeforeUID and BeforeCapAmb are read before the maps are written.
	BeforeUID    int
	BeforeCapAmb string
	Enter        string
	UIDMap       string
	GIDMap       string
	Setgroups    string
	UID, GID     int
	CapAmb       string
	CapEff       string
	Shadow       string
	Sysctl       string
	SetgroupsErr string
	SetgidErr    string
	SetuidErr    string
	Create       string
	// Dumpable is prctl's PR_GET_DUMPABLE after EnterIDs.
	Dumpable int
}

// idmapChild is the child: it reads its ids before the maps, says "ready",
// waits for the byte on fd 3 that says WriteIDMaps returned, enters the plan's ids, says
// "entered" and waits for a second byte while the host reads its status,
// then tries what a privilege-dropping server does. It prints the report
// as one JSON line and exits when fd 3 closes.
func idmapChild(specJSON string) int {
	var spec idmapSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Println("spec:", err)
		return 2
	}
	var rep idmapReport
	rep.BeforeUID = os.Getuid()
	rep.BeforeCapAmb = statusField("/proc/self/status", "CapAmb")
	// The parent writes the maps only after this line: so the exec above
	// happened with the uid unmapped, as the helper's does.
	fmt.Println("ready")
	sig := os.NewFile(3, "signal")
	var b [1]byte
	if n, _ := sig.Read(b[:]); n != 1 {
		fmt.Println("no signal from the parent")
		return 2
	}
	rep.Enter = errText(EnterIDs(spec.Plan, syscall.SIGKILL))
	rep.Dumpable, _ = unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	rep.UIDMap = readFields("/proc/self/uid_map")
	rep.GIDMap = readFields("/proc/self/gid_map")
	rep.Setgroups = readFields("/proc/self/setgroups")
	rep.UID, rep.GID = os.Getuid(), os.Getgid()
	rep.CapAmb = statusField("/proc/self/status", "CapAmb")
	rep.CapEff = statusField("/proc/self/status", "CapEff")
	if f, err := os.Open("/etc/shadow"); err == nil {
		f.Close()
	} else {
		rep.Shadow = errText(err)
	}
	// The host reads our status now, before we drop to 65534.
	fmt.Println("entered")
	if n, _ := sig.Read(b[:]); n != 1 {
		fmt.Println("no second signal from the parent")
		return 2
	}
	if spec.Sysctl {
		rep.Sysctl = errText(os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0))
	}
	rep.SetgroupsErr = errText(syscall.Setgroups([]int{}))
	rep.SetgidErr = errText(syscall.Setgid(65534))
	rep.SetuidErr = errText(syscall.Setuid(65534))
	if rep.SetuidErr == "" && spec.Dir != "" {
		rep.Create = errText(os.WriteFile(filepath.Join(spec.Dir, "made-by-65534"), nil, 0o644))
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	io.Copy(io.Discard, sig) // until the parent has looked at us
	return 0
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// readFields reads a file as its whitespace-separated fields, lines joined
// by "; ": the kernel pads the columns of uid_map.
func readFields(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "; ")
}

// statusField is the value of one line of a /proc/PID/status file.
func statusField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

func capMask(caps ...uintptr) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

// idmapResult is the child's report and what the host saw of it.
type idmapResult struct {
	idmapReport
	// HostUid, HostGid and HostGroups are the Uid, Gid and Groups lines
	// of /proc/CHILD/status as the host reads them, after EnterIDs;
	// HostGroupsBefore is the Groups line before the maps.
	HostUid, HostGid, HostGroups string
	HostGroupsBefore             string
}

// runIDMapChild starts the child as Start starts the helper but with no
// maps (CLONE_NEWUSER|CLONE_NEWNET, the ambient capabilities caps), applies
// plan with WriteIDMaps, and returns what the child and the host saw. It
// skips where user namespaces cannot be made, except under
// NSBIND_TEST_REQUIRE_USERNS=1.
func runIDMapChild(t *testing.T, plan IDPlan, spec idmapSpec, caps []uintptr) idmapResult {
	t.Helper()
	spec.Plan = plan
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	sigR, sigW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer sigW.Close()
	cmd := exec.Command(os.Args[0])
	// A race-detector child would sleep a second at exit.
	cmd.Env = append(os.Environ(), idmapChildEnv+"="+string(js), "GORACE=atexit_sleep_ms=0")
	cmd.ExtraFiles = []*os.File{sigR}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		AmbientCaps: caps,
		Pdeathsig:   syscall.SIGKILL,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	endForker, err := startWithGroups(t, cmd, spec.HostGroups, spec.EndForker)
	sigR.Close()
	if err != nil {
		skipOrFail(t, fmt.Sprintf("cannot create a user namespace here: %v", err))
	}
	// Every wait below ends when the child does; the child ends by now.
	watchdog := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	defer cmd.Wait()
	defer cmd.Process.Kill()

	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("child: %v: %q", err, line)
	}
	var res idmapResult
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	res.HostGroupsBefore = statusField(status, "Groups")
	if err := WriteIDMaps(cmd.Process.Pid, plan); err != nil {
		t.Fatalf("WriteIDMaps: %v", err)
	}
	if _, err := sigW.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if line, err := out.ReadString('\n'); line != "entered\n" {
		t.Fatalf("child: %v: %q", err, line)
	}
	res.HostUid = statusField(status, "Uid")
	res.HostGid = statusField(status, "Gid")
	res.HostGroups = statusField(status, "Groups")
	if _, err := sigW.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	line, err := out.ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &res.idmapReport) != nil {
		t.Fatalf("child's report: %v: %q", err, line)
	}
	if spec.EndForker {
		endForker()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child after its parent thread ended: %v, want killed by SIGKILL", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the child outlived the thread that forked it: no parent-death signal")
		}
		return res
	}
	sigW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	return res
}

// startWithGroups starts cmd with the supplementary groups groups, or the
// test's own when groups is nil, from a thread of its own when groups is
// set or own is true. The groups are set on that thread only (the raw
// setgroups(2) is per thread; Go's syscall.Setgroups would change the
// whole test). The thread forks the child and stays locked, and so alive
// for the child's Pdeathsig (fact 7), until end is called or the test
// ends; then it exits with its goroutine.
func startWithGroups(t *testing.T, cmd *exec.Cmd, groups []int, own bool) (end func(), err error) {
	if groups == nil && !own {
		return func() {}, cmd.Start()
	}
	started, done := make(chan error), make(chan struct{})
	end = sync.OnceFunc(func() { close(done) })
	t.Cleanup(end)
	var fork func()
	fork = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread never exits (Go wedges it when a locked
			// goroutine ends there), so a child forked from it would
			// never get its parent-death signal: fork from another
			// thread, while this goroutine keeps the main thread.
			go fork()
			<-done
			runtime.UnlockOSThread()
			return
		}
		if groups == nil {
			started <- cmd.Start()
			<-done
			return
		}
		gids := make([]uint32, len(groups))
		for i, g := range groups {
			gids[i] = uint32(g)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(unsafe.Pointer(&gids[0])), 0); e != 0 {
			started <- fmt.Errorf("setgroups on the forking thread: %w", e)
			return
		}
		started <- cmd.Start()
		<-done
	}
	go fork()
	return end, <-started
}

// requireUnprivileged skips as root: the test is of what an unprivileged
// user may do, and runs in the pass as the unprivileged user.
func requireUnprivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Skip("runs as an unprivileged user (the suite's pass as nsbind-test)")
	}
}

// requireRoot skips unless root: the test is of nsbind run as root, and
// runs in the suite's pass as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs as root (the suite's pass as root)")
	}
}

// shareDir is a directory that any uid may create files in (a worker's
// 65534 inside is a subordinate uid on the host), removed after the test.
func shareDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "nsbind-idmap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ownerOf(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

// helperCapsAnd are the helper's ambient capabilities and more.
func helperCapsAnd(more ...uintptr) []uintptr { return append(helperCaps(), more...) }

// The ranges of the user a test maps, read as nsbind would read them, or a
// skip with the reason when /etc/subuid or /etc/subgid has none.
func subIDsOf(t *testing.T, name string, uid, gid int) (uids, gids []IDRange) {
	t.Helper()
	uids, err := ReadSubIDs(SubUIDFile, name, uid)
	if err != nil {
		t.Fatal(err)
	}
	gids, err = ReadSubIDs(SubGIDFile, name, gid)
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) == 0 || len(gids) == 0 {
		t.Skipf("%s has no range in %s and %s (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)", name, SubUIDFile, SubGIDFile, name)
	}
	return uids, gids
}

func mapLines(m []IDMapEntry) string {
	var s []string
	for _, e := range m {
		s = append(s, e.String())
	}
	return strings.Join(s, "; ")
}

// skipOrFail skips with why, or fails under NSBIND_TEST_REQUIRE_USERNS=1
// (scripts/test.sh), where the machine is set up for every test.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
		t.Fatal(why + " (NSBIND_TEST_REQUIRE_USERNS=1)")
	}
	t.Skip(why)
}

// needNewIDMap is newuidmap and newgidmap from PATH, or a skip (a failure
// under scripts/test.sh).
func needNewIDMap(t *testing.T) (nu, ng string) {
	t.Helper()
	nu, ng = FindNewIDMap()
	if nu == "" || ng == "" {
		skipOrFail(t, "newuidmap and newgidmap are not on PATH (package uidmap)")
	}
	return nu, ng
}

// planForTestUser is, as root, the plan for running the server as the
// suite's unprivileged user (nsbind-test), with --root and the user's
// ranges when root is set; it returns the user's ids and ranges too.
func planForTestUser(t *testing.T, root bool) (plan IDPlan, uid, gid int, uids, gids []IDRange) {
	t.Helper()
	requireRoot(t)
	uid, gid, name, _, err := LookupUser("nsbind-test")
	if err != nil {
		t.Fatalf("the suite's unprivileged user: %v", err)
	}
	in := IDPlanInput{CallerUID: 0, CallerGID: 0, Root: root, TargetUID: uid, TargetGID: gid, TargetName: name}
	if root {
		uids, gids = subIDsOf(t, name, uid, gid)
		in.SubUIDs, in.SubGIDs = uids, gids
	}
	plan, err = PlanIDs(in)
	if err != nil {
		t.Fatal(err)
	}
	return plan, uid, gid, uids, gids
}

// checkDroppedTo65534 checks that the child became 65534 inside and that
// the file it made in dir then belongs to the matching subordinate ids on
// the host.
func checkDroppedTo65534(t *testing.T, res idmapResult, dir string, uids, gids []IDRange) {
	t.Helper()
	if res.SetgroupsErr != "" || res.SetgidErr != "" || res.SetuidErr != "" || res.Create != "" {
		t.Fatalf("dropping to 65534: setgroups %q setgid %q setuid %q create %q", res.SetgroupsErr, res.SetgidErr, res.SetuidErr, res.Create)
	}
	fu, fg := ownerOf(t, filepath.Join(dir, "made-by-65534"))
	if wu, wg := uids[0].Start+65534-1, gids[0].Start+65534-1; fu != wu || fg != wg {
		t.Errorf("file of uid 65534 inside is %d:%d on the host, want %d:%d", fu, fg, wu, wg)
	}
}

// startBareUserns starts a shell in a new user namespace with no maps,
// which waits until the test ends, and returns its pid.
func startBareUserns(t *testing.T) int {
	t.Helper()
	sigR, sigW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sigW.Close() })
	cmd := exec.Command("/bin/sh", "-c", "read x <&3")
	cmd.ExtraFiles = []*os.File{sigR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	sigR.Close()
	if err != nil {
		t.Fatalf("starting the child: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// Unprivileged, no --root: the user's own ids map to themselves, written
// by nsbind with setgroups denied; the ambient capabilities the child got
// at an exec before its uid was mapped are still there, and work.
func TestIDMapUnprivilegedSelf(t *testing.T) {
	requireUnprivileged(t)
	uid, gid := os.Getuid(), os.Getgid()
	plan, err := PlanIDs(IDPlanInput{CallerUID: uid, CallerGID: gid, TargetUID: -1, TargetGID: -1})
	if err != nil {
		t.Fatal(err)
	}
	res := runIDMapChild(t, plan, idmapSpec{Sysctl: true}, helperCaps())
	want := capMask(helperCaps()...)
	if res.BeforeUID != 65534 || res.BeforeCapAmb != want {
		t.Errorf("before the maps: uid %d CapAmb %s; want the overflow uid 65534 and CapAmb %s", res.BeforeUID, res.BeforeCapAmb, want)
	}
	self := fmt.Sprintf("%d %d 1", uid, uid)
	if res.UIDMap != self || res.GIDMap != fmt.Sprintf("%d %d 1", gid, gid) || res.Setgroups != "deny" {
		t.Errorf("maps %q %q setgroups %q", res.UIDMap, res.GIDMap, res.Setgroups)
	}
	if res.UID != uid || res.GID != gid || res.CapAmb != want || res.CapEff != want {
		t.Errorf("after the maps: uid %d gid %d CapAmb %s CapEff %s; want %d %d %s", res.UID, res.GID, res.CapAmb, res.CapEff, uid, gid, want)
	}
	if res.Sysctl != "" {
		t.Errorf("CAP_NET_ADMIN inside: writing ip_unprivileged_port_start: %s", res.Sysctl)
	}
	if !strings.Contains(res.SetuidErr, "invalid argument") {
		t.Errorf("setuid(65534) with one mapped uid: %q, want EINVAL", res.SetuidErr)
	}
}

// Unprivileged --root with no range: uid 0 only, written by nsbind, and a
// worker's setuid fails as the note says it will.
func TestIDMapUnprivilegedRootNoRange(t *testing.T) {
	requireUnprivileged(t)
	uid, gid := os.Getuid(), os.Getgid()
	plan, err := PlanIDs(IDPlanInput{CallerUID: uid, CallerGID: gid, Root: true, TargetUID: -1, TargetGID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Note == "" || !plan.Direct() {
		t.Fatalf("plan %+v: want a direct write and a note", plan)
	}
	res := runIDMapChild(t, plan, idmapSpec{}, helperCapsAnd(unix.CAP_SETUID, unix.CAP_SETGID))
	if res.UIDMap != fmt.Sprintf("0 %d 1", uid) || res.UID != 0 || res.GID != 0 {
		t.Errorf("uid_map %q uid %d gid %d", res.UIDMap, res.UID, res.GID)
	}
	if !strings.Contains(res.SetuidErr, "invalid argument") || !strings.Contains(res.SetgidErr, "invalid argument") {
		t.Errorf("setuid/setgid(65534) without a range: %q %q, want EINVAL", res.SetuidErr, res.SetgidErr)
	}
}

// Unprivileged --root with the user's range: newuidmap and newgidmap map 0
// to the user and 1..65536 to the range; the child may then drop its groups
// and become 65534, whose files are the subordinate uid on the host.
func TestIDMapUnprivilegedRootRange(t *testing.T) {
	requireUnprivileged(t)
	uid, gid := os.Getuid(), os.Getgid()
	_, _, name, _, err := LookupUser(strconv.Itoa(uid))
	if err != nil {
		t.Fatal(err)
	}
	uids, gids := subIDsOf(t, name, uid, gid)
	nu, ng := needNewIDMap(t)
	plan, err := PlanIDs(IDPlanInput{CallerUID: uid, CallerGID: gid, Root: true, TargetUID: -1, TargetGID: -1,
		TargetName: name, SubUIDs: uids, SubGIDs: gids, NewUIDMap: nu, NewGIDMap: ng})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Direct() || plan.Note != "" {
		t.Fatalf("plan %+v: want newuidmap and no note", plan)
	}
	dir := shareDir(t)
	caps := helperCapsAnd(unix.CAP_SETUID, unix.CAP_SETGID)
	res := runIDMapChild(t, plan, idmapSpec{Dir: dir}, caps)
	if res.UIDMap != mapLines(plan.UIDMap) || res.GIDMap != mapLines(plan.GIDMap) {
		t.Errorf("maps %q %q, want %q %q", res.UIDMap, res.GIDMap, mapLines(plan.UIDMap), mapLines(plan.GIDMap))
	}
	if uid == 1001 && uids[0] == (IDRange{100000, 65536}) && res.UIDMap != "0 1001 1; 1 100000 65536" {
		t.Errorf("uid_map %q, want 0 1001 1; 1 100000 65536", res.UIDMap)
	}
	if res.UID != 0 || res.GID != 0 || res.Setgroups != "allow" {
		t.Errorf("uid %d gid %d setgroups %q", res.UID, res.GID, res.Setgroups)
	}
	if res.BeforeCapAmb != capMask(caps...) || res.CapAmb != capMask(caps...) {
		t.Errorf("CapAmb before %s after %s, want %s", res.BeforeCapAmb, res.CapAmb, capMask(caps...))
	}
	checkDroppedTo65534(t, res, dir, uids, gids)
}

// Run as root with a target user and no --root: the child becomes the
// target, is not host uid 0, has none of root's groups and cannot read
// /etc/shadow.
func TestIDMapAsRootTargetUser(t *testing.T) {
	plan, uid, gid, _, _ := planForTestUser(t, false)
	if !plan.Direct() || !plan.Switch {
		t.Fatalf("plan %+v: want a direct write and a switch", plan)
	}
	caps := helperCapsAnd(unix.CAP_SETUID, unix.CAP_SETGID)
	// Host root's groups, as sudo gives them (root, and shadow's group
	// where it exists), must not follow the server.
	groups := []int{0, 42}
	res := runIDMapChild(t, plan, idmapSpec{HostGroups: groups}, caps)
	if res.HostGroupsBefore != "0 42" {
		t.Errorf("the child started with groups %q, want 0 42", res.HostGroupsBefore)
	}
	if res.Enter != "" {
		t.Fatalf("EnterIDs: %s", res.Enter)
	}
	if want := fmt.Sprintf("%d %d 1", uid, uid); res.UIDMap != want {
		t.Errorf("uid_map %q, want %q", res.UIDMap, want)
	}
	hostUID := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid)
	hostGID := fmt.Sprintf("%d %d %d %d", gid, gid, gid, gid)
	if res.HostUid != hostUID || res.HostGid != hostGID || res.HostGroups != "" {
		t.Errorf("on the host the child is Uid %q Gid %q Groups %q; want %q %q and no groups", res.HostUid, res.HostGid, res.HostGroups, hostUID, hostGID)
	}
	if res.UID != uid || res.GID != gid {
		t.Errorf("inside uid %d gid %d, want %d %d", res.UID, res.GID, uid, gid)
	}
	if !strings.Contains(res.Shadow, "permission denied") {
		t.Errorf("opening /etc/shadow: %q, want EACCES", res.Shadow)
	}
	if res.CapAmb != capMask(caps...) {
		t.Errorf("CapAmb after EnterIDs %s, want %s", res.CapAmb, capMask(caps...))
	}
	t.Logf("dumpable after EnterIDs: %d", res.Dumpable)
}

// Run as root with --root: uid 0 inside is the target user on the host, and
// with the target's range a worker may become 65534.
func TestIDMapAsRootWithRoot(t *testing.T) {
	plan, uid, _, uids, gids := planForTestUser(t, true)
	dir := shareDir(t)
	caps := helperCapsAnd(unix.CAP_SETUID, unix.CAP_SETGID)
	res := runIDMapChild(t, plan, idmapSpec{Dir: dir}, caps)
	if res.Enter != "" {
		t.Fatalf("EnterIDs: %s", res.Enter)
	}
	if res.UIDMap != mapLines(plan.UIDMap) || !strings.HasPrefix(res.UIDMap, fmt.Sprintf("0 %d 1; ", uid)) {
		t.Errorf("uid_map %q, want %q", res.UIDMap, mapLines(plan.UIDMap))
	}
	if hostUID := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid); res.HostUid != hostUID || res.HostGroups != "" {
		t.Errorf("on the host uid 0 inside is Uid %q Groups %q, want %q and no groups", res.HostUid, res.HostGroups, hostUID)
	}
	if res.UID != 0 || res.GID != 0 {
		t.Errorf("inside uid %d gid %d, want 0 0", res.UID, res.GID)
	}
	if !strings.Contains(res.Shadow, "permission denied") {
		t.Errorf("opening /etc/shadow as uid 0 inside: %q, want EACCES", res.Shadow)
	}
	if res.CapAmb != capMask(caps...) {
		t.Errorf("after EnterIDs: CapAmb %s, want %s", res.CapAmb, capMask(caps...))
	}
	checkDroppedTo65534(t, res, dir, uids, gids)
}

// newuidmap refusing a range that is not the user's: the error names the
// step, keeps the exit status, and says what newuidmap said.
func TestWriteIDMapsNewUIDMapRefuses(t *testing.T) {
	requireUnprivileged(t)
	nu, ng := needNewIDMap(t)
	uid, gid := os.Getuid(), os.Getgid()
	plan := IDPlan{
		UIDMap:    []IDMapEntry{{0, uid, 1}, {1, 7000000, 10}},
		GIDMap:    []IDMapEntry{{0, gid, 1}},
		NewUIDMap: nu, NewGIDMap: ng,
	}
	pid := startBareUserns(t)
	err := WriteIDMaps(pid, plan)
	var me *IDMapError
	var ee *exec.ExitError
	if !errors.As(err, &me) || me.Step != StepUIDMap || me.Output == "" || !errors.As(err, &ee) {
		t.Fatalf("WriteIDMaps with a range not in /etc/subuid: %v (%#v)", err, err)
	}
	t.Logf("%v", err)
}

// A direct write the kernel refuses keeps its errno: an unprivileged user
// may not map another uid.
func TestWriteIDMapsDirectRefused(t *testing.T) {
	requireUnprivileged(t)
	pid := startBareUserns(t)
	plan := IDPlan{UIDMap: []IDMapEntry{{0, 100000, 1}}, GIDMap: []IDMapEntry{{0, os.Getgid(), 1}}, SetgroupsDeny: true}
	err := WriteIDMaps(pid, plan)
	var me *IDMapError
	if !errors.As(err, &me) || me.Step != StepUIDMap || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("mapping another uid unprivileged: %v, want EPERM at %q", err, StepUIDMap)
	}
}

// The kernel clears the parent-death signal when EnterIDs changes the
// ids; EnterIDs sets it again, so the child of root still dies with the
// thread that forked it (in nsbind, with nsbind).
func TestIDMapAsRootKeepsPdeathsig(t *testing.T) {
	plan, uid, _, _, _ := planForTestUser(t, false)
	res := runIDMapChild(t, plan, idmapSpec{EndForker: true}, helperCapsAnd(unix.CAP_SETUID, unix.CAP_SETGID))
	if res.Enter != "" || res.UID != uid {
		t.Fatalf("EnterIDs: %q, uid %d", res.Enter, res.UID)
	}
}
