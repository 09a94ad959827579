package logline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// lineHandler writes nsbind's log lines as "nsbind: message key=value ...",
// with "debug: " or "warning: " after the prefix for those levels.
type lineHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Level
	attrs string
}

// New is a logger that writes nsbind's lines to w from level up.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(&lineHandler{w: w, mu: new(sync.Mutex), level: level})
}

// ParseLevel reads a --log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("nsbind: ")
	switch {
	case r.Level < slog.LevelInfo:
		b.WriteString("debug: ")
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	fmt.Fprintf(b, " %s=%v", a.Key, a.Value.Resolve())
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		writeAttr(&b, a)
	}
	h2 := *h
	h2.attrs = b.String()
	return &h2
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
