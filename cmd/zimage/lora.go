package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/lora"
	"github.com/zimage/zimage/zimage/server"
)

// loraArg is one --lora value: FILE[:SCALE], or NAME=FILE[:SCALE] for serve.
type loraArg struct {
	name  string
	path  string
	scale float32
}

// parseLoRAArg splits FILE[:SCALE] (SCALE defaults to 1). Only a suffix
// that parses as a number is a scale, so paths with colons still work.
func parseLoRAArg(s string, named bool) (loraArg, error) {
	var a loraArg
	a.scale = 1
	if named {
		n, rest, ok := strings.Cut(s, "=")
		if !ok || n == "" {
			return a, fmt.Errorf("%q: want NAME=FILE[:SCALE]", s)
		}
		a.name, s = n, rest
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if f, err := strconv.ParseFloat(s[i+1:], 32); err == nil {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return a, fmt.Errorf("%q: scale must be finite", s)
			}
			a.scale, s = float32(f), s[:i]
		}
	}
	if s == "" {
		return a, fmt.Errorf("%q: no file", s)
	}
	a.path = s
	return a, nil
}

// loraFlags collects repeated --lora flags.
type loraFlags struct {
	named bool
	args  []loraArg
}

func (l *loraFlags) String() string {
	var parts []string
	for _, a := range l.args {
		p := fmt.Sprintf("%s:%g", a.path, a.scale)
		if a.name != "" {
			p = a.name + "=" + p
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

func (l *loraFlags) Set(s string) error {
	a, err := parseLoRAArg(s, l.named)
	if err != nil {
		return err
	}
	l.args = append(l.args, a)
	return nil
}

// check reads every LoRA file (format, key spellings, shapes of A and B)
// before the model loads, so a wrong path or an unsupported format fails in
// a moment rather than after a download; matching against the model's
// weights still happens at Load.
func (l *loraFlags) check() error {
	for _, a := range l.args {
		if _, err := lora.Open(a.path); err != nil {
			return err
		}
	}
	return nil
}

// mergeOptions returns WithLoRA for each --lora (generate merges them).
func (l *loraFlags) mergeOptions() []zimage.Option {
	var opts []zimage.Option
	for _, a := range l.args {
		opts = append(opts, zimage.WithLoRA(a.path, a.scale))
	}
	return opts
}

// loraDir lists the LoRA files of dir as NAME=FILE args (NAME = file name
// without .safetensors), for serve --lora-dir.
func loraDir(dir string) ([]loraArg, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []loraArg
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".safetensors")
		if !ok || e.IsDir() || name == "" {
			continue
		}
		out = append(out, loraArg{name: name, path: filepath.Join(dir, e.Name()), scale: 1})
	}
	slices.SortFunc(out, func(a, b loraArg) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// chunks is the image text of the LoRAs used: "lora" = "file:scale, …"
// (none without --lora).
func (l *loraFlags) chunks() []textChunk {
	if len(l.args) == 0 {
		return nil
	}
	var parts []string
	for _, a := range l.args {
		parts = append(parts, fmt.Sprintf("%s:%g", filepath.Base(a.path), a.scale))
	}
	return []textChunk{{"lora", strings.Join(parts, ", ")}}
}

// serveLoRAs gathers serve's --lora and --lora-dir adapters; a name given
// twice is an error.
func serveLoRAs(flags *loraFlags, dir string) ([]loraArg, error) {
	args := slices.Clone(flags.args)
	if dir != "" {
		more, err := loraDir(dir)
		if err != nil {
			return nil, fmt.Errorf("--lora-dir: %w", err)
		}
		args = append(args, more...)
	}
	seen := map[string]bool{}
	for _, a := range args {
		if seen[a.name] {
			return nil, fmt.Errorf("--lora: the name %q is registered twice", a.name)
		}
		seen[a.name] = true
	}
	return args, nil
}

// registerLoRAs loads every serve adapter into the pipeline (run-time
// mode, selected per request by name).
func registerLoRAs(p *zimage.Pipeline, args []loraArg, log *slog.Logger) error {
	for _, a := range args {
		if err := p.LoadLoRA(a.name, a.path); err != nil {
			return fmt.Errorf("LoRA %s: %w", a.name, err)
		}
		log.Info("LoRA available", "name", a.name, "file", a.path, "default_scale", a.scale)
	}
	return nil
}

// loraScales is the server's name → default scale map.
func loraScales(args []loraArg) map[string]float32 {
	m := make(map[string]float32, len(args))
	for _, a := range args {
		m[a.name] = a.scale
	}
	return m
}

// jobLoRAs turns a server job's adapters into request LoRAs (a zero scale
// is no update at all; zimage.LoRA would read it as the default 1).
func jobLoRAs(job server.Job) []zimage.LoRA {
	var out []zimage.LoRA
	for _, l := range job.LoRAs {
		if l.Scale == 0 {
			continue
		}
		out = append(out, zimage.LoRA{Name: l.Name, Scale: l.Scale})
	}
	return out
}
