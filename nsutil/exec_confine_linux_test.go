package nsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// hiddenByConfine decides whether the server's program must be bound back
// into the view: it must exactly when the program lies in a hidden or
// private tree and in no tree that is bound back anyway.
func TestHiddenByConfine(t *testing.T) {
	home := t.TempDir()
	work := filepath.Join(home, "work")
	bin := filepath.Join(home, "bin")
	for _, d := range []string{work, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home, _ = canonical(home)
	work, bin = filepath.Join(home, "work"), filepath.Join(home, "bin")
	cfg := ConfineConfig{WorkDir: work, Home: home, RuntimeDir: "/run/user/12345"}
	for _, tt := range []struct {
		name   string
		path   string
		allow  []string
		hidden bool
	}{
		{"system program", "/usr/bin/python3", nil, false},
		{"in the home", filepath.Join(bin, "server"), nil, true},
		{"in the working directory", filepath.Join(work, "server"), nil, false},
		{"in an --allow-read tree", filepath.Join(bin, "server"), []string{bin}, false},
		{"in /tmp", "/tmp/nsbind.test", nil, true},
		{"in /dev/shm", "/dev/shm/x", nil, true},
		{"in another home", "/home/someone/bin/x", nil, true},
		{"in root's home", "/root/go/bin/x", nil, true},
		{"in the runtime directory", "/run/user/12345/x", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.AllowRead = tt.allow
			if got := hiddenByConfine(tt.path, c); got != tt.hidden {
				t.Errorf("hiddenByConfine(%s) = %v, want %v", tt.path, got, tt.hidden)
			}
		})
	}
}
