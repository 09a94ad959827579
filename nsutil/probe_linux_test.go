package nsutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		release      string
		major, minor int
		want         bool
	}{
		{"6.18.44-fc-v782", 4, 11, true},
		{"4.11.0", 4, 11, true},
		{"4.10.17-generic", 4, 11, false},
		{"4.4.0-210-generic", 4, 11, false},
		{"5.9.0", 5, 9, true},
		{"5.10", 5, 9, true},
		{"3.19.8", 4, 11, false},
		{"6.1.0-18-amd64", 5, 9, true},
		{"5.15.0+", 5, 16, false},
		{"", 4, 11, false},
		{"garbage", 4, 11, false},
	}
	for _, tt := range tests {
		t.Run(tt.release, func(t *testing.T) {
			if got := (HostFacts{Kernel: tt.release}).KernelAtLeast(tt.major, tt.minor); got != tt.want {
				t.Fatalf("%q at least %d.%d: %v, want %v", tt.release, tt.major, tt.minor, got, tt.want)
			}
		})
	}
}

func TestStatusValue(t *testing.T) {
	status := []byte("Name:\tnsbind\nSeccomp:\t2\nSeccomp_filters:\t1\nCapEff:\t0000000000200000\n")
	for field, want := range map[string]string{"Seccomp": "2", "Seccomp_filters": "1", "CapEff": "0000000000200000"} {
		if got, ok := statusValue(status, field); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", field, got, ok, want)
		}
	}
	if _, ok := statusValue(status, "NoNewPrivs"); ok {
		t.Error("found a field that is not there")
	}
}

// An error of a step inside the probe keeps its step and errno across the
// control channel, so that cmd/nsbind can diagnose it as it does run's.
func TestStepErrorRoundTrip(t *testing.T) {
	sent := &NamespaceError{Step: StepPortSysctl, Err: fmt.Errorf("open: %w", syscall.EROFS)}
	b, err := json.Marshal(ProbeReport{Setup: NewStepError(sent), Transparent: NewStepError(syscall.EPERM)})
	if err != nil {
		t.Fatal(err)
	}
	var rep ProbeReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var ne *NamespaceError
	got := rep.Setup.Err()
	if !errors.As(got, &ne) || ne.Step != StepPortSysctl || !errors.Is(got, syscall.EROFS) || got.Error() != sent.Error() {
		t.Fatalf("setup error came back as %#v (%v)", got, got)
	}
	if got := rep.Transparent.Err(); !errors.Is(got, syscall.EPERM) {
		t.Fatalf("transparent error came back as %v", got)
	}
	if rep.SeccompNotify.Err() != nil {
		t.Fatal("a step that worked came back as an error")
	}
}
