package helptext

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// CommandNames are the names of the commands of root that a user runs:
// every available one, and help.
func CommandNames(root *cobra.Command) []string {
	var names []string
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
		}
	}
	return names
}

// Write writes the help of cmd: its synopsis, description, commands,
// flags and examples, and below the root command's (no parent) footer.
func Write(w io.Writer, cmd *cobra.Command, footer string) {
	var b strings.Builder
	if cmd.HasParent() {
		fmt.Fprintf(&b, "Usage: %s\n\n%s\n", cmd.UseLine(), Description(cmd))
	} else {
		fmt.Fprintf(&b, "%s\n\nUsage:\n  %s COMMAND [ARG...]\n", Description(cmd), cmd.Name())
	}
	if cmd.HasAvailableSubCommands() {
		b.WriteString("\nCommands:\n")
		width := 0
		for _, name := range CommandNames(cmd) {
			width = max(width, len(name))
		}
		for _, c := range cmd.Commands() {
			if slices.Contains(CommandNames(cmd), c.Name()) {
				fmt.Fprintf(&b, "  %-*s  %s\n", width, c.Name(), c.Short)
			}
		}
	}
	if cmd.HasAvailableFlags() {
		b.WriteString("\nFlags:\n")
		b.WriteString(FlagHelp(cmd.Flags()))
	}
	if cmd.Example != "" {
		fmt.Fprintf(&b, "\nExample:\n%s\n", cmd.Example)
	}
	if !cmd.HasParent() {
		fmt.Fprintf(&b, "\n%s\n", footer)
	}
	io.WriteString(w, b.String())
}

// Description is cmd's long description, or its short one as a sentence.
func Description(cmd *cobra.Command) string {
	if cmd.Long != "" {
		return strings.TrimSpace(cmd.Long)
	}
	s := cmd.Short
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// Width is the width the help of the flags is wrapped to.
const Width = 80

// flagColumn is where a flag's description starts.
const flagColumn = 32

// FlagHelp lists the flags of fs as help text: name and value on the left,
// the description wrapped beside it (below it when the name is long).
func FlagHelp(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "  " + flagSynopsis(f)
		lines := wrap(FlagDescription(f), Width-flagColumn)
		if len(left) > flagColumn-2 {
			fmt.Fprintf(&b, "%s\n", left)
			left = ""
		}
		for i, l := range lines {
			if i > 0 {
				left = ""
			}
			fmt.Fprintf(&b, "%-*s%s\n", flagColumn, left, l)
		}
	})
	return b.String()
}

// flagSynopsis is how a flag is written: "-p, --publish string",
// "    --direct" (no value for a bool), "    --ports-file FILE" (the name
// in backquotes in its usage); the indent lines up the long names.
func flagSynopsis(f *pflag.Flag) string {
	s := "    --" + f.Name
	if f.Shorthand != "" && f.ShorthandDeprecated == "" {
		s = "-" + f.Shorthand + ", --" + f.Name
	}
	if v := FlagValueName(f); v != "" {
		s += " " + v
	}
	return s
}

// FlagValueName is the name of f's value: the word its usage puts in
// backquotes, else its type; "" for a bool.
func FlagValueName(f *pflag.Flag) string {
	name, _ := pflag.UnquoteUsage(f)
	switch name {
	case "stringArray", "stringSlice":
		return "string" // repeatable: the usage says so
	}
	return name
}

// FlagDescription is f's usage with its default, if it has one worth
// saying.
func FlagDescription(f *pflag.Flag) string {
	_, usage := pflag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "false", "0", "0s", "[]":
		return usage
	}
	if f.Value.Type() == "string" {
		return fmt.Sprintf("%s (default %q)", usage, f.DefValue)
	}
	return fmt.Sprintf("%s (default %s)", usage, f.DefValue)
}

// wrap breaks s into lines of at most width bytes at spaces (a longer word
// keeps its own line).
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" || len(lines) == 0 {
		lines = append(lines, line)
	}
	return lines
}
