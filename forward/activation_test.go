package forward

import (
	"slices"
	"strings"
	"testing"
)

func TestActivationEnv(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		want  []string
	}{
		{"two named", []string{"80/tcp", "53/udp"}, []string{"LISTEN_FDS=2", "LISTEN_PID=42", "LISTEN_FDNAMES=80/tcp:53/udp"}},
		{"none", nil, []string{"LISTEN_FDS=0", "LISTEN_PID=42", "LISTEN_FDNAMES="}},
		{"invalid names become unknown", []string{"a:b", "", "tab\there", strings.Repeat("x", 256), "ok"},
			[]string{"LISTEN_FDS=5", "LISTEN_PID=42", "LISTEN_FDNAMES=unknown:unknown:unknown:unknown:ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ActivationEnv(tc.names, 42); !slices.Equal(got, tc.want) {
				t.Errorf("ActivationEnv(%q) = %q, want %q", tc.names, got, tc.want)
			}
		})
	}
}

func TestWithoutActivationEnv(t *testing.T) {
	env := []string{"PATH=/bin", "LISTEN_FDS=1", "LISTEN_PID=7", "LISTEN_FDNAMES=web", "LISTEN_FDS_EXTRA=kept", "LISTEN_PID=8", "HOME=/h"}
	got := WithoutActivationEnv(env)
	want := []string{"PATH=/bin", "LISTEN_FDS_EXTRA=kept", "HOME=/h"}
	if !slices.Equal(got, want) {
		t.Errorf("WithoutActivationEnv = %q, want %q", got, want)
	}
	if env[1] != "LISTEN_FDS=1" {
		t.Errorf("WithoutActivationEnv changed its argument: %q", env)
	}
}

func TestFDName(t *testing.T) {
	h := HostSocket{Binding: Binding{Proto: UDP, Inside: 53}}
	if got := FDName(h); got != "53/udp" || !validFDName(got) {
		t.Errorf("FDName = %q, want a valid name 53/udp", got)
	}
}
