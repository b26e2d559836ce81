package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// warnHandler prints the library's warnings (a GPU that could not be
// opened after all, hub retries, …) as one line each on stderr:
// "zimage generate: warning: MSG (key=value, …)". Lower levels are dropped.
type warnHandler struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	attrs  []slog.Attr
}

func newWarnLogger(w io.Writer, prefix string) *slog.Logger {
	return slog.New(&warnHandler{mu: new(sync.Mutex), w: w, prefix: prefix})
}

func (h *warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnHandler) Handle(_ context.Context, r slog.Record) error {
	var kv []string
	add := func(a slog.Attr) bool {
		kv = append(kv, a.Key+"="+strings.Join(strings.Fields(a.Value.String()), " "))
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	msg := strings.TrimPrefix(r.Message, "zimage: ")
	if len(kv) > 0 {
		msg += " (" + strings.Join(kv, ", ") + ")"
	}
	level := "warning"
	if r.Level >= slog.LevelError {
		level = "error"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintf(h.w, "%s: %s: %s\n", h.prefix, level, msg)
	return err
}

func (h *warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *warnHandler) WithGroup(string) slog.Handler { return h }
