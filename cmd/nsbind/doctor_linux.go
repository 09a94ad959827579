package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/internal/doctor"
)

// doctorLong is nsbind doctor's description in its help and the man page.
const doctorLong = `Checks that this host lets nsbind run work, the way run will use it: it creates
a user and network namespace (and a PID and mount namespace) and tries inside
what the helper and the server need. One line per check: OK, or the problem
and the exact fix. Exit status 0 when run will work, 1 when it will not.`

// doctorOptions are nsbind doctor's flags.
type doctorOptions struct {
	json bool
}

// doctorCommand is "nsbind doctor ARGS...", as the command line has it.
func doctorCommand(args []string, stdout, stderr io.Writer) int {
	return run(append([]string{"doctor"}, args...), stdout, stderr)
}

// doctorFlags are the flags of nsbind doctor, set into o as they are
// parsed (by its cobra command, cli.go).
func doctorFlags(o *doctorOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("nsbind doctor", pflag.ContinueOnError)
	fs.BoolVar(&o.json, "json", false, "print the checks as one JSON object, for scripts")
	return fs
}

// doctorParsed runs the checks (internal/doctor) and prints them.
func doctorParsed(o doctorOptions, stdout io.Writer) int {
	rep := doctor.Run()
	if o.json {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		doctor.Print(stdout, rep)
	}
	if !rep.RunWorks {
		return 1
	}
	return 0
}
