package manpage

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/internal/helptext"
)

// Page is the man page of the command tree root, in roff (man(7)
// macros), for the release version: the synopsis of every command, then
// each command's description and flags, from the same definitions as the
// help (internal/helptext). It depends on nothing but the tree and version
// (no date), so it is the same on every build.
func Page(root *cobra.Command, version string) string {
	var b strings.Builder
	name := root.Name()
	fmt.Fprintf(&b, ".TH %s 1 \"\" \"%s %s\" \"User Commands\"\n", strings.ToUpper(name), name, version)
	b.WriteString(".nh\n.ad l\n") // no hyphens in names, no stretched lines
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", name, roffText(root.Short))
	b.WriteString(".SH SYNOPSIS\n")
	cmds := manCommands(root)
	for i, c := range cmds {
		if i > 0 {
			b.WriteString(".br\n")
		}
		b.WriteString(synopsis(c))
	}
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roffBlocks(root.Long))
	b.WriteString(".SH OPTIONS\n")
	b.WriteString(roffText("Every command also takes -h, --help: its help, as nsbind help COMMAND shows it.") + "\n")
	b.WriteString(roffFlags(root.Flags(), true))
	b.WriteString(".SH COMMANDS\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, ".SS %s\n", roffText(c.Name()))
		b.WriteString(synopsis(c))
		b.WriteString(".PP\n")
		if c.Long != "" {
			b.WriteString(roffBlocks(c.Long))
		} else {
			b.WriteString(roffText(helptext.Description(c)) + "\n")
		}
		if c.DisableFlagParsing {
			fmt.Fprintf(&b, ".PP\nIts flags: \\fB%s %s \\-\\-help\\fR.\n", name, roffText(c.Name()))
		} else if flags := roffFlags(c.LocalNonPersistentFlags(), false); flags != "" {
			b.WriteString(".PP\nFlags:\n")
			b.WriteString(flags)
		}
	}
	if root.Example != "" {
		b.WriteString(".SH EXAMPLES\n")
		b.WriteString(roffBlocks(root.Example))
	}
	b.WriteString(".SH SEE ALSO\n")
	b.WriteString(roffText("README.md of nsbind, https://github.com/nsbind/nsbind") + "\n")
	return b.String()
}

// manCommands are the commands of root the man page describes: every one
// a user runs, in the order of the help.
func manCommands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			out = append(out, c)
		}
	}
	return out
}

// synopsis is c's usage line: the command path in bold, the rest as is.
func synopsis(c *cobra.Command) string {
	use := c.UseLine()
	path := c.CommandPath()
	rest := strings.TrimPrefix(use, path)
	return fmt.Sprintf("\\fB%s\\fR%s\n", roffText(path), roffText(rest))
}

// roffFlags lists the flags of fs as tagged paragraphs; -h, --help only
// with withHelp (the page says it once, for nsbind itself).
func roffFlags(fs *pflag.FlagSet, withHelp bool) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || (f.Name == "help" && !withHelp) {
			return
		}
		b.WriteString(".TP\n")
		names := "\\fB\\-\\-" + roffText(f.Name) + "\\fR"
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			names = "\\fB\\-" + roffText(f.Shorthand) + "\\fR, " + names
		}
		if v := helptext.FlagValueName(f); v != "" {
			names += " \\fI" + roffText(v) + "\\fR"
		}
		b.WriteString(names + "\n")
		b.WriteString(roffText(helptext.FlagDescription(f)) + "\n")
	})
	return b.String()
}

// roffBlocks turns help text into roff: a flush-left paragraph is filled
// text, an indented block (a table, an example) is shown as it is.
func roffBlocks(s string) string {
	var b strings.Builder
	for i, block := range strings.Split(strings.Trim(s, "\n"), "\n\n") {
		lines := strings.Split(block, "\n")
		if i > 0 {
			b.WriteString(".PP\n")
		}
		if !strings.HasPrefix(lines[0], " ") {
			for _, l := range lines {
				b.WriteString(roffLine(l) + "\n")
			}
			continue
		}
		indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
		for _, l := range lines {
			indent = min(indent, len(l)-len(strings.TrimLeft(l, " ")))
		}
		b.WriteString(".RS 4\n.nf\n")
		for _, l := range lines {
			b.WriteString(roffLine(l[indent:]) + "\n")
		}
		b.WriteString(".fi\n.RE\n")
	}
	return b.String()
}

// roffLine is one line of text for roff: escaped, and kept from being read
// as a request when it starts with a dot or a quote.
func roffLine(s string) string {
	s = roffText(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}

// roffText escapes s for roff: backslashes, and hyphens as \- so that
// options and command lines copy as typed.
func roffText(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\e")
	return strings.ReplaceAll(s, "-", "\\-")
}
