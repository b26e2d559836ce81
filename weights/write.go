package weights

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// outTensor is one tensor to be written: its header fields and a function
// that streams exactly size bytes of little-endian data.
type outTensor struct {
	name  string
	dtype DType
	shape []int
	size  int64
	write func(w io.Writer) error
}

// WriteFile writes tensors, in the given order, and meta (may be nil) as a
// safetensors file at path. It writes path+".tmp" and renames it into place,
// so readers never see a partial file. Each tensor's Data must hold exactly
// NumElements*DType.Size() bytes; names must be unique and non-empty.
func WriteFile(path string, tensors []*Tensor, meta map[string]string) error {
	out := make([]outTensor, len(tensors))
	for i, t := range tensors {
		if t == nil {
			return fmt.Errorf("weights: write %s: tensor %d is nil", path, i)
		}
		want, ok := byteSize(t.DType, t.Shape)
		if !ok {
			return fmt.Errorf("weights: write %s: tensor %q: bad dtype %s or shape %v", path, t.Name, t.DType, t.Shape)
		}
		if int64(len(t.Data)) != want {
			return fmt.Errorf("weights: write %s: tensor %q: %d data bytes, shape %v of %s needs %d", path, t.Name, len(t.Data), t.Shape, t.DType, want)
		}
		data := t.Data
		out[i] = outTensor{name: t.Name, dtype: t.DType, shape: t.Shape, size: want,
			write: func(w io.Writer) error { _, err := w.Write(data); return err }}
	}
	return writeSafetensors(path, out, meta)
}

// byteSize returns the data size of a tensor, false for an invalid dtype,
// a negative dimension or an overflow.
func byteSize(dt DType, shape []int) (int64, bool) {
	if dt.Size() == 0 {
		return 0, false
	}
	n := int64(dt.Size())
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > (1<<62)/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// headerEntry is the JSON form of one tensor's header entry.
type headerEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// encodeHeader builds the JSON header for tensors laid out back to back in
// the given order, padded with spaces to a multiple of 8 bytes (so the data
// area stays aligned, as the reference writer does).
func encodeHeader(tensors []outTensor, meta map[string]string) ([]byte, error) {
	// Build the object by hand to keep the tensor order (encoding/json sorts
	// map keys, which would also be valid but hides the layout).
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(meta) > 0 {
		m, err := json.Marshal(meta)
		if err != nil {
			return nil, err
		}
		b.WriteString(`"__metadata__":`)
		b.Write(m)
		first = false
	}
	seen := make(map[string]bool, len(tensors))
	var off int64
	for _, t := range tensors {
		if t.name == "" || t.name == metadataKey {
			return nil, fmt.Errorf("invalid tensor name %q", t.name)
		}
		if seen[t.name] {
			return nil, fmt.Errorf("tensor %q: duplicate name", t.name)
		}
		seen[t.name] = true
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(t.name)
		shape := t.shape
		if shape == nil {
			shape = []int{}
		}
		v, err := json.Marshal(headerEntry{DType: t.dtype.String(), Shape: shape, DataOffsets: [2]int64{off, off + t.size}})
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
		off += t.size
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), nil
}

// writeSafetensors streams tensors into path+".tmp", syncs it and renames it
// to path. Memory use is the header plus a 1 MiB write buffer plus whatever
// the tensors' write functions hold.
func writeSafetensors(path string, tensors []outTensor, meta map[string]string) (err error) {
	hdr, err := encodeHeader(tensors, meta)
	if err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if len(hdr) > MaxHeaderSize {
		return fmt.Errorf("weights: write %s: header of %d bytes exceeds the %d-byte limit", path, len(hdr), MaxHeaderSize)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	var n [8]byte
	for i := range 8 {
		n[i] = byte(uint64(len(hdr)) >> (8 * i))
	}
	w.Write(n[:])
	w.Write(hdr)
	for _, t := range tensors {
		cw := &countWriter{w: w}
		if err := t.write(cw); err != nil {
			return fmt.Errorf("weights: write %s: tensor %q: %w", path, t.name, err)
		}
		if cw.n != t.size {
			return fmt.Errorf("weights: write %s: tensor %q: wrote %d bytes, want %d", path, t.name, cw.n, t.size)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// syncDir makes a rename durable where the platform allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
