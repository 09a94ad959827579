//go:build !linux

package main

import (
	"fmt"
	"io"
)

// The instance commands talk to runs, which need Linux.

func psCommand(args []string, stdout, stderr io.Writer) int    { return unsupported(stderr) }
func portCommand(args []string, stdout, stderr io.Writer) int  { return unsupported(stderr) }
func statsCommand(args []string, stdout, stderr io.Writer) int { return unsupported(stderr) }
func stopCommand(args []string, stdout, stderr io.Writer) int  { return unsupported(stderr) }
func execCommand(args []string, stdout, stderr io.Writer) int  { return unsupported(stderr) }

func unsupported(stderr io.Writer) int {
	fmt.Fprintln(stderr, "nsbind: nsbind runs on Linux only (it needs user and network namespaces)")
	return exitUnsupported
}
