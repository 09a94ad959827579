package parent

import (
	"encoding/json"
	"fmt"
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
// sees the file sees all of it.
func writePortsFile(path string, socks []nsutil.SocketConfig) error {
	entries := make([]PortEntry, 0, len(socks))
	for _, s := range nsutil.Announced(socks) {
		entries = append(entries, PortEntry{Proto: s.Proto, InsidePort: s.Inside, HostIP: s.Host.Addr().String(), HostPort: s.Host.Port()})
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nsbind-ports-*")
	if err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	return nil
}
