//go:build !linux

package forward

import (
	"errors"
	"strconv"
)

var errActivationUnsupported = errors.New("socket activation is only supported on Linux")

// Inherited returns nothing unless the environment passes sockets to pid;
// reading them is only supported on Linux.
func Inherited(env []string, pid int) ([]ActivatedSocket, error) {
	if p, ok := lookupEnv(env, EnvListenPID); !ok || p != strconv.Itoa(pid) {
		return nil, nil
	}
	return nil, errActivationUnsupported
}

// ActivationFDs is only supported on Linux.
func ActivationFDs(fds []int) error { return errActivationUnsupported }
