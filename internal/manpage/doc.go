// Package manpage writes the man page of nsbind (docs/nsbind.1) from its
// cobra command tree: every command's synopsis, description and flags, in
// roff with the man(7) macros, from the same definitions as the help
// (internal/helptext). cmd/nsbind's TestManPage compares the committed
// page with Page of the tree and rewrites it with -update
// (scripts/manpage.sh).
//
// Processes: the CLI's tests and scripts/manpage.sh; nsbind itself does
// not print it.
//
// Concurrency: Page keeps no state; it may be called from any goroutine on
// a tree nothing changes meanwhile.
package manpage
