package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README is held to the tool here: its flags (TestReadmeFlags) and its
// command lines (TestReadmeExamples). A README change that adds a flag the
// tool lacks, or a command line no row of readmeExamples accounts for,
// fails; so does a flag of "nsbind run --help" the flags table lacks.

// readmeSource is README.md of the source tree and the directory of this
// package's sources. The unprivileged pass of scripts/test.sh runs the test
// binary in another directory, so the path this file was compiled from
// comes first, then the working directory.
func readmeSource(t *testing.T) (readme []byte, pkgDir string) {
	t.Helper()
	var dirs []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dirs = append(dirs, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "..", "..", "README.md"))
		if err == nil {
			return b, dir
		}
	}
	t.Skipf("README.md not found beside %q: not run in the source tree", dirs)
	return nil, ""
}

// nsbindOutput runs nsbind (the test binary as the CLI) with args in dir
// and returns its stdout, stderr and exit status; bounded by 60 s.
func nsbindOutput(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(selfBinary(t), append([]string{"__nsbind"}, args...)...)
	cmd.Dir = dir
	// A race-detector build sleeps 1 s at exit unless told not to.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	code, stdout, stderr := runCmd(t, cmd)
	return stdout, stderr, code
}

// helpFlagRE is a flag line of a help's Flags section: "  -p, --publish ...".
var helpFlagRE = regexp.MustCompile(`^\s+(?:-([a-zA-Z]), )?--([a-z0-9][a-z0-9-]*)`)

// runHelpFlags are the flags "nsbind run --help" lists: long name → its
// shorthand ("" for none).
func runHelpFlags(t *testing.T) map[string]string {
	t.Helper()
	code, out, stderr := runInProcess(t, "run", "--help")
	if code != 0 {
		t.Fatalf("nsbind run --help: exit %d, stderr %s", code, stderr)
	}
	_, section, ok := strings.Cut(out, "\nFlags:\n")
	if !ok {
		t.Fatalf("nsbind run --help has no Flags section:\n%s", out)
	}
	flags := make(map[string]string)
	for line := range strings.SplitSeq(section, "\n") {
		if m := helpFlagRE.FindStringSubmatch(line); m != nil {
			flags["--"+m[2]] = m[1]
		} else if line != "" && !strings.HasPrefix(line, "      ") {
			break // past the section
		}
	}
	if len(flags) < 10 {
		t.Fatalf("read only %d flags from nsbind run --help:\n%s", len(flags), out)
	}
	return flags
}

// commandFlags are the "--flag" words of the help of nsbind and of every
// command its help lists.
func commandFlags(t *testing.T) map[string]bool {
	t.Helper()
	code, top, _ := runInProcess(t, "--help")
	if code != 0 {
		t.Fatalf("nsbind --help: exit %d", code)
	}
	_, list, _ := strings.Cut(top, "\nCommands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	helps := []string{top}
	for line := range strings.SplitSeq(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			code, out, stderr := runInProcess(t, f[0], "--help")
			if code != 0 {
				t.Fatalf("nsbind %s --help: exit %d, stderr %s", f[0], code, stderr)
			}
			helps = append(helps, out)
		}
	}
	if len(helps) < 5 {
		t.Fatalf("nsbind --help lists %d commands:\n%s", len(helps)-1, top)
	}
	flags := make(map[string]bool)
	for _, h := range helps {
		for _, m := range flagWordRE.FindAllStringSubmatch(h, -1) {
			flags[m[1]] = true
		}
	}
	return flags
}

// flagWordRE is a "--flag" word in text.
var flagWordRE = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_-])(--[a-z][a-z0-9-]*)`)

// otherToolsFlags are the flags the README writes of programs other than
// nsbind, with the program.
var otherToolsFlags = map[string]string{
	"--add-subuids":   "usermod",
	"--add-subgids":   "usermod",
	"--map-root-user": "unshare",
	"--datagram":      "systemd-socket-activate",
	"--reuid":         "setpriv",
	"--regid":         "setpriv",
	"--init-groups":   "setpriv",
	"--now":           "systemctl enable",
	"--peers":         "scripts/bench.sh",
	"--quick":         "scripts/bench.sh",
	"--native":        "scripts/bench.sh",
	"--pgbench":       "scripts/bench.sh",
	"--floor":         "scripts/bench.sh",
	"--bind":          "python3 -m http.server",
}

// linkTargetRE is the target of a markdown link, whose "#--direct-..."
// anchors are not flags.
var linkTargetRE = regexp.MustCompile(`\]\([^)]*\)`)

// Acceptance (issue 20): the README's flags are the tool's. Every flag of
// "nsbind run --help" has its row in the README's flags table and every row
// is one of those flags; every other --flag the README writes is a flag of
// an nsbind command or of a program it names (otherToolsFlags).
func TestReadmeFlags(t *testing.T) {
	readme, _ := readmeSource(t)
	text := string(readme)
	runFlags := runHelpFlags(t)

	// The table: the rows of "### Flags of `run`", in one piece (a blank
	// line inside a markdown table ends it; what follows is no table).
	_, section, ok := strings.Cut(text, "\n### Flags of `run`\n")
	if !ok {
		t.Fatal("README.md has no \"### Flags of `run`\" section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	var rows []string
	inTable, ended := false, false
	for line := range strings.SplitSeq(section, "\n") {
		isRow := strings.HasPrefix(line, "|")
		switch {
		case isRow && ended:
			t.Errorf("the flags table is broken off before %q: a blank line ends a markdown table", trimTo(line, 60))
		case isRow:
			inTable = true
			rows = append(rows, line)
		case inTable:
			ended = true
		}
	}
	table := make(map[string]string)               // --flag → its first cell
	for _, row := range rows[min(2, len(rows)):] { // past the header and |---|
		cell := strings.Split(row, " | ")[0]
		m := flagWordRE.FindStringSubmatch(cell)
		if m == nil {
			t.Errorf("a row of the flags table names no --flag: %q", trimTo(row, 60))
			continue
		}
		if _, dup := table[m[1]]; dup {
			t.Errorf("the flags table has two rows for %s", m[1])
		}
		table[m[1]] = cell
	}
	for flag, short := range runFlags {
		cell, ok := table[flag]
		switch {
		case !ok:
			t.Errorf("nsbind run --help lists %s; the README's flags table has no row for it", flag)
		case short != "" && !strings.Contains(cell, "-"+short+", "+flag):
			t.Errorf("the flags table's row %s does not give its shorthand -%s: %s", flag, short, cell)
		}
	}
	for flag := range table {
		if _, ok := runFlags[flag]; !ok {
			t.Errorf("the README's flags table has a row for %s, which nsbind run --help does not list", flag)
		}
	}

	// Every --flag anywhere.
	known := commandFlags(t)
	used := make(map[string]bool)
	for i, line := range strings.Split(text, "\n") {
		line = linkTargetRE.ReplaceAllString(line, "]")
		for _, m := range flagWordRE.FindAllStringSubmatch(line, -1) {
			flag := m[1]
			used[flag] = true
			if !known[flag] && otherToolsFlags[flag] == "" {
				t.Errorf("README.md:%d writes %s, a flag of no nsbind command (nor of a program otherToolsFlags names): %s", i+1, flag, trimTo(strings.TrimSpace(line), 100))
			}
		}
	}
	for flag, tool := range otherToolsFlags {
		if known[flag] {
			t.Errorf("otherToolsFlags gives %s to %s, but it is an nsbind flag", flag, tool)
		}
		if !used[flag] {
			t.Errorf("otherToolsFlags has %s (%s), which the README no longer writes: remove it", flag, tool)
		}
	}
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// readmeCommand is an nsbind command line the README shows in a code block.
type readmeCommand struct {
	line int    // in README.md
	cmd  string // as shown, without a comment or a description after it
}

// readmeCommands are the lines of README.md's code blocks (indented four
// spaces) that start with "nsbind ", "./nsbind ", "sudo nsbind " or a
// prompt "$ " before them, backslash-continued lines joined. What follows
// two spaces or more (a "# comment", the description of a synopsis) is not
// part of the command.
func readmeCommands(readme string) []readmeCommand {
	var cmds []readmeCommand
	lines := strings.Split(readme, "\n")
	start := regexp.MustCompile(`^(sudo )?(\./)?nsbind `)
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "    ") {
			continue
		}
		first := i
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		line = strings.TrimPrefix(line, "$ ")
		if !start.MatchString(line) {
			continue
		}
		if j := regexp.MustCompile(`\s{2,}|\s#\s`).FindStringIndex(line); j != nil {
			line = line[:j[0]]
		}
		cmds = append(cmds, readmeCommand{first + 1, line})
	}
	return cmds
}

// readmeExample accounts for README command lines: those equal to line, or
// matching pattern, are run by run, which checks what the README says of
// them; or covered by the test named in by; or not run, for the reason in
// not.
type readmeExample struct {
	line    string
	pattern *regexp.Regexp
	run     func(t *testing.T, cmd string)
	by      string
	not     string
}

// readmeExamples is every nsbind command line of the README. A fixed host
// port of an example is replaced by 0 (the kernel chooses) and read back,
// since the port may be busy here; a run's name "web" by one of this test's
// (names are per user, and yours may be running).
var readmeExamples = []readmeExample{
	// The first example and its variants: the python server publishes
	// port 80 on host port 8080 (here 0), and curl gets the listing of its
	// working directory on 127.0.0.1 and [::1].
	{pattern: regexp.MustCompile(`^(\./)?nsbind run (--[a-z-]+ )*-p 80:8080 python3 -m http\.server 80$`), run: readmeHTTPServer},
	{line: "nsbind version", run: readmeVersion},
	{line: "nsbind 0.1.0 (github.com/nsbind/nsbind v0.1.0, go1.26.0 linux/amd64)", not: "the output of $ nsbind version; readmeVersion checks its form"},
	// The Usage list: each line is the synopsis of a command (its help's
	// Usage line), and the command's help works.
	{line: "nsbind run [flags] [--] COMMAND [ARG...]", run: readmeSynopsis},
	{line: "nsbind ps [--json]", run: readmeSynopsis},
	{line: "nsbind port NAME add|rm|ls [SPEC...]", run: readmeSynopsis},
	{line: "nsbind exec [-it] NAME [--] COMMAND [ARG...]", run: readmeSynopsis},
	{line: "nsbind stats NAME [--watch]", run: readmeSynopsis},
	{line: "nsbind stop NAME", run: readmeSynopsis},
	{line: "nsbind doctor [--json]", run: readmeSynopsis},
	{line: "nsbind version [--json]", run: readmeSynopsis},
	{line: "nsbind completion bash|zsh|fish", run: readmeSynopsis},
	{line: "nsbind help [COMMAND]", run: readmeSynopsis},
	// Completion: the script is printed (the test writes nothing in your
	// home); TestBashCompletion sources it in bash and completes.
	{line: "nsbind completion bash > ~/.local/share/bash-completion/completions/nsbind", run: readmeCompletion},
	{line: `nsbind completion zsh > "${fpath[1]}/_nsbind"`, run: readmeCompletion},
	{line: "nsbind completion fish > ~/.config/fish/completions/nsbind.fish", run: readmeCompletion},
	// Running instances: run in order by the subtest "running instances".
	{line: "nsbind run --name web -p 80:8080 python3 -m http.server 80 &", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind ps", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind exec web curl -s localhost:80", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind exec web ss -ltn", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind exec -it web bash", by: "TestInstanceExecTTY", not: "needs a terminal: TestInstanceExecTTY runs exec -t on a pseudo-terminal"},
	{line: "nsbind port web add 81:8081", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind port web ls", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind port web rm 81:8081", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind stats web --watch", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind stop web", by: "TestReadmeExamples/running_instances"},
	{line: "nsbind run", not: "the first line of the diagram of How it works, not a command"},
	{line: "sudo nsbind run --net=veth -p 80:0.0.0.0:8080 python3 -m http.server 80", by: "TestVethRemoteClient",
		not: "needs root and a client on another machine: TestVethRemoteClient makes one in a network namespace"},
	{line: "nsbind run --socket-activation -p 80:8080 -- lighttpd -D -f lighttpd.conf", by: "TestSocketActivationLighttpd",
		not: "needs a lighttpd.conf with socket activation: TestSocketActivationLighttpd writes one and runs it"},
	{line: "nsbind run --confine --allow-read /srv/www --allow-write ./logs -p 80:8080 -- nginx -c ./nginx.conf", by: "TestConfineNginx",
		not: "needs an nginx.conf, /srv/www and ./logs: TestConfineNginx runs nginx so, with a docroot and a log directory of its own"},
}

// match is the row of readmeExamples for the command cmd, or nil.
func matchReadmeExample(cmd string) *readmeExample {
	for i, e := range readmeExamples {
		if e.line == cmd || e.pattern != nil && e.pattern.MatchString(cmd) {
			return &readmeExamples[i]
		}
	}
	return nil
}

// Acceptance (issue 20): every nsbind command line of the README is run by
// this test, or names the test that covers it, or says why it is not run;
// a line no row accounts for fails (add its row), and so does a row no line
// of the README needs any more.
func TestReadmeExamples(t *testing.T) {
	readme, pkgDir := readmeSource(t)
	cmds := readmeCommands(string(readme))
	if len(cmds) < 10 {
		t.Fatalf("found only %d nsbind command lines in README.md: %v", len(cmds), cmds)
	}
	tests := testNames(t, pkgDir)
	used := make(map[*readmeExample]bool)
	seen := make(map[string]bool)
	for _, c := range cmds {
		e := matchReadmeExample(c.cmd)
		if e == nil {
			t.Errorf("README.md:%d shows %q, which no row of readmeExamples accounts for: add one that runs it, names the test that covers it, or says why it is not run", c.line, c.cmd)
			continue
		}
		used[e] = true
		if e.by != "" {
			if top, _, _ := strings.Cut(e.by, "/"); !tests[top] {
				t.Errorf("README.md:%d %q is said to be covered by %s, a test this package does not have", c.line, c.cmd, e.by)
			}
		}
		if e.run == nil || seen[c.cmd] {
			continue
		}
		seen[c.cmd] = true
		t.Run(c.cmd, func(t *testing.T) { e.run(t, c.cmd) })
	}
	for i := range readmeExamples {
		if e := &readmeExamples[i]; !used[e] {
			t.Errorf("readmeExamples has a row for %q, which README.md no longer shows: remove it", e.line+patternString(e.pattern))
		}
		if e := readmeExamples[i]; e.run == nil && e.by == "" && e.not == "" {
			t.Errorf("the row for %q neither runs it, nor names a test, nor says why not", e.line)
		}
	}
	t.Run("running instances", readmeInstances)
}

func patternString(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

// testNames are the names of this package's tests, from its sources, or
// every name when the sources cannot be read (nothing to check them by).
func testNames(t *testing.T, dir string) map[string]bool {
	names := make(map[string]bool)
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	if !names["TestReadmeExamples"] {
		t.Logf("this package's sources are not in %s: the tests rows name are not checked", dir)
		for _, e := range readmeExamples {
			top, _, _ := strings.Cut(e.by, "/")
			names[top] = true
		}
	}
	return names
}

// readmeArgs are the arguments of the README command cmd: the words after
// "nsbind" with the replacements repl (old word → new).
func readmeArgs(cmd string, repl map[string]string) []string {
	words := strings.Fields(cmd)
	if words[0] == "sudo" {
		words = words[1:]
	}
	var args []string
	for _, w := range words[1:] {
		if r, ok := repl[w]; ok {
			w = r
		}
		args = append(args, w)
	}
	return args
}

// readmeServerDir is a working directory for a README server with one
// file in it, readable by everyone: as root the server runs as the sudo
// user (prepareRootSuite sets one).
func readmeServerDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nsbind-readme-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "readme-example.txt"), []byte("from the README\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startReadmeRun starts "nsbind ARGS" of a README example in dir, with
// --ports-file inserted after "run", and returns once every host socket
// listens and nsbind printed its start lines. The command line is the
// README's: not nsbindCmd's, which may add --direct=false.
func startReadmeRun(t *testing.T, dir string, args []string) *nsbindRun {
	t.Helper()
	requireUserns(t)
	portsFile := filepath.Join(t.TempDir(), "ports.json")
	args = slices.Insert(slices.Clone(args), slices.Index(args, "run")+1, "--ports-file", portsFile)
	cmd := exec.Command(selfBinary(t), append([]string{"__nsbind"}, args...)...)
	cmd.Dir = dir
	r := launchNsbind(t, cmd, portsFile, false)
	select {
	case <-r.done:
		t.Fatalf("nsbind %s exited %d before it served", strings.Join(args, " "), r.code)
	default:
	}
	return r
}

// portURL is the http:// URL of the host socket p.
func portURL(p portEntry) string {
	return "http://" + net.JoinHostPort(p.HostIP, strconv.Itoa(int(p.HostPort))) + "/"
}

// wantListing checks that page is python's listing of a readmeServerDir.
func wantListing(t *testing.T, what, page string) {
	t.Helper()
	if !strings.Contains(page, "Directory listing for /") || !strings.Contains(page, "readme-example.txt") {
		t.Errorf("%s: not the listing of the server's directory:\n%s", what, trimTo(page, 400))
	}
}

// readmeHTTPServer: "nsbind run ... -p 80:8080 python3 -m http.server 80",
// then "curl http://127.0.0.1:8080/" gets the listing of the directory the
// server started in, on 127.0.0.1 and [::1] alike; SIGTERM ends nsbind
// with the server's status, 143.
func readmeHTTPServer(t *testing.T, cmd string) {
	needProgram(t, "python3")
	dir := readmeServerDir(t)
	r := startReadmeRun(t, dir, readmeArgs(cmd, map[string]string{"80:8080": "80:0"}))
	if len(r.ports) != 2 {
		t.Fatalf("-p 80:8080 published %d host sockets, want 127.0.0.1 and [::1]: %+v", len(r.ports), r.ports)
	}
	for _, p := range r.ports {
		if p.InsidePort != 80 || p.Proto != "tcp" || (p.HostIP != "127.0.0.1" && p.HostIP != "::1") {
			t.Errorf("host socket %+v, want 127.0.0.1 or ::1 → 80/tcp", p)
		}
		wantListing(t, "curl "+portURL(p), curl(t, portURL(p)))
	}
	if code := r.stop(20 * time.Second); code != 143 {
		t.Errorf("nsbind exited %d after SIGTERM, want the server's 143", code)
	}
}

// readmeVersion: "nsbind version" prints one line of the form the README
// shows ("nsbind 0.1.0 (github.com/nsbind/nsbind v0.1.0, go1.26.0
// linux/amd64)"), and so does the README's own sample.
func readmeVersion(t *testing.T, cmd string) {
	form := regexp.MustCompile(`^nsbind [0-9][^ ]* \(github\.com/nsbind/nsbind [^,]+, go[^ ]+ linux/[a-z0-9]+\)$`)
	out, stderr, code := nsbindOutput(t, "", readmeArgs(cmd, nil)...)
	if code != 0 || stderr != "" || !form.MatchString(strings.TrimSuffix(out, "\n")) || strings.Count(out, "\n") != 1 {
		t.Errorf("nsbind version: exit %d, stdout %q, stderr %q; want one line like %s", code, out, stderr, form)
	}
	readme, _ := readmeSource(t)
	_, sample, _ := strings.Cut(string(readme), "    $ nsbind version\n")
	sample, _, _ = strings.Cut(sample, "\n")
	if !form.MatchString(strings.TrimSpace(sample)) {
		t.Errorf("the README's sample output of nsbind version, %q, is not of the form %s", sample, form)
	}
}

// readmeSynopsis: a line of the README's Usage is the synopsis of a
// command as its help gives it, and that help exits 0.
func readmeSynopsis(t *testing.T, cmd string) {
	name := strings.Fields(cmd)[1]
	code, out, stderr := runInProcess(t, name, "--help")
	if code != 0 || stderr != "" {
		t.Fatalf("nsbind %s --help: exit %d, stderr %q", name, code, stderr)
	}
	var usage []string
	for line := range strings.SplitSeq(out, "\n") {
		if u, ok := strings.CutPrefix(line, "Usage: "); ok {
			usage = append(usage, u)
		} else if len(usage) > 0 && strings.HasPrefix(line, "       nsbind ") {
			usage = append(usage, strings.TrimSpace(line))
		}
	}
	var status int
	for _, c := range newCLI(nil, nil, &status).Commands() {
		if c.Name() == name {
			usage = append(usage, "nsbind "+c.Use)
		}
	}
	if !slices.Contains(usage, cmd) {
		t.Errorf("the README's synopsis %q is not one of nsbind %s: %q", cmd, name, usage)
	}
}

// readmeCompletion: "nsbind completion SHELL > FILE" prints the script of
// SHELL (here to the test, not to FILE).
func readmeCompletion(t *testing.T, cmd string) {
	shell := strings.Fields(cmd)[2]
	want := map[string]string{"bash": "__start_nsbind", "zsh": "#compdef nsbind", "fish": "complete -c nsbind"}[shell]
	out, stderr, code := nsbindOutput(t, "", "completion", shell)
	if code != 0 || stderr != "" || want == "" || !strings.Contains(out, want) {
		t.Errorf("nsbind completion %s: exit %d, stderr %q, script without %q", shell, code, stderr, want)
	}
}

// readmeInstances runs the lines of "Running instances" in order, each
// checked against what the README says of it.
func readmeInstances(t *testing.T) {
	needProgram(t, "python3")
	needProgram(t, "curl")
	dir := readmeServerDir(t)
	name := fmt.Sprintf("readme-web-%d", os.Getpid())
	// In the README's order. "web" is this test's name; host ports 8080
	// and 8081 are 0, the kernel's choice.
	repl := map[string]string{"web": name, "80:8080": "80:0", "81:8081": "81:0"}
	lines := func(prefix string) []string {
		var cmds []string
		readme, _ := readmeSource(t)
		for _, c := range readmeCommands(string(readme)) {
			if e := matchReadmeExample(c.cmd); e != nil && e.by == "TestReadmeExamples/running_instances" && strings.HasPrefix(c.cmd, prefix) {
				cmds = append(cmds, c.cmd)
			}
		}
		return cmds
	}
	if len(lines("nsbind ")) < 8 {
		t.Fatalf("the README's Running instances shows %q", lines("nsbind "))
	}

	// nsbind run --name web -p 80:8080 python3 -m http.server 80 &
	runLine := lines("nsbind run ")[0]
	r := startReadmeRun(t, dir, readmeArgs(strings.TrimSuffix(runLine, " &"), repl))
	if !strings.Contains(r.stderr.String(), "nsbind: instance "+name+" (") {
		t.Errorf("nsbind did not print the instance's name on start:\n%s", r.stderr.String())
	}
	for _, p := range r.ports {
		wantListing(t, "curl "+portURL(p), curl(t, portURL(p))) // the server listens now
	}
	nsbind := func(cmd string) string {
		t.Helper()
		out, stderr, code := nsbindOutput(t, dir, readmeArgs(cmd, repl)...)
		if code != 0 {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, code, out, stderr)
		}
		return out
	}
	hostPort := strconv.Itoa(int(r.ports[0].HostPort))
	for _, cmd := range lines("nsbind ")[1:] {
		switch {
		case cmd == "nsbind ps":
			// NAME, PID, UPTIME, COMMAND, PORTS
			out := nsbind(cmd)
			for _, want := range []string{"NAME", "PID", "UPTIME", "COMMAND", "PORTS", name, "python3 -m http.server 80", "127.0.0.1:" + hostPort + "→80/tcp"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s: no %q in\n%s", cmd, want, out)
				}
			}
		case strings.Contains(cmd, " curl "):
			wantListing(t, cmd, nsbind(cmd))
		case strings.HasSuffix(cmd, " ss -ltn"):
			if out := nsbind(cmd); !regexp.MustCompile(`(?m)^LISTEN .*:80\s`).MatchString(out) {
				t.Errorf("%s: nothing listens on port 80 inside:\n%s", cmd, out)
			}
		case strings.Contains(cmd, " port ") && strings.Contains(cmd, " add "):
			out := nsbind(cmd)
			m := regexp.MustCompile(`127\.0\.0\.1:(\d+) → :81/tcp added`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("%s: no host socket added for 81/tcp:\n%s", cmd, out)
			}
			repl["added"] = m[1]
		case strings.HasSuffix(cmd, " port web ls"):
			out := nsbind(cmd)
			for _, want := range []string{"127.0.0.1:" + hostPort, "127.0.0.1:" + repl["added"]} {
				if !strings.Contains(out, want) {
					t.Errorf("%s: no %s in\n%s", cmd, want, out)
				}
			}
		case strings.Contains(cmd, " port ") && strings.Contains(cmd, " rm "):
			nsbind(cmd)
			if out := nsbind("nsbind port web ls"); strings.Contains(out, ":"+repl["added"]) {
				t.Errorf("%s: the added port is still published:\n%s", cmd, out)
			}
		case strings.HasSuffix(cmd, " --watch"):
			// The counters, again and again until interrupted.
			watch := exec.Command(selfBinary(t), append([]string{"__nsbind"}, readmeArgs(cmd, repl)...)...)
			out := new(lockedBuffer)
			watch.Stdout, watch.Stderr = out, out
			if err := watch.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for strings.Count(out.String(), "127.0.0.1:"+hostPort) < 2 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			watch.Process.Signal(syscall.SIGINT)
			watch.Wait()
			if strings.Count(out.String(), "127.0.0.1:"+hostPort) < 2 || !strings.Contains(out.String(), "CONNS") {
				t.Errorf("%s: not the counters twice within 10s:\n%s", cmd, out.String())
			}
		case strings.HasPrefix(cmd, "nsbind stop "):
			// As SIGTERM to that nsbind: the server gets SIGTERM.
			nsbind(cmd)
			if code := r.wait(20 * time.Second); code != 143 {
				t.Errorf("%s: the run exited %d, want the server's 143 (SIGTERM)", cmd, code)
			}
		default:
			t.Errorf("the Running instances line %q has no check here: add one", cmd)
		}
	}
}
