package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsbind/nsbind/internal/manpage"
)

var updateMan = flag.Bool("update", false, "write docs/nsbind.1 from the command tree")

// manPath is the committed man page, from this package's directory.
const manPath = "../../docs/nsbind.1"

// Acceptance: docs/nsbind.1 is the man page of the command tree as it is:
// this fails when a flag, a command or a description changed without it.
// scripts/manpage.sh (go test -run TestManPage -args -update) writes it.
func TestManPage(t *testing.T) {
	if _, err := os.Stat("../../go.mod"); err != nil {
		t.Skipf("not run in the source tree (%v): nothing to compare", err)
	}
	var status int
	got := manpage.Page(newCLI(nil, nil, &status), version)
	if *updateMan {
		if err := os.WriteFile(manPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatalf("%v: run scripts/manpage.sh", err)
	}
	if got != string(want) {
		t.Fatalf("docs/nsbind.1 is stale: run scripts/manpage.sh and commit it\n%s", firstDifference(string(want), got))
	}
	// Every flag and command is in it, and man reads it without a warning.
	for _, s := range []string{`\-\-publish`, `\-\-log\-level`, `\-\-confine`, `.SS completion`, `.SS version`, `\fBnsbind run\fR [flags] [\-\-] COMMAND`} {
		if !strings.Contains(got, s) {
			t.Errorf("the man page has no %q", s)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		abs, _ := filepath.Abs(manPath)
		cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", abs)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0", "PAGER=cat")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning") {
			t.Errorf("man -l docs/nsbind.1: %v\n%s", err, out)
		}
	}
}

// firstDifference shows the first line where want and got differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, wl, gl)
		}
	}
	return ""
}
