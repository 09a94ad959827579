package helper

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestVerdictFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want verdict
	}{
		{"connected", nil, accept},
		{"refused, wrapped", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), refuse},
		{"host unreachable", syscall.EHOSTUNREACH, hostUnreach},
		{"network unreachable", syscall.ENETUNREACH, netUnreach},
		{"no address of the family", syscall.EADDRNOTAVAIL, netUnreach},
		{"no such family", syscall.EAFNOSUPPORT, netUnreach},
		{"a host firewall", syscall.EACCES, prohibited},
		{"not permitted", syscall.EPERM, prohibited},
		{"timed out", syscall.ETIMEDOUT, drop},
		{"no host socket in time", errors.New("no host socket available"), drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdictFor(tt.err); got != tt.want {
				t.Errorf("verdictFor(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
