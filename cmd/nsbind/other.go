//go:build !linux

package main

import (
	"fmt"
	"io"
)

// nsbind needs Linux namespaces; elsewhere it only explains that.

func runCommand(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nsbind: nsbind runs on Linux only (it needs user and network namespaces)")
	return exitUnsupported
}

func doctorCommand(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nsbind: nsbind runs on Linux only (it needs user and network namespaces)")
	return 1
}

func probeMain() int { return exitUnsupported }

// describeSystem knows no namespace errors where there are no namespaces.
func describeSystem(err error) (string, bool) { return "", false }
