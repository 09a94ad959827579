//go:build !linux

package nsutil

import "errors"

// errConfineUnsupported is what the confinement calls return where there
// are no Linux namespaces and no Landlock.
var errConfineUnsupported = errors.New("--confine: unsupported on this system (it needs Linux)")

// CheckConfine validates cfg before anything starts; only Linux can
// confine.
func CheckConfine(cfg ConfineConfig) error { return errConfineUnsupported }

// Confine confines the calling process; only Linux can.
func Confine(cfg ConfineConfig) (ConfineReport, error) {
	return ConfineReport{}, errConfineUnsupported
}

// LandlockABI is 0: there is no Landlock here.
func LandlockABI() int { return 0 }
