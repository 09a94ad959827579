package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testBinary is the nsbind binary scripts/test.sh built (static,
// CGO_ENABLED=0), from NSBIND_TEST_BINARY; the test skips without it.
func testBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("NSBIND_TEST_BINARY")
	if bin == "" {
		t.Skip("NSBIND_TEST_BINARY is not set (scripts/test.sh sets it to the binary it builds)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("NSBIND_TEST_BINARY: %v", err)
	}
	return bin
}

// The binary the user gets is static: it has no program interpreter (the
// dynamic loader) and needs no shared library, so it runs on any Linux of
// its architecture.
func TestBinaryIsStatic(t *testing.T) {
	bin := testBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(io.LimitReader(p.Open(), 256))
			t.Errorf("%s has a program interpreter, %q: it is not static", bin, strings.TrimRight(string(b), "\x00"))
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q (%v)", bin, libs, err)
	}
}

// hostPortLine is the line nsbind prints for each published host socket.
var hostPortLine = regexp.MustCompile(`^nsbind: (\S+) → :80/tcp$`)

// The static binary itself, not the test binary playing nsbind: it runs
// python3's http.server on port 80 inside, and a page comes through each
// host address it prints, IPv4 and IPv6.
func TestStaticBinaryServesHTTP(t *testing.T) {
	bin := testBinary(t)
	requireUserns(t)
	python := needProgram(t, "python3")
	dir := t.TempDir()
	// When root runs nsbind the server runs as another user (DESIGN.md,
	// fact 13): let it read the page.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const page = "hello from the static binary\n"
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"run"}
	if relayMode() {
		args = append(args, "--direct=false")
	}
	args = append(args, "-p", "80:0", "--", python, "-m", "http.server", "--directory", dir, "80")
	cmd := exec.Command(bin, args...)
	// A pipe of our own, not StderrPipe: Wait runs beside the reader.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = w
	done := startCmd(t, cmd)
	w.Close()

	// nsbind prints one line per host socket, once all of them listen.
	addrs := make(chan netip.AddrPort, 2)
	var log strings.Builder
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(&log, sc.Text())
			if m := hostPortLine.FindStringSubmatch(sc.Text()); m != nil {
				if ap, err := netip.ParseAddrPort(m[1]); err == nil {
					addrs <- ap
				}
			}
		}
	}()
	var got []netip.AddrPort
	for len(got) < 2 {
		select {
		case ap := <-addrs:
			got = append(got, ap)
		case <-logged:
			t.Fatalf("nsbind ended before it printed both host addresses:\n%s", log.String())
		case <-time.After(15 * time.Second):
			t.Fatalf("nsbind printed no host address within 15s")
		}
	}

	client := &http.Client{Timeout: 5 * time.Second}
	for _, ap := range got {
		url := fmt.Sprintf("http://%s/hello.txt", ap)
		// The host socket listens before the server does: ask until the
		// server answers, at most 15s.
		var body string
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := client.Get(url)
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil && resp.StatusCode == http.StatusOK {
					body = string(b)
					break
				}
				err = fmt.Errorf("%s, %v", resp.Status, rerr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", url, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if body != page {
			t.Errorf("GET %s: %q, want %q", url, body, page)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("nsbind did not exit within 15s of SIGTERM")
	}
	<-logged
}
