//go:build !linux

package forward

import "log/slog"

// bindNative is Linux's (hostsock_linux.go); elsewhere the sockets are the
// relay's.
func bindNative(group []Binding, logger *slog.Logger) ([]HostSocket, error) {
	return bindGroup(group, logger)
}
