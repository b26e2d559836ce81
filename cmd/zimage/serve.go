package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/server"
)

func init() {
	register("serve", "serve the Z Image Turbo HTTP API (and OpenAI images) with keys and credits", runServe)
}

// pipelineGenerator runs server jobs on a loaded pipeline.
type pipelineGenerator struct{ p *zimage.Pipeline }

func (g *pipelineGenerator) Generate(ctx context.Context, job server.Job) (image.Image, int64, error) {
	res, err := g.p.Run(ctx, zimage.Request{Prompt: job.Prompt, Width: job.Width, Height: job.Height, Seed: job.Seed, Steps: job.Steps, LoRAs: jobLoRAs(job),
		Image: job.Image, Mask: job.Mask, Strength: job.Strength})
	if err != nil {
		return nil, 0, err
	}
	return res.Image, res.Seed, nil
}

// proxyList is the repeatable --trusted-proxy flag.
type proxyList []netip.Prefix

func (l *proxyList) String() string {
	parts := make([]string, len(*l))
	for i, p := range *l {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (l *proxyList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		p, err := server.ParseTrustedProxy(part)
		if err != nil {
			return err
		}
		*l = append(*l, p)
	}
	return nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory: embedded database and images (required without --database)")
	model := fs.String("model", os.Getenv("ZIMAGE_MODEL"), "model directory (diffusers layout); default $ZIMAGE_MODEL; not needed with --role api")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address HOST:PORT")
	database := fs.String("database", "", "postgres://… to share the queue and store, images included, between processes on any machines (default: SQLite in --data)")
	role := fs.String("role", "all", "what this process does: all, api (HTTP only) or worker (runs tasks; needs --database)")
	resolution := fs.Int("resolution", 1024, "base image size: 1:1 is N×N, other aspect ratios scale the 1024 table")
	price := fs.Int64("price", 15, "credits per image (at least 1); with --price-by pixels, per 1024x1024 image at 8 steps")
	priceBy := fs.String("price-by", "image", "image: --price per image; pixels: ceil(price × W×H/1024² × steps/8), at least 1")
	steps := fs.Int("steps", 8, "denoising steps of every image (1 to 100)")
	maxPixels := fs.Int("max-pixels", 2048*2048, "largest width×height a request may ask for (size, aspect ratio, OpenAI size)")
	maxSize := fs.String("max-size", "", "largest WIDTHxHEIGHT a request may ask for, each side (default: 4096x4096)")
	maxQueue := fs.Int("max-queue", 100, "queued + running tasks before requests get 429")
	maxN := fs.Int("max-n", 4, "most images per OpenAI request")
	workers := fs.Int("workers", 1, "tasks this process runs at once (one pipeline runs one at a time)")
	taskTimeout := fs.Duration("task-timeout", 0, "time limit of one task (default: derived at start from one timed step: twice the largest task the limits allow, at least 10m)")
	rescueAfter := fs.Duration("rescue-after", 0, "with --database: rerun a task whose worker vanished after this long (default task-timeout+1m)")
	retryGrace := fs.Duration("retry-grace", 10*time.Second, "when a retrying client (Idempotency-Key, OpenAI SDK) disconnects from /v1/images/generations, keep its task this long for the retry before cancelling it unbilled (0: at once)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "at SIGTERM, time running tasks get before being handed back")
	keepImages := fs.Duration("keep-images", 0, "delete images this long after their task finished, e.g. 720h (default 0: keep forever)")
	publicURL := fs.String("public-url", "", "external base URL for image links (default: from the request's Host)")
	var proxies proxyList
	fs.Var(&proxies, "trusted-proxy", "CIDR or IP of a reverse proxy whose X-Forwarded-Proto/-Host build the image links (repeatable)")
	modelID := fs.String("model-id", server.DefaultModelID, "the model's name in GET /v1/models")
	device := fs.String("device", "auto", "compute device: cpu, cuda or auto")
	threads := fs.Int("threads", 0, "CPU threads (0 = all cores)")
	memBudget := fs.String("memory-budget", "", "device memory budget, e.g. 15.5GB or 14GiB (default: the free device memory)")
	precision := fs.String("precision", "fp32", "CPU matrix-product precision: fp32 (exact) or bf16 (faster; float32 accumulation)")
	warmup := fs.Bool("warmup", false, "CPU: prepare at load for --resolution images (bind the networks, map their weights in, pre-pack bf16 weights, pre-fault a first generation's working memory), so the first task does not pay for it")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	loras := loraFlags{named: true}
	fs.Var(&loras, "lora", "register a LoRA adapter clients may select by name: NAME=FILE[:SCALE] (repeatable; SCALE is the default strength, 1 if omitted)")
	loraDirFlag := fs.String("lora-dir", "", "register every *.safetensors LoRA in this directory under its file name (without .safetensors)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zimage serve --data DIR --model PATH [--addr HOST:PORT] [--resolution N] [--price CREDITS] [flags]")
		fmt.Fprintln(stderr, "       zimage serve --database postgres://… [--role api|worker|all] [--model PATH] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "zimage serve: %s\n", msg)
		fs.Usage()
		return 2
	}
	budgetBytes, err := parseBytes(*memBudget)
	if err != nil {
		return usageErr(fmt.Sprintf("--memory-budget: %v", err))
	}
	prec, err := zimage.ParsePrecision(*precision)
	if err != nil {
		return usageErr(fmt.Sprintf("--precision: %v", err))
	}
	var maxW, maxH int
	if *maxSize != "" {
		if maxW, maxH, err = parseMaxSize(*maxSize); err != nil {
			return usageErr(err.Error())
		}
	}
	switch {
	case *priceBy != "image" && *priceBy != "pixels":
		return usageErr(fmt.Sprintf("--price-by %q: want image or pixels", *priceBy))
	case *steps < 1 || *steps > 100:
		return usageErr(fmt.Sprintf("--steps %d: want 1 to 100", *steps))
	case *maxPixels < 64*64:
		return usageErr(fmt.Sprintf("--max-pixels %d: at least %d (64x64)", *maxPixels, 64*64))
	case *retryGrace < 0:
		return usageErr(fmt.Sprintf("--retry-grace %s: must not be negative", *retryGrace))
	case *taskTimeout < 0:
		return usageErr(fmt.Sprintf("--task-timeout %s: must not be negative", *taskTimeout))
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *data == "" && !strings.HasPrefix(*database, "postgres://") && !strings.HasPrefix(*database, "postgresql://"):
		return usageErr("--data is required (or --database postgres://…)")
	case *model == "" && server.Role(*role) != server.RoleAPI:
		return usageErr("--model is required (or $ZIMAGE_MODEL)")
	case *price < 1:
		return usageErr(fmt.Sprintf("--price %d: must be at least 1", *price))
	case *keepImages < 0:
		return usageErr(fmt.Sprintf("--keep-images %s: must not be negative (0 keeps images forever)", *keepImages))
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageErr(fmt.Sprintf("--log-level %q: want debug, info, warn or error", *logLevel))
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch strings.ToLower(*logFormat) {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return usageErr(fmt.Sprintf("--log-format %q: want text or json", *logFormat))
	}

	loraArgs, err := serveLoRAs(&loras, *loraDirFlag)
	if err != nil {
		return usageErr(err.Error())
	}
	if server.Role(*role) != server.RoleAPI {
		// The device first: a fallback to the CPU is said at once, before
		// the model loads (minutes), and a bad --device is a usage error.
		if code, ok := announceDevice(stderr, "serve", *device, usageErr); !ok {
			return code
		}
	}

	// Everything that can fail without the model is checked before it loads
	// (minutes for the real one): the listen address is bound, then New
	// takes the data directory's lock, opens the database and checks the
	// role against it.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "zimage serve: %v\n", err)
		return 1
	}
	defer ln.Close() // Serve closes it too; this covers the early returns
	srv, err := server.New(ctx, server.Config{
		DataDir: *data, DatabaseURL: *database, Role: server.Role(*role),
		Resolution: *resolution, Price: *price, MaxQueue: *maxQueue, MaxN: *maxN, Workers: *workers,
		PriceByPixels: *priceBy == "pixels", Steps: *steps, MaxPixels: *maxPixels, MaxWidth: maxW, MaxHeight: maxH,
		TaskTimeout: *taskTimeout, RescueAfter: *rescueAfter, ShutdownTimeout: *shutdownTimeout, RetryGrace: graceConfig(*retryGrace),
		KeepImages: *keepImages, PublicURL: *publicURL, TrustedProxies: proxies, ModelID: *modelID, Logger: log,
		LoRAs: loraScales(loraArgs),
	})
	if err != nil {
		fmt.Fprintf(stderr, "zimage serve: %v\n", err)
		return 1
	}
	if server.Role(*role) != server.RoleAPI {
		log.Info("loading the model", "model", *model, "device", *device)
		opts := []zimage.Option{zimage.WithDevice(*device), zimage.WithThreads(*threads), zimage.WithLogger(log),
			zimage.WithMemoryBudget(budgetBytes), zimage.WithPrecision(prec)}
		if *warmup {
			opts = append(opts, zimage.WithWarmup(*resolution, *resolution))
		}
		p, err := zimage.Load(ctx, *model, opts...)
		var timeout time.Duration
		if err == nil {
			defer p.Close()
			err = registerLoRAs(p, loraArgs, log)
		}
		if err == nil {
			if *taskTimeout == 0 {
				timeout, err = autoTaskTimeout(ctx, p, srv.Config(), log)
			}
		}
		if err == nil {
			err = srv.SetGenerator(&pipelineGenerator{p}, timeout)
		}
		if err != nil {
			_ = srv.Shutdown(context.Background())
			fmt.Fprintf(stderr, "zimage serve: %v\n", err)
			return 1
		}
	}
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "zimage serve: %v\n", err)
		return 1
	}
	return 0
}
