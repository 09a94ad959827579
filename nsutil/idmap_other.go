//go:build !linux

package nsutil

import (
	"errors"
	"syscall"
)

// errNoUserNamespaces is what the id-map calls say where there are no
// user namespaces.
var errNoUserNamespaces = errors.New("user namespaces exist only on Linux")

// FindNewIDMap finds nothing where there are no user namespaces.
func FindNewIDMap() (newuidmap, newgidmap string) { return "", "" }

// WriteIDMaps needs Linux user namespaces.
func WriteIDMaps(pid int, plan IDPlan) error { return errNoUserNamespaces }

// EnterIDs needs Linux user namespaces.
func EnterIDs(plan IDPlan, pdeathsig syscall.Signal) error { return errNoUserNamespaces }
