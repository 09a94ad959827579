package nsutil

// The id maps of nsbind's user namespace: which ids exist inside and which
// host ids they are. This file is pure (it reads /etc files but touches no
// process); idmap_linux.go applies a plan to a child.
//
// The rule the plan keeps above all others (fact 13 of DESIGN.md): nothing
// inside is ever host uid or gid 0. A process whose kernel uid is 0 owns
// every root-owned file on the host, whatever capabilities it lacks.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// The files that list each user's subordinate ids (shadow's subuid(5)),
// which newuidmap and newgidmap check a requested map against.
const (
	SubUIDFile = "/etc/subuid"
	SubGIDFile = "/etc/subgid"
)

// maxIDMapLines is how many lines the kernel takes in one uid_map or gid_map
// since Linux 4.15 (5 before): the user's own id takes one.
const maxIDMapLines = 340

// maxID is the largest id a map may reach: (uid_t)-1 is "no id" to every
// set*id call, so no range may include it.
const maxID = 1<<32 - 2

// IDRange is a range of host ids: Count ids from Start.
type IDRange struct {
	Start, Count int
}

// IDMapEntry is one line of a uid_map or gid_map: Count ids from Inside in
// the namespace are the host ids from Host on.
type IDMapEntry struct {
	Inside, Host, Count int
}

// String is the line as /proc/PID/uid_map takes it (without the newline).
func (e IDMapEntry) String() string {
	return fmt.Sprintf("%d %d %d", e.Inside, e.Host, e.Count)
}

// ReadSubIDs returns the ranges that path (SubUIDFile or SubGIDFile) gives
// the user called name with the numeric id id: the lines "name:start:count"
// and "id:start:count", in file order. Comments, blank lines and lines that
// are not three numbers-after-a-name (or whose range would pass the largest
// id) are ignored, as newuidmap ignores them. A file that does not exist
// gives no ranges and no error: many systems have none.
func ReadSubIDs(path, name string, id int) ([]IDRange, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading subordinate ids: %w", err)
	}
	defer f.Close()
	r, err := parseSubIDs(f, name, id)
	if err != nil {
		return nil, fmt.Errorf("reading subordinate ids from %s: %w", path, err)
	}
	return r, nil
}

// parseSubIDs is ReadSubIDs on an open file.
func parseSubIDs(r io.Reader, name string, id int) ([]IDRange, error) {
	idText := strconv.Itoa(id)
	var ranges []IDRange
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" || (f[0] != name && f[0] != idText) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count-1 > maxID {
			continue
		}
		ranges = append(ranges, IDRange{Start: int(start), Count: int(count)})
	}
	return ranges, sc.Err()
}

// LookupUser finds the user --user names, by name or by numeric uid, in the
// user database. Built with CGO_ENABLED=0 (as nsbind is), os/user reads
// /etc/passwd itself. A number is taken as a uid first, then as a name,
// as shadow's tools do. A uid that has no entry is an error: nsbind would
// not know its group, and must not guess 0.
func LookupUser(nameOrUID string) (uid, gid int, name, home string, err error) {
	var u *user.User
	if _, perr := strconv.Atoi(nameOrUID); perr == nil {
		u, err = user.LookupId(nameOrUID)
		if err != nil {
			u, err = user.Lookup(nameOrUID)
		}
	} else {
		u, err = user.Lookup(nameOrUID)
	}
	if err != nil {
		return 0, 0, "", "", fmt.Errorf("looking up user %q: %w", nameOrUID, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, "", "", fmt.Errorf("looking up user %q: uid %q gid %q are not numbers", nameOrUID, u.Uid, u.Gid)
	}
	return uid, gid, u.Username, u.HomeDir, nil
}

// IDPlanInput is what PlanIDs decides from.
type IDPlanInput struct {
	// CallerUID and CallerGID are nsbind's own (effective) ids on the
	// host; CallerUID 0 is host root.
	CallerUID, CallerGID int
	// NotHostRoot says a CallerUID 0 is root of a user namespace whose
	// uid 0 is not host uid 0 (a rootless container): such a caller is
	// unprivileged on the host, and maps itself as any user does.
	NotHostRoot bool
	// Root is --root: uid and gid 0 inside.
	Root bool
	// TargetUID and TargetGID are the user the server runs as when the
	// caller is host root: --user, else SUDO_UID and SUDO_GID. -1 when
	// there is none. TargetName is that user's name (or, for an
	// unprivileged caller, the caller's), for messages.
	TargetUID, TargetGID int
	TargetName           string
	// SubUIDs and SubGIDs are the subordinate ranges (ReadSubIDs) of the
	// user the namespace maps: the caller's, or the target's for host root.
	SubUIDs, SubGIDs []IDRange
	// NewUIDMap and NewGIDMap are the paths of the newuidmap and newgidmap
	// programs found on PATH, "" when missing. Only an unprivileged
	// caller needs them, and only for ranges.
	NewUIDMap, NewGIDMap string
}

// IDPlan is how a child in a fresh user namespace gets its ids.
type IDPlan struct {
	// UIDMap and GIDMap are the lines of the uid_map and gid_map.
	UIDMap, GIDMap []IDMapEntry
	// NewUIDMap and NewGIDMap, when set, are the programs that write the
	// maps (an unprivileged user may not write more than its own id);
	// otherwise WriteIDMaps writes /proc/PID/uid_map and gid_map itself.
	NewUIDMap, NewGIDMap string
	// SetgroupsDeny says /proc/PID/setgroups must be "deny" before the
	// gid_map is written: the kernel demands it from an unprivileged
	// writer, since a process that may setgroups(2) inside could drop a
	// group that denies it access on the host.
	SetgroupsDeny bool
	// UID and GID are the ids the helper, and the server after it, run as
	// inside; HostUID and HostGID are what they are on the host.
	UID, GID         int
	HostUID, HostGID int
	// Switch says the child must change its credentials to UID and GID
	// (EnterIDs) once the maps are written: true when the caller is host
	// root, whose child is still kernel uid 0 after clone(2). An
	// unprivileged caller's child already is HostUID.
	Switch bool
	// Note, when set, is a line for the user: --root without a range
	// gives only uid 0, and a server that drops privileges will fail.
	Note string
}

// Direct says WriteIDMaps writes the maps itself, without newuidmap.
func (p IDPlan) Direct() bool { return p.NewUIDMap == "" }

// PlanIDs decides the id maps of nsbind's user namespace:
//
//	caller        --root  maps                                        written by
//	unprivileged  no      own uid → own uid                           nsbind (setgroups deny)
//	unprivileged  yes     0 → own uid, 1..N → subordinate ranges     newuidmap/newgidmap
//	unprivileged  yes     0 → own uid (no range or no newuidmap)      nsbind (setgroups deny), Note
//	host root     no      target uid → target uid                    nsbind, then Switch
//	host root     yes     0 → target uid, 1..N → target's ranges      nsbind, then Switch
//
// Host root without a target user is an error that names --user: the one
// map that would be left, 0 → 0, makes the server host root.
func PlanIDs(in IDPlanInput) (IDPlan, error) {
	if in.CallerUID == 0 && !in.NotHostRoot {
		return planAsRoot(in)
	}
	if in.TargetUID >= 0 && in.TargetUID != in.CallerUID {
		return IDPlan{}, errors.New("--user works only when nsbind runs as root")
	}
	p := IDPlan{
		UID: in.CallerUID, GID: in.CallerGID,
		HostUID: in.CallerUID, HostGID: in.CallerGID,
		SetgroupsDeny: true,
	}
	if !in.Root {
		p.UIDMap = []IDMapEntry{{in.CallerUID, in.CallerUID, 1}}
		p.GIDMap = []IDMapEntry{{in.CallerGID, in.CallerGID, 1}}
		return p, nil
	}
	p.UID, p.GID = 0, 0
	p.UIDMap = []IDMapEntry{{0, in.CallerUID, 1}}
	p.GIDMap = []IDMapEntry{{0, in.CallerGID, 1}}
	uids := appendRanges(p.UIDMap, in.CallerUID, in.SubUIDs)
	gids := appendRanges(p.GIDMap, in.CallerGID, in.SubGIDs)
	switch {
	case len(uids) == 1 || len(gids) == 1:
		p.Note = noRangeNote(in.TargetName)
	case in.NewUIDMap == "" || in.NewGIDMap == "":
		p.Note = "--root maps only uid 0: a server that drops privileges will fail; " +
			"newuidmap and newgidmap, which map the ranges of /etc/subuid and /etc/subgid, are not on PATH (package uidmap)"
	default:
		p.UIDMap, p.GIDMap = uids, gids
		p.NewUIDMap, p.NewGIDMap = in.NewUIDMap, in.NewGIDMap
		// newgidmap leaves setgroups allowed when it maps more than the
		// user's own gid, so a server inside may drop its groups.
		p.SetgroupsDeny = false
	}
	return p, nil
}

// planAsRoot is PlanIDs for host root: the server runs as the target user,
// and root writes any map itself.
func planAsRoot(in IDPlanInput) (IDPlan, error) {
	if in.TargetUID < 0 || in.TargetGID < 0 {
		return IDPlan{}, errors.New("nsbind run as root needs --user NAME (or run it through sudo): the server must not be host root")
	}
	if in.TargetUID == 0 || in.TargetGID == 0 {
		return IDPlan{}, fmt.Errorf("--user %s is root: the server must not be host root; name an unprivileged user", userText(in))
	}
	p := IDPlan{
		UID: in.TargetUID, GID: in.TargetGID,
		HostUID: in.TargetUID, HostGID: in.TargetGID,
		// setgroups stays allowed: the child drops host root's
		// supplementary groups with setgroups(2) in EnterIDs.
		Switch: true,
	}
	if !in.Root {
		p.UIDMap = []IDMapEntry{{in.TargetUID, in.TargetUID, 1}}
		p.GIDMap = []IDMapEntry{{in.TargetGID, in.TargetGID, 1}}
		return p, nil
	}
	p.UID, p.GID = 0, 0
	p.UIDMap = appendRanges([]IDMapEntry{{0, in.TargetUID, 1}}, in.TargetUID, in.SubUIDs)
	p.GIDMap = appendRanges([]IDMapEntry{{0, in.TargetGID, 1}}, in.TargetGID, in.SubGIDs)
	if len(p.UIDMap) == 1 || len(p.GIDMap) == 1 {
		p.Note = noRangeNote(in.TargetName)
		// Both maps one line, or a uid range without its gids would
		// half-work: setuid inside succeeds, setgid fails.
		p.UIDMap, p.GIDMap = p.UIDMap[:1], p.GIDMap[:1]
	}
	return p, nil
}

// appendRanges appends ranges to m as inside ids 1, 1+count, ...: the user's
// subordinate ids after its own id at 0. A range that contains host id 0,
// or the user's own id, or overlaps an earlier range is left out (the
// kernel refuses overlapping lines, and nothing maps to host 0), and so is
// what would pass the kernel's line limit or the largest id.
func appendRanges(m []IDMapEntry, own int, ranges []IDRange) []IDMapEntry {
	next := 1
	for _, r := range ranges {
		if len(m) == maxIDMapLines || next > maxID {
			break
		}
		if r.Count <= 0 || r.Start <= 0 || r.Count > maxID || r.Start > maxID || r.Start+r.Count-1 > maxID || overlaps(m, r) {
			continue
		}
		if own >= r.Start && own < r.Start+r.Count {
			continue
		}
		n := min(r.Count, maxID-next+1)
		m = append(m, IDMapEntry{Inside: next, Host: r.Start, Count: n})
		next += n
	}
	return m
}

func overlaps(m []IDMapEntry, r IDRange) bool {
	for _, e := range m {
		if r.Start < e.Host+e.Count && e.Host < r.Start+r.Count {
			return true
		}
	}
	return false
}

func noRangeNote(name string) string {
	if name == "" {
		name = "USER"
	}
	return "--root maps only uid 0: a server that drops privileges will fail; add a range: " +
		"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + name
}

func userText(in IDPlanInput) string {
	if in.TargetName != "" {
		return in.TargetName
	}
	return strconv.Itoa(in.TargetUID)
}
