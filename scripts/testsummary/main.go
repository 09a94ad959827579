// Command testsummary reads the JSON that `go test -json` and
// `go tool test2json` write and says what ran, for scripts/test.sh:
//
//	testsummary show < PASS.json     one line a package and the output of each
//	                                 failed test, as the stream goes by; exits 1
//	                                 if the stream has a failure
//	testsummary total PASS.json...   over all passes: the tests that failed, the
//	                                 tests skipped in every pass they appeared in,
//	                                 and last the line "N passed, N failed, N skipped";
//	                                 exits 1 on a failure or a test skipped everywhere
//
// What counts as a test: every leaf of the test tree, once per pass. A test
// with subtests is counted through its subtests (a table test of 12 rows is
// 12 tests), not as one more; it counts itself only when it failed and none
// of its subtests did, so a failure of its own is never lost. A fuzz target
// counts as a test like any other: its seed corpus entries in a plain pass,
// the fuzzing run itself (one test) in a -fuzz pass. A package that fails
// outside any test (a build error, a panic in TestMain, a timeout) counts as
// one failed test named after the package, and so does a test that started
// and never ended (the binary died under it).
//
// "Skipped everywhere" is by package and full test name over all the
// passes given: a test skipped as the unprivileged user but run as root is
// fine; one skipped in every pass it appeared in is not.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of test2json's output (go doc test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsummary show < PASS.json | testsummary total PASS.json...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "show":
		os.Exit(show(os.Stdin, os.Stdout))
	case "total":
		os.Exit(total(os.Args[2:], os.Stdout))
	}
	fmt.Fprintf(os.Stderr, "testsummary: unknown command %q\n", os.Args[1])
	os.Exit(2)
}

// result is how one test ended in one pass.
type result struct {
	pkg, test string
	action    string // pass, fail, skip; "" while it runs
	output    []string
	children  int // subtests seen
	childFail bool
}

// pass is the tests of one stream, in the order they started.
type pass struct {
	tests    map[string]*result // by package + "\x00" + test
	order    []*result
	pkgFail  map[string]bool
	pkgTests map[string]int // results per package, to find a failure outside tests
	pkgOut   map[string][]string
	// Called, when set: onTest as a test ends, onPkg as a package ends,
	// onRaw with a line that is not a test's (build output, go's own).
	onTest func(r *result)
	onPkg  func(pkg, action string, elapsed float64)
	onRaw  func(line string)
}

func newPass() *pass {
	return &pass{
		tests:    map[string]*result{},
		pkgFail:  map[string]bool{},
		pkgTests: map[string]int{},
		pkgOut:   map[string][]string{},
	}
}

func (p *pass) get(pkg, test string) *result {
	k := pkg + "\x00" + test
	r := p.tests[k]
	if r == nil {
		r = &result{pkg: pkg, test: test}
		p.tests[k] = r
		p.order = append(p.order, r)
		if i := strings.LastIndexByte(test, '/'); i > 0 {
			p.get(pkg, test[:i]).children++
		}
	}
	return r
}

// read feeds the stream r into p. Lines that are not JSON (a stray
// message of go itself) go to onRaw.
func (p *pass) read(in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Action == "" {
			if p.onRaw != nil {
				p.onRaw(line)
			}
			continue
		}
		p.add(e)
	}
}

func (p *pass) add(e event) {
	switch e.Action {
	case "build-output":
		if p.onRaw != nil {
			p.onRaw(strings.TrimSuffix(e.Output, "\n"))
		}
		return
	case "build-fail":
		// The packages whose tests it kept from building fail too, each
		// with an event of its own.
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.pkgOut[e.Package] = append(p.pkgOut[e.Package], e.Output)
		case "fail":
			p.pkgFail[e.Package] = true
			fallthrough
		case "pass", "skip":
			if p.onPkg != nil {
				p.onPkg(e.Package, e.Action, e.Elapsed)
			}
		}
		return
	}
	r := p.get(e.Package, e.Test)
	switch e.Action {
	case "run":
		p.pkgTests[e.Package]++
	case "output":
		r.output = append(r.output, e.Output)
	case "pass", "fail", "skip":
		r.action = e.Action
		if e.Action == "fail" {
			for t := e.Test; strings.Contains(t, "/"); {
				t = t[:strings.LastIndexByte(t, '/')]
				p.get(e.Package, t).childFail = true
			}
		}
		if p.onTest != nil {
			p.onTest(r)
		}
	}
}

// counted is the results of p that count (see the package comment), each
// with its outcome: pass, fail or skip.
func (p *pass) counted() []*result {
	var out []*result
	for _, r := range p.order {
		switch {
		case r.action == "":
			// Started and never ended: the binary died under it. Its
			// parents never ended either; the deepest one counts.
			if r.children == 0 {
				out = append(out, &result{pkg: r.pkg, test: r.test, action: "fail", output: r.output})
			}
		case r.children == 0, r.action == "fail" && !r.childFail:
			out = append(out, r)
		}
	}
	pkgs := make([]string, 0, len(p.pkgFail))
	for pkg := range p.pkgFail {
		pkgs = append(pkgs, pkg)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		failed := false
		for _, r := range out {
			failed = failed || (r.pkg == pkg && r.action == "fail")
		}
		if !failed {
			out = append(out, &result{pkg: pkg, action: "fail", output: p.pkgOut[pkg]})
		}
	}
	return out
}

// show prints a stream as it goes: the output of a failed test when it
// fails, a line for each package when it ends.
func show(in io.Reader, w io.Writer) int {
	p := newPass()
	per := map[string]map[string]int{}
	count := func(r *result) {
		if per[r.pkg] == nil {
			per[r.pkg] = map[string]int{}
		}
		per[r.pkg][r.action]++
	}
	p.onTest = func(r *result) {
		if r.action == "fail" && (r.children == 0 || !r.childFail) {
			fmt.Fprintf(w, "--- FAIL %s %s\n", short(r.pkg), r.test)
			printOutput(w, r.output, r.test)
		}
		if r.children == 0 || r.action == "fail" && !r.childFail {
			count(r)
		}
	}
	p.onPkg = func(pkg, action string, elapsed float64) {
		if action == "skip" {
			fmt.Fprintf(w, "?    %s (no test files)\n", pkg)
			return
		}
		if action == "fail" {
			// Tests that never ended: the binary died under them (a
			// panic, a timeout); their output says why.
			for _, r := range p.order {
				if r.pkg == pkg && r.action == "" && r.children == 0 {
					fmt.Fprintf(w, "--- FAIL %s %s (did not end)\n", short(r.pkg), r.test)
					printOutput(w, r.output, r.test)
					count(&result{pkg: pkg, action: "fail"})
				}
			}
			if per[pkg]["fail"] == 0 {
				// Failed outside any test: its own output says why.
				fmt.Fprintf(w, "--- FAIL %s (outside any test)\n", short(pkg))
				printOutput(w, p.pkgOut[pkg], "")
				count(&result{pkg: pkg, action: "fail"})
			}
		}
		word := "ok"
		if action == "fail" {
			word = "FAIL"
		}
		n := per[pkg]
		fmt.Fprintf(w, "%-4s %s %s (%d passed, %d failed, %d skipped)\n", word, pkg,
			time.Duration(elapsed*float64(time.Second)).Round(10*time.Millisecond), n["pass"], n["fail"], n["skip"])
	}
	p.onRaw = func(line string) { fmt.Fprintln(w, line) }
	p.read(in)
	for _, r := range p.counted() {
		if r.action == "fail" {
			return 1
		}
	}
	return 0
}

// total reads every pass and prints what failed, what was skipped in every
// pass, and the summary line, last.
func total(files []string, w io.Writer) int {
	type key struct{ pkg, test string }
	type seen struct {
		ran    bool // passed or failed in some pass
		reason string
	}
	tests := map[key]*seen{}
	var order []key
	var passed, failed, skipped int
	var failures []string
	for _, f := range files {
		fd, err := os.Open(f)
		if err != nil {
			fmt.Fprintf(w, "testsummary: %v\n", err)
			failed++
			failures = append(failures, f+" (unreadable)")
			continue
		}
		p := newPass()
		p.read(fd)
		fd.Close()
		entry := func(k key) *seen {
			s := tests[k]
			if s == nil {
				s = &seen{}
				tests[k] = s
				order = append(order, k)
			}
			return s
		}
		// A test ran if it passed or failed itself, with its subtests or
		// without: one skipped whole in one pass and run with subtests in
		// another ran.
		for _, r := range p.order {
			if r.action == "pass" || r.action == "fail" {
				entry(key{r.pkg, r.test}).ran = true
			}
		}
		for _, r := range p.counted() {
			s := entry(key{r.pkg, r.test})
			switch r.action {
			case "pass":
				passed++
				s.ran = true
			case "fail":
				failed++
				s.ran = true
				name := r.test
				if name == "" {
					name = "(outside any test)"
				}
				failures = append(failures, fmt.Sprintf("%s %s   [%s]", short(r.pkg), name, passName(f)))
			case "skip":
				skipped++
				if s.reason == "" {
					s.reason = skipReason(r.output)
				}
			}
		}
	}
	var everywhere []string
	for _, k := range order {
		if s := tests[k]; !s.ran && k.test != "" {
			everywhere = append(everywhere, fmt.Sprintf("%s %s: %s", short(k.pkg), k.test, s.reason))
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(w, "failed:\n")
		for _, f := range failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if len(everywhere) > 0 {
		fmt.Fprintf(w, "skipped in every pass they ran in (a test that never runs tests nothing):\n")
		for _, s := range everywhere {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(everywhere) > 0 {
		return 1
	}
	return 0
}

// skipReason is the message of a skipped test: its output without the
// framework's own lines.
func skipReason(output []string) string {
	var out []string
	for _, l := range output {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return "(no reason given)"
	}
	return strings.Join(out, " ")
}

// printOutput prints a test's output, indented, without the framework's
// lines about it (its name is printed above).
func printOutput(w io.Writer, output []string, test string) {
	for _, l := range output {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") || strings.HasPrefix(t, "=== CONT") ||
			test != "" && strings.HasPrefix(t, "--- FAIL: "+test+" ") {
			continue
		}
		fmt.Fprint(w, "    ", l)
		if !strings.HasSuffix(l, "\n") {
			fmt.Fprintln(w)
		}
	}
}

// short drops the module path from a package path.
func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/nsbind/nsbind/")
}

// passName is the name of a pass: its file's name without .json.
func passName(f string) string {
	f = f[strings.LastIndexByte(f, '/')+1:]
	return strings.TrimSuffix(f, ".json")
}
