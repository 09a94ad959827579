package parent

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nsbind/nsbind/nsutil"
)

// PortEntry is one host socket in the --ports-file.
type PortEntry struct {
	Proto      string `json:"proto"`
	InsidePort uint16 `json:"inside_port"`
	HostIP     string `json:"host_ip"`
	HostPort   uint16 `json:"host_port"`
}

// writePortsFile writes the host sockets to path atomically: a script that
// sees the file sees all of it. It replaces only a regular file (that of an
// earlier run, say): the rename would replace anything, and as root a
// --ports-file /dev/null would put a file in place of the device. remove
// removes the file again, if it is still the one written.
func writePortsFile(path string, socks []nsutil.SocketConfig) (remove func(), err error) {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--ports-file %s is %s, not a regular file: nsbind replaces only a file (or creates one); give the path of a file of its own", path, KindOf(fi.Mode()))
	}
	entries := make([]PortEntry, 0, len(socks))
	for _, s := range nsutil.Announced(socks) {
		entries = append(entries, PortEntry{Proto: s.Proto, InsidePort: s.Inside, HostIP: s.Host.Addr().String(), HostPort: s.Host.Port()})
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nsbind-ports-*")
	if err != nil {
		return nil, fmt.Errorf("writing --ports-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes it 0600: as root the server is another user (the
	// sudo user's), and reads it too. Ports are no secret (/proc/net).
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing --ports-file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing --ports-file: %w", err)
	}
	written, err := tmp.Stat()
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("writing --ports-file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("writing --ports-file: %w", err)
	}
	return func() {
		// Not a file someone else put there since.
		if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, written) {
			os.Remove(path)
		}
	}, nil
}

// KindOf names the kind of file of mode, for a message.
func KindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}
