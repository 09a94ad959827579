// Package helptext writes the help of nsbind's command tree as nsbind
// shows it (nsbind help, COMMAND --help): the synopsis, the description,
// the commands, and the flags in two columns wrapped to 80 columns. The
// man page (internal/manpage) is written from the same descriptions of the
// flags, so the two say the same.
//
// Processes: the CLI, on the host; it reads only the cobra and pflag
// definitions it is given.
//
// Concurrency: the functions keep no state; they may be called from any
// goroutine on a tree nothing changes meanwhile.
package helptext
