package instance

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// maxName bounds a name: with ".sock" and the longest directory
// (/tmp/nsbind-4294967295/ or /run/user/4294967295/nsbind/) it stays inside
// the 108 bytes of a unix socket's path.
const maxName = 63

// ValidName reports whether name can name an instance:
// [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}. The first character is never '.' or '-',
// so a name is never a hidden file, "..", or a flag.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// checkName returns the error the CLI prints for a bad --name.
func checkName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid instance name %q: use 1 to %d letters, digits, '_', '.' or '-', starting with a letter or digit", name, maxName)
	}
	return nil
}

// randomName makes a default name, "nsbind-" and 4 hex digits. Listen
// checks it is free, as for any name, and draws again when it is not.
func randomName() string {
	var b [2]byte
	rand.Read(b[:])
	return "nsbind-" + hex.EncodeToString(b[:])
}
