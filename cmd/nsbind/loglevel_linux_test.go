package main

import (
	"strings"
	"testing"
)

// Acceptance: --log-level does what it says. The lines nsbind prints as
// the server starts are info: error prints nothing for a run that goes
// well, warn hides the start lines, debug adds the helper's set-up steps.
func TestLogLevels(t *testing.T) {
	run := func(t *testing.T, level string) []string {
		t.Helper()
		code, stdout, stderr := runNsbind(t, "run", "--log-level", level, "-p", "80:0", "true")
		if code != 0 || stdout != "" {
			t.Fatalf("--log-level %s: exit %d, stdout %q, stderr:\n%s", level, code, stdout, stderr)
		}
		if stderr == "" {
			return nil
		}
		return strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	}
	isStart := func(l string) bool { return strings.HasSuffix(l, " → :80/tcp") }
	t.Run("error", func(t *testing.T) {
		if lines := run(t, "error"); len(lines) > 0 {
			t.Fatalf("printed %q; want nothing", lines)
		}
	})
	t.Run("warn", func(t *testing.T) {
		for _, l := range run(t, "warn") {
			if !strings.HasPrefix(l, "nsbind: warning: ") {
				t.Errorf("printed %q; want warnings only", l)
			}
		}
	})
	t.Run("info", func(t *testing.T) {
		starts := 0
		for _, l := range run(t, "info") {
			if strings.Contains(l, "debug: ") {
				t.Errorf("printed %q at info", l)
			}
			if isStart(l) {
				starts++
			}
		}
		if starts != 2 {
			t.Errorf("%d start lines; want 2 (127.0.0.1 and [::1])", starts)
		}
	})
	t.Run("debug", func(t *testing.T) {
		lines := run(t, "debug")
		all := strings.Join(lines, "\n")
		steps := []string{
			"nsbind: debug: lo up, every port bindable sysctl=net.ipv4.ip_unprivileged_port_start=0",
		}
		// Each step where the kernel allows it; where not, the warning
		// that says what runs without it.
		if !strings.Contains(all, "the server will see clients as coming from loopback") {
			steps = append(steps, "nsbind: debug: routes for replies to the clients' own addresses")
		}
		if !strings.Contains(all, "no outbound connections") {
			steps = append(steps, "nsbind: debug: outbound rules: ")
		}
		if directMode() && !strings.Contains(all, "--direct is not available") {
			steps = append(steps, "nsbind: debug: --direct: the server's bind(2) calls are trapped (seccomp user notification)")
		}
		for _, s := range steps {
			if !strings.Contains(all, s) {
				t.Errorf("no %q in:\n%s", s, all)
			}
		}
		starts := 0
		for _, l := range lines {
			if isStart(l) {
				starts++
			}
		}
		if starts != 2 {
			t.Errorf("%d start lines; want 2:\n%s", starts, all)
		}
	})
}
