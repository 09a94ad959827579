//go:build !linux

package doctor

// Where there are no namespaces there is no probe and no namespace error
// to describe.

// ProbeMain fails: there is no probe here.
func ProbeMain() int { return 125 }

// Describe knows no namespace errors where there are no namespaces.
func Describe(err error) (string, bool) { return "", false }
