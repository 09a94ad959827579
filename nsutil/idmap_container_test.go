package nsutil

import "testing"

// Root of a rootless container (uid 0 that is not host uid 0) is an
// unprivileged caller: it maps itself, and needs no --user.
func TestPlanIDsContainerRoot(t *testing.T) {
	p, err := PlanIDs(IDPlanInput{CallerUID: 0, CallerGID: 0, NotHostRoot: true, TargetUID: -1, TargetGID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Switch || len(p.UIDMap) != 1 || p.UIDMap[0] != (IDMapEntry{0, 0, 1}) || !p.SetgroupsDeny {
		t.Fatalf("got %+v, want the one-line self map with setgroups denied", p)
	}
	if _, err := PlanIDs(IDPlanInput{CallerUID: 0, TargetUID: -1, TargetGID: -1}); err == nil {
		t.Fatal("host root without a target user: want an error")
	}
}
