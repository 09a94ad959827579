//go:build !linux

package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// nsbind needs Linux namespaces; elsewhere it only explains that. run and
// doctor have no flags here and take any argument, to say so.

const linuxOnly = "nsbind: nsbind runs on Linux only (it needs user and network namespaces)"

type runOptions struct{ changed func(string) bool }

func runCommand(args []string, stdout, stderr io.Writer) int {
	return run(append([]string{"run"}, args...), stdout, stderr)
}

func runFlags(*runOptions) *pflag.FlagSet {
	return pflag.NewFlagSet("nsbind run", pflag.ContinueOnError)
}

func runParsed(o runOptions, command []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, linuxOnly)
	return exitUnsupported
}

type doctorOptions struct{}

const doctorLong = "Checks that this host lets nsbind run work (on Linux)."

func doctorCommand(args []string, stdout, stderr io.Writer) int {
	return run(append([]string{"doctor"}, args...), stdout, stderr)
}

func doctorFlags(*doctorOptions) *pflag.FlagSet {
	return pflag.NewFlagSet("nsbind doctor", pflag.ContinueOnError)
}

func doctorParsed(o doctorOptions, stdout io.Writer) int {
	fmt.Fprintln(stdout, linuxOnly)
	return 1
}
