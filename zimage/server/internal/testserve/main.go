// Command testserve runs zimage/server with a fake, deterministic generator.
// The server's crash and multi-process tests build it and run it as a
// separate process; it is not part of the zimage command.
//
// It prints "listening ADDR" on stdout once serving, and appends one line
// "TASK INDEX PID" to --log for each image it generates.
package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/zimage/zimage/zimage/server"
)

type fakeGen struct {
	delay time.Duration
	log   *os.File
	mu    sync.Mutex
}

func (g *fakeGen) Generate(ctx context.Context, job server.Job) (image.Image, int64, error) {
	select {
	case <-time.After(g.delay):
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	if g.log != nil {
		g.mu.Lock()
		fmt.Fprintf(g.log, "%s %d %d\n", job.TaskID, job.Index, os.Getpid())
		g.mu.Unlock()
	}
	img := image.NewRGBA(image.Rect(0, 0, job.Width, job.Height))
	c := color.RGBA{uint8(job.Seed), uint8(job.Seed >> 8), uint8(job.Index), 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img, job.Seed, nil
}

func main() {
	data := flag.String("data", "", "data directory")
	database := flag.String("database", "", "database URL")
	role := flag.String("role", "all", "all|api|worker")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	delay := flag.Duration("delay", 100*time.Millisecond, "time per image")
	logPath := flag.String("log", "", "append a line per generated image here")
	workers := flag.Int("workers", 1, "tasks at once")
	rescue := flag.Duration("rescue-after", 0, "rescue stuck jobs after")
	timeout := flag.Duration("task-timeout", 0, "task time limit")
	flag.Parse()

	gen := &fakeGen{delay: *delay}
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		gen.log = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, server.Config{
		DataDir: *data, DatabaseURL: *database, Role: server.Role(*role), Generator: gen,
		Resolution: 64, Price: 10, Workers: *workers, RescueAfter: *rescue, TaskTimeout: *timeout, MaxQueue: 1000,
		PollInterval: 50 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
