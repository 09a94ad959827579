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

func helperMain() int { return exitUnsupported }

func execMain() int { return exitUnsupported }
