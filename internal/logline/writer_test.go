package logline

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// A logger on a Writer whose output nobody reads (a pipe, full) does not
// wait: every line returns at once; what did not fit is dropped and
// counted, and once the output is read again a line says how many.
func TestWriterNeverWaits(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	w := NewWriter(pw)
	logger := New(w, slog.LevelDebug)
	const lines = 20000 // about 1.5 MiB: many times the pipe and the queue
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range lines {
			logger.Debug("connection open", "client", "127.0.0.1:40000", "n", i)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging to a stderr nobody reads blocked")
	}
	if w.Dropped() == 0 {
		t.Fatal("no line dropped, yet the output took none")
	}
	// The output is read again: the queue drains, then the count.
	var got []string
	sc := bufio.NewScanner(pr)
	read := make(chan struct{})
	go func() {
		defer close(read)
		for sc.Scan() {
			got = append(got, sc.Text())
			if strings.Contains(sc.Text(), "dropped") {
				return
			}
		}
	}()
	logger.Info("after")
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("no line said how many were dropped")
	}
	last := got[len(got)-1]
	var n int
	if _, err := fmt.Sscanf(last, "nsbind: warning: %d of nsbind's log lines were dropped", &n); err != nil || n <= 0 || n >= lines {
		t.Fatalf("last line %q: want the number dropped", last)
	}
	if len(got)-1+n < lines { // the lines written and those dropped
		t.Fatalf("%d lines arrived and %d were dropped, of %d", len(got)-1, n, lines)
	}
}

// A closed output (the reader of the pipe gone, as after | head -1) fails
// every write; the Writer drops the lines and Close still returns.
func TestWriterClosedOutput(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	defer pw.Close()
	w := NewWriter(pw)
	for range 10 {
		fmt.Fprintf(w, "nsbind: line\n")
	}
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not return with the output closed")
	}
}

// Lines keep their order, and Close writes all that was queued.
func TestWriterOrderAndFlush(t *testing.T) {
	var b syncBuffer
	w := NewWriter(&b)
	for i := range 1000 {
		fmt.Fprintf(w, "%d\n", i)
	}
	if !w.Close(5 * time.Second) {
		t.Fatal("Close timed out")
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		if l != fmt.Sprint(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
	fmt.Fprintf(w, "late\n")
	if strings.Contains(b.String(), "late") {
		t.Fatal("a write after Close went out")
	}
}

// Close waits for a stalled output only as long as it is told.
func TestWriterCloseBounded(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	w := NewWriter(stalled{stall})
	fmt.Fprintf(w, "line\n")
	start := time.Now()
	if w.Close(100 * time.Millisecond) {
		t.Fatal("Close reported the line written")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

type stalled struct{ c chan struct{} }

func (s stalled) Write(p []byte) (int, error) {
	<-s.c
	return 0, io.ErrClosedPipe
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
