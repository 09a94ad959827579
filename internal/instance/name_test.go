package instance

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"word", "web", true},
		{"digits first", "0day", true},
		{"inner punctuation", "my_web.v2-test", true},
		{"63 characters", "a" + strings.Repeat("b", 62), true},
		{"64 characters", "a" + strings.Repeat("b", 63), false},
		{"empty", "", false},
		{"dot first", ".hidden", false},
		{"dash first", "-p", false},
		{"underscore first", "_x", false},
		{"dot dot", "..", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"non-ASCII", "wéb", false},
		{"NUL", "a\x00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidName(tc.in); got != tc.ok {
				t.Errorf("ValidName(%q) = %v, want %v", tc.in, got, tc.ok)
			}
		})
	}
}

func TestRandomNameValid(t *testing.T) {
	for range 100 {
		n := randomName()
		if !ValidName(n) || !strings.HasPrefix(n, "nsbind-") || len(n) != len("nsbind-")+4 {
			t.Fatalf("randomName() = %q", n)
		}
	}
}
