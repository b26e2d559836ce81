// Package weights opens Z-Image checkpoints: safetensors files (memory-mapped,
// validated), sharded sets with a *.safetensors.index.json, and diffusers model
// directories with their configs. It also converts between float dtypes and
// writes safetensors files.
//
// Tensor data are zero-copy views of read-only mappings: they stay valid until
// the File or Set they came from is closed, and must never be written to.
package weights
