package zimage

import (
	"log/slog"

	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage/compute"
)

// Option configures Load.
type Option func(*options)

type options struct {
	device  string
	backend compute.Backend
	logger  *slog.Logger
	threads int
	budget  uint64     // WithMemoryBudget (residency.go)
	loras   []loraSpec // WithLoRA (lora.go)
	prec    Precision  // WithPrecision (precision.go)

	// Model references (model.go).
	noPull     bool
	onDownload func(hub.Progress)
	hub        *hub.Client
	single     singleFiles
	keepF32    bool
	convertDir string

	controlnet string // WithControlNet (controlnet.go)

	selfTest SelfTestMode // WithSelfTest (selftest.go)

	warm [2]int // WithWarmup width, height (warmup.go)

	packBudget *int64 // WithPackBudget (prepack.go); nil: the CPU backend's default
}

// WithDevice selects the compute device: "cpu", "cuda" (or "cuda:N" for
// device N) or "auto": the CUDA GPU when one is usable, else the CPU, with
// an Info log line saying which and why. The default is "auto". An unknown
// name, or "cuda" on a machine without a usable GPU, makes Load fail with a
// *DeviceError (errors.Is(err, ErrNoDevice) when no GPU or driver is
// present). See device.go.
func WithDevice(name string) Option { return func(o *options) { o.device = name } }

// WithBackend runs the pipeline on b instead of a device chosen by name. The
// caller keeps ownership of b (Close does not close it).
func WithBackend(b compute.Backend) Option { return func(o *options) { o.backend = b } }

// WithLogger sends stage timings and residency decisions to l (debug and
// info levels). The default discards them.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithThreads bounds the CPU threads the CPU backend uses (0 = all cores).
func WithThreads(n int) Option { return func(o *options) { o.threads = n } }

// WithPrecision selects the CPU backend's arithmetic for matrix products:
// Float32 (default, exact) or BFloat16 (see Precision). The CUDA backend
// and a backend passed with WithBackend are unaffected.
func WithPrecision(p Precision) Option { return func(o *options) { o.prec = p } }

// WithPull says whether Load may download a model named by a repository id
// that the Hugging Face cache lacks (default true). With false, or with
// HF_HUB_OFFLINE=1, only the cache is used.
func WithPull(pull bool) Option { return func(o *options) { o.noPull = !pull } }

// WithDownloadProgress receives download progress when Load pulls a model.
func WithDownloadProgress(fn func(hub.Progress)) Option {
	return func(o *options) { o.onDownload = fn }
}

// WithHub makes Load use c (endpoint, cache directory, token, offline mode)
// for repository ids instead of a client configured from the environment
// (hub.FromEnv). c is not modified.
func WithHub(c *hub.Client) Option { return func(o *options) { o.hub = c } }

// WithSingleFiles takes component weights from single checkpoint files, as
// ComfyUI users have them: transformer (z_image_turbo_bf16.safetensors, or
// an all-in-one checkpoint that also holds the text encoder and VAE),
// textEncoder (qwen_3_4b.safetensors), vae (ae.safetensors) and tokenizer (a
// tokenizer directory or tokenizer.json). Empty names come from Load's
// model reference; when every weight and the tokenizer are given and the
// reference is "", no model directory is needed and the Z-Image-Turbo
// configs are used. Otherwise the reference supplies the configs (and the
// missing parts); for a repository id only those are downloaded.
func WithSingleFiles(transformer, textEncoder, vae, tokenizer string) Option {
	return func(o *options) {
		o.single = singleFiles{transformer: transformer, textEncoder: textEncoder, vae: vae, tokenizer: tokenizer}
	}
}

// WithF32Conversion says whether Load converts a transformer or text
// encoder stored in float32 (the Hugging Face transformer of Z-Image-Turbo
// is: 24.6 GB) to bfloat16, the dtype the reference pipeline runs in
// (default true). The conversion is done once, tensor by tensor with a few
// MiB of memory, into a cache (see WithConvertCache) and reused; it is
// logged at Info level.
func WithF32Conversion(convert bool) Option { return func(o *options) { o.keepF32 = !convert } }

// WithConvertCache sets where converted weights are written. The default is
// a zimage-converted folder inside the hub cache's repository folder for
// repository ids, and $XDG_CACHE_HOME/zimage/converted (os.UserCacheDir)
// otherwise.
func WithConvertCache(dir string) Option { return func(o *options) { o.convertDir = dir } }

type singleFiles struct {
	transformer, textEncoder, vae, tokenizer string
}
