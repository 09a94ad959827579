package nsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []IDRange
	}{
		{"by name", "alice:100000:65536\n", []IDRange{{100000, 65536}}},
		{"by uid", "1001:200000:1000\n", []IDRange{{200000, 1000}}},
		{"name and uid lines both count, in file order",
			"1001:300000:10\nalice:100000:65536\n", []IDRange{{300000, 10}, {100000, 65536}}},
		{"several ranges", "alice:100000:65536\nbob:165536:65536\nalice:231072:100\n",
			[]IDRange{{100000, 65536}, {231072, 100}}},
		{"other users only", "bob:100000:65536\n1002:1:2\n", nil},
		{"comments and blank lines", "# alice:1:1\n\n   \nalice:5:6\n", []IDRange{{5, 6}}},
		{"surrounding spaces", "  alice:5:6  \n", []IDRange{{5, 6}}},
		{"no trailing newline", "alice:5:6", []IDRange{{5, 6}}},
		{"a name that only starts like ours", "alice2:5:6\nalic:5:6\n", nil},
		{"too few fields", "alice:5\n", nil},
		{"too many fields", "alice:5:6:7\n", nil},
		{"not numbers", "alice:x:6\nalice:5:y\n", nil},
		{"negative", "alice:-5:6\n", nil},
		{"zero count", "alice:5:0\n", nil},
		{"reaches (uid_t)-1", "alice:4294967290:6\n", nil},
		{"ends just below (uid_t)-1", "alice:4294967290:5\n", []IDRange{{4294967290, 5}}},
		{"past 32 bits", "alice:4294967296:1\n", nil},
		{"bad lines do not hide good ones", "alice:x:1\nalice:7:8\n", []IDRange{{7, 8}}},
		{"empty name never matches", ":5:6\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSubIDs(strings.NewReader(tc.file), "alice", 1001)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadSubIDsMissingFile(t *testing.T) {
	got, err := ReadSubIDs(filepath.Join(t.TempDir(), "subuid"), "alice", 1001)
	if err != nil || got != nil {
		t.Fatalf("missing file: %v, %v; want no ranges and no error", got, err)
	}
}

func TestReadSubIDsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subuid")
	if err := os.WriteFile(path, []byte("alice:100000:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSubIDs(path, "alice", 1001)
	if err != nil || !reflect.DeepEqual(got, []IDRange{{100000, 65536}}) {
		t.Fatalf("got %v, %v", got, err)
	}
}

// Every range read belongs to a line of the user's, lies within the ids a
// map may hold, and reads back the same from the file it formats to.
func FuzzParseSubIDs(f *testing.F) {
	f.Add("alice:100000:65536\n1001:5:6\n# c\nbob:1:2\n")
	f.Add("alice:4294967290:5\nalice:x:1\n:1:1\n")
	f.Fuzz(func(t *testing.T, file string) {
		got, err := parseSubIDs(strings.NewReader(file), "alice", 1001)
		if err != nil {
			return // a line longer than the scanner's buffer
		}
		mine := map[IDRange]bool{}
		for _, line := range strings.Split(file, "\n") {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) == 3 && (f[0] == "alice" || f[0] == "1001") {
				s, err1 := strconv.Atoi(f[1])
				c, err2 := strconv.Atoi(f[2])
				if err1 == nil && err2 == nil {
					mine[IDRange{s, c}] = true
				}
			}
		}
		var b strings.Builder
		for _, r := range got {
			if r.Count <= 0 || r.Start < 0 || r.Start+r.Count-1 > maxID {
				t.Fatalf("range %v out of bounds from %q", r, file)
			}
			if !mine[r] {
				t.Fatalf("range %v from no line of the user in %q", r, file)
			}
			fmt.Fprintf(&b, "alice:%d:%d\n", r.Start, r.Count)
		}
		again, err := parseSubIDs(strings.NewReader(b.String()), "alice", 1001)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip of %v gave %v, %v", got, again, err)
		}
	})
}

// With CGO_ENABLED=0 (nsbind's build) os/user reads /etc/passwd; both
// builds find root and the test user the same way.
func TestLookupUser(t *testing.T) {
	for _, tc := range []struct {
		name, arg string
		uid, gid  int
		user      string
	}{
		{"root by name", "root", 0, 0, "root"},
		{"root by uid", "0", 0, 0, "root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, name, home, err := LookupUser(tc.arg)
			if err != nil || uid != tc.uid || gid != tc.gid || name != tc.user || home == "" {
				t.Fatalf("LookupUser(%q) = %d %d %q %q %v", tc.arg, uid, gid, name, home, err)
			}
		})
	}
	t.Run("by name and by uid agree", func(t *testing.T) {
		uid, gid, name, _, err := LookupUser("nsbind-test")
		if err != nil {
			t.Skipf("no user nsbind-test here: %v", err)
		}
		uid2, gid2, name2, _, err := LookupUser(strconv.Itoa(uid))
		if err != nil || uid2 != uid || gid2 != gid || name2 != name {
			t.Fatalf("by uid: %d %d %q %v; by name: %d %d %q", uid2, gid2, name2, err, uid, gid, name)
		}
	})
	t.Run("unknown name", func(t *testing.T) {
		if _, _, _, _, err := LookupUser("no-such-user-nsbind"); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("uid without an entry", func(t *testing.T) {
		if _, _, _, _, err := LookupUser("3999999999"); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestPlanIDs(t *testing.T) {
	const uidmap, gidmap = "/usr/bin/newuidmap", "/usr/bin/newgidmap"
	sub := []IDRange{{100000, 65536}}
	noRange := noRangeNote("alice")
	for _, tc := range []struct {
		name string
		in   IDPlanInput
		want IDPlan
		err  string
	}{
		{
			name: "unprivileged: own ids to themselves",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1002, TargetUID: -1, TargetGID: -1, SubUIDs: sub, SubGIDs: sub, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{1001, 1001, 1}}, GIDMap: []IDMapEntry{{1002, 1002, 1}},
				SetgroupsDeny: true, UID: 1001, GID: 1002, HostUID: 1001, HostGID: 1002},
		},
		{
			name: "unprivileged --root with a range: 0 and the range, through newuidmap",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1002, Root: true, TargetUID: -1, TargetGID: -1, TargetName: "alice", SubUIDs: sub, SubGIDs: []IDRange{{200000, 1000}}, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 65536}}, GIDMap: []IDMapEntry{{0, 1002, 1}, {1, 200000, 1000}},
				NewUIDMap: uidmap, NewGIDMap: gidmap, UID: 0, GID: 0, HostUID: 1001, HostGID: 1002},
		},
		{
			name: "unprivileged --root with several ranges: concatenated inside",
			in: IDPlanInput{CallerUID: 1001, CallerGID: 1001, Root: true, TargetUID: -1, TargetGID: -1,
				SubUIDs: []IDRange{{100000, 10}, {300000, 5}}, SubGIDs: []IDRange{{100000, 10}, {300000, 5}}, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 10}, {11, 300000, 5}}, GIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 10}, {11, 300000, 5}},
				NewUIDMap: uidmap, NewGIDMap: gidmap, UID: 0, GID: 0, HostUID: 1001, HostGID: 1001},
		},
		{
			name: "unprivileged --root without a range: uid 0 only, and the note",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1001, Root: true, TargetUID: -1, TargetGID: -1, TargetName: "alice", NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}}, GIDMap: []IDMapEntry{{0, 1001, 1}},
				SetgroupsDeny: true, UID: 0, GID: 0, HostUID: 1001, HostGID: 1001, Note: noRange},
		},
		{
			name: "unprivileged --root with subuids but no subgids: uid 0 only",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1001, Root: true, TargetUID: -1, TargetGID: -1, TargetName: "alice", SubUIDs: sub, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}}, GIDMap: []IDMapEntry{{0, 1001, 1}},
				SetgroupsDeny: true, UID: 0, GID: 0, HostUID: 1001, HostGID: 1001, Note: noRange},
		},
		{
			name: "unprivileged --root with a range but no newgidmap: uid 0 only, the note names the package",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1001, Root: true, TargetUID: -1, TargetGID: -1, SubUIDs: sub, SubGIDs: sub, NewUIDMap: uidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}}, GIDMap: []IDMapEntry{{0, 1001, 1}},
				SetgroupsDeny: true, UID: 0, GID: 0, HostUID: 1001, HostGID: 1001,
				Note: "--root maps only uid 0: a server that drops privileges will fail; newuidmap and newgidmap, which map the ranges of /etc/subuid and /etc/subgid, are not on PATH (package uidmap)"},
		},
		{
			name: "unprivileged --root: a range holding host 0 or the user's own id is left out",
			in: IDPlanInput{CallerUID: 1001, CallerGID: 1001, Root: true, TargetUID: -1, TargetGID: -1,
				SubUIDs: []IDRange{{0, 65536}, {1000, 10}, {100000, 5}, {100002, 10}}, SubGIDs: sub, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 5}}, GIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 65536}},
				NewUIDMap: uidmap, NewGIDMap: gidmap, UID: 0, GID: 0, HostUID: 1001, HostGID: 1001},
		},
		{
			name: "unprivileged --user of someone else: refused",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1001, TargetUID: 1002, TargetGID: 1002},
			err:  "--user works only when nsbind runs as root",
		},
		{
			name: "unprivileged --user of oneself: as without it",
			in:   IDPlanInput{CallerUID: 1001, CallerGID: 1001, TargetUID: 1001, TargetGID: 1001},
			want: IDPlan{UIDMap: []IDMapEntry{{1001, 1001, 1}}, GIDMap: []IDMapEntry{{1001, 1001, 1}},
				SetgroupsDeny: true, UID: 1001, GID: 1001, HostUID: 1001, HostGID: 1001},
		},
		{
			name: "root without a target user: refused, naming --user",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, TargetUID: -1, TargetGID: -1},
			err:  "nsbind run as root needs --user NAME (or run it through sudo): the server must not be host root",
		},
		{
			name: "root with --root and no target user: refused too",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, Root: true, TargetUID: -1, TargetGID: -1},
			err:  "nsbind run as root needs --user NAME (or run it through sudo): the server must not be host root",
		},
		{
			name: "root with --user root: refused",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, TargetUID: 0, TargetGID: 0, TargetName: "root"},
			err:  "--user root is root: the server must not be host root; name an unprivileged user",
		},
		{
			name: "root with a target whose group is 0: refused",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, TargetUID: 1001, TargetGID: 0},
			err:  "--user 1001 is root: the server must not be host root; name an unprivileged user",
		},
		{
			name: "root, target user: the target's ids to themselves, written directly, then switch",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, TargetUID: 1001, TargetGID: 1002, SubUIDs: sub, SubGIDs: sub, NewUIDMap: uidmap, NewGIDMap: gidmap},
			want: IDPlan{UIDMap: []IDMapEntry{{1001, 1001, 1}}, GIDMap: []IDMapEntry{{1002, 1002, 1}},
				UID: 1001, GID: 1002, HostUID: 1001, HostGID: 1002, Switch: true},
		},
		{
			name: "root --root with the target's range: 0 to the target, its range, written directly",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, Root: true, TargetUID: 1001, TargetGID: 1002, SubUIDs: sub, SubGIDs: sub},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 65536}}, GIDMap: []IDMapEntry{{0, 1002, 1}, {1, 100000, 65536}},
				UID: 0, GID: 0, HostUID: 1001, HostGID: 1002, Switch: true},
		},
		{
			name: "root --root without a range: 0 to the target only, and the note",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, Root: true, TargetUID: 1001, TargetGID: 1001, TargetName: "alice", SubUIDs: sub},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}}, GIDMap: []IDMapEntry{{0, 1001, 1}},
				UID: 0, GID: 0, HostUID: 1001, HostGID: 1001, Switch: true, Note: noRange},
		},
		{
			name: "root --root: a range holding host 0 is left out",
			in:   IDPlanInput{CallerUID: 0, CallerGID: 0, Root: true, TargetUID: 1001, TargetGID: 1001, SubUIDs: []IDRange{{0, 1}, {100000, 2}}, SubGIDs: []IDRange{{0, 100}, {100000, 2}}},
			want: IDPlan{UIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 2}}, GIDMap: []IDMapEntry{{0, 1001, 1}, {1, 100000, 2}},
				UID: 0, GID: 0, HostUID: 1001, HostGID: 1001, Switch: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanIDs(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			assertNoHostRoot(t, got)
		})
	}
}

func assertNoHostRoot(t *testing.T, p IDPlan) {
	t.Helper()
	for _, m := range [][]IDMapEntry{p.UIDMap, p.GIDMap} {
		for _, e := range m {
			if e.Host <= 0 && e.Host+e.Count > 0 {
				t.Errorf("map line %v makes host id 0 an id inside", e)
			}
		}
	}
}

// Whatever the ranges, no plan maps host id 0, no two lines overlap on
// either side, and the lines fit the kernel's limit.
func FuzzPlanIDsNeverHostRoot(f *testing.F) {
	f.Add(0, 1001, true, 0, 65536, 100000, 65536)
	f.Add(1001, 1001, true, 1000, 5, 1, 1000)
	f.Fuzz(func(t *testing.T, caller, target int, root bool, s1, c1, s2, c2 int) {
		ranges := []IDRange{{s1, c1}, {s2, c2}}
		in := IDPlanInput{CallerUID: caller, CallerGID: caller, Root: root, TargetUID: target, TargetGID: target,
			SubUIDs: ranges, SubGIDs: ranges, NewUIDMap: "u", NewGIDMap: "g"}
		if caller < 0 || target < -1 || caller > maxID || target > maxID {
			return
		}
		p, err := PlanIDs(in)
		if err != nil {
			return
		}
		assertNoHostRoot(t, p)
		for _, m := range [][]IDMapEntry{p.UIDMap, p.GIDMap} {
			if len(m) > maxIDMapLines {
				t.Fatalf("%d lines", len(m))
			}
			for i, a := range m {
				if a.Count <= 0 || a.Inside+a.Count-1 > maxID || a.Host+a.Count-1 > maxID {
					t.Fatalf("line %v out of bounds", a)
				}
				for _, b := range m[i+1:] {
					if a.Inside < b.Inside+b.Count && b.Inside < a.Inside+a.Count ||
						a.Host < b.Host+b.Count && b.Host < a.Host+a.Count {
						t.Fatalf("lines %v and %v overlap", a, b)
					}
				}
			}
		}
	})
}
