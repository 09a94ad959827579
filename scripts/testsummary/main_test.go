package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stream writes the test2json lines of a pass of package p to a file in dir:
// each ev is "ACTION TEST" (no TEST: the package's own event), or "output
// TEST TEXT" (TEST "-": the package's).
func stream(t *testing.T, dir, name string, evs ...string) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range evs {
		action, test, _ := strings.Cut(ev, " ")
		e := event{Action: action, Package: "p", Test: test}
		if action == "output" {
			e.Test, e.Output, _ = strings.Cut(test, " ")
			if e.Test == "-" {
				e.Test = "" // the package's own output
			}
		}
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTotal(t *testing.T) {
	for _, tt := range []struct {
		name   string
		passes [][]string
		want   string // the last line
		code   int
		says   string // in the output too
	}{
		{
			name:   "subtests count, their parent does not",
			passes: [][]string{{"run A", "run A/x", "pass A/x", "run A/y", "pass A/y", "pass A", "run B", "pass B", "pass"}},
			want:   "3 passed, 0 failed, 0 skipped",
		},
		{
			name:   "a failed subtest is one failure",
			passes: [][]string{{"run A", "run A/x", "fail A/x", "run A/y", "pass A/y", "fail A", "fail"}},
			want:   "1 passed, 1 failed, 0 skipped", code: 1, says: "p A/x",
		},
		{
			name:   "a parent's own failure counts",
			passes: [][]string{{"run A", "run A/x", "pass A/x", "fail A", "fail"}},
			want:   "1 passed, 1 failed, 0 skipped", code: 1, says: "p A ",
		},
		{
			name: "skipped in one pass, run in another",
			passes: [][]string{
				{"run A", "skip A", "run B", "pass B", "pass"},
				{"run A", "pass A", "run B", "pass B", "pass"},
			},
			want: "3 passed, 0 failed, 1 skipped",
		},
		{
			name: "skipped whole in one pass, run with subtests in another",
			passes: [][]string{
				{"run A", "skip A", "pass"},
				{"run A", "run A/x", "pass A/x", "pass A", "pass"},
			},
			want: "1 passed, 0 failed, 1 skipped",
		},
		{
			name: "a subtest skipped in every pass",
			passes: [][]string{
				{"run A", "run A/x", "skip A/x", "run A/y", "pass A/y", "pass A", "pass"},
				{"run A", "skip A", "pass"},
			},
			want: "1 passed, 0 failed, 2 skipped", code: 1, says: "p A/x",
		},
		{
			name: "skipped in every pass",
			passes: [][]string{
				{"run A", "output A why:not", "skip A", "pass"},
				{"run A", "skip A", "pass"},
			},
			want: "0 passed, 0 failed, 2 skipped", code: 1, says: "p A: why:not",
		},
		{
			name:   "a package failing outside any test",
			passes: [][]string{{"run A", "pass A", "output - panic", "fail"}},
			want:   "1 passed, 1 failed, 0 skipped", code: 1, says: "(outside any test)",
		},
		{
			name:   "a test that never ended",
			passes: [][]string{{"run A", "run A/x", "output A/x timed", "fail"}},
			want:   "0 passed, 1 failed, 0 skipped", code: 1, says: "p A/x",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for i, evs := range tt.passes {
				files = append(files, stream(t, dir, string(rune('a'+i)), evs...))
			}
			var out strings.Builder
			code := total(files, &out)
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if last := lines[len(lines)-1]; last != tt.want || code != tt.code {
				t.Errorf("last line %q, exit %d; want %q, %d\n%s", last, code, tt.want, tt.code, out.String())
			}
			if tt.says != "" && !strings.Contains(out.String(), tt.says) {
				t.Errorf("no %q in:\n%s", tt.says, out.String())
			}
		})
	}
}
