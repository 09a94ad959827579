package nsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The subnet lock is an flock on a file: a second taker waits and gives up
// after its bound, and takes it once the first released it.
func TestSubnetLockExclusive(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nsbind", "veth-subnets.lock")
	me := os.Getuid()
	a, err := lockSubnetsAt(file, me, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if b, err := lockSubnetsAt(file, me, 100*time.Millisecond); err == nil {
		b.Unlock()
		t.Fatal("the lock was taken twice")
	} else if !strings.Contains(err.Error(), "another nsbind run held it") {
		t.Fatalf("second lock: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v, want about 100ms", d)
	}
	a.Unlock()
	a.Unlock() // twice is fine
	b, err := lockSubnetsAt(file, me, time.Second)
	if err != nil {
		t.Fatalf("after the first unlocked: %v", err)
	}
	b.Unlock()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("lock file mode %#o, want 0600: others could open it and hold the lock", m)
	}
}

// A lock file or directory that is a symbolic link, belongs to someone
// else, or that others may write is refused: whoever controls it could
// hold the lock.
func TestSubnetLockRefusesForeignPaths(t *testing.T) {
	me := os.Getuid()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) (file string, owner int)
	}{
		{"directory of another user", func(t *testing.T, dir string) (string, int) {
			return filepath.Join(dir, "veth-subnets.lock"), me + 1
		}},
		{"directory others may write", func(t *testing.T, dir string) (string, int) {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "veth-subnets.lock"), me
		}},
		{"directory is a symlink", func(t *testing.T, dir string) (string, int) {
			real := filepath.Join(dir, "real")
			os.Mkdir(real, 0o755)
			link := filepath.Join(dir, "link")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link, "veth-subnets.lock"), me
		}},
		{"file is a symlink", func(t *testing.T, dir string) (string, int) {
			target := filepath.Join(dir, "target")
			os.WriteFile(target, nil, 0o600)
			file := filepath.Join(dir, "veth-subnets.lock")
			if err := os.Symlink(target, file); err != nil {
				t.Fatal(err)
			}
			return file, me
		}},
		{"file is a directory", func(t *testing.T, dir string) (string, int) {
			file := filepath.Join(dir, "veth-subnets.lock")
			os.Mkdir(file, 0o700)
			return file, me
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nsbind")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			file, owner := tt.setup(t, dir)
			if l, err := lockSubnetsAt(file, owner, 100*time.Millisecond); err == nil {
				l.Unlock()
				t.Fatalf("lock %s taken", file)
			} else {
				t.Log(err)
			}
		})
	}
}
