package weights

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"sync"
)

// GGUF (the llama.cpp/ggml container, versions 2 and 3): a little-endian
// header with metadata key/values and tensor infos, then the tensor data at
// an aligned offset. Every count, length and offset is checked against the
// file size before anything is allocated, so a corrupt file gives a
// *GGUFError naming the file (and tensor or key), never a panic or a huge
// allocation.

// GGUFError reports a malformed or unsupported GGUF file. Tensor and Key are
// empty when the problem is not tied to one tensor or metadata key.
type GGUFError struct {
	File   string
	Tensor string
	Key    string
	Reason string
}

func (e *GGUFError) Error() string {
	switch {
	case e.Tensor != "":
		return fmt.Sprintf("weights: %s: tensor %q: %s", e.File, e.Tensor, e.Reason)
	case e.Key != "":
		return fmt.Sprintf("weights: %s: metadata %q: %s", e.File, e.Key, e.Reason)
	}
	return fmt.Sprintf("weights: %s: %s", e.File, e.Reason)
}

const (
	ggufMagic            = "GGUF"
	ggufDefaultAlignment = 32
	ggufMaxDims          = 4 // GGML_MAX_DIMS
	ggufMaxArrayDepth    = 3
)

// ggmlTypes maps the ggml type ids zimage reads to DTypes.
var ggmlTypes = map[uint32]DType{0: F32, 1: F16, 30: BF16}

// ggmlOtherTypes names the ggml types that exist but are refused.
var ggmlOtherTypes = map[uint32]string{
	9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
	21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
	29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

func init() {
	for i, q := range quantInfos {
		ggmlTypes[q.ggmlID] = Q4_0 + DType(i)
	}
}

// GGMLTypeID returns the ggml type id of a dtype GGUF can store.
func GGMLTypeID(d DType) (uint32, bool) {
	for id, t := range ggmlTypes {
		if t == d {
			return id, true
		}
	}
	return 0, false
}

// GGUFKV is one metadata entry in file order.
type GGUFKV struct {
	Key   string
	Value GGUFValue
}

// ggufInfo is one tensor info; off is relative to the data area.
type ggufInfo struct {
	name  string
	dtype DType
	shape []int // row-major (ggml's ne reversed)
	off   int64
	size  int64
}

type ggufHeader struct {
	version   uint32
	kvs       []GGUFKV
	infos     []ggufInfo // in file order
	alignment int64
	dataOff   int64
}

// ggufParser reads the header from the mapped bytes with bounds checks.
type ggufParser struct {
	file string
	b    []byte
	pos  int64
	key  string // the key being parsed, for errors
}

func (p *ggufParser) fail(format string, args ...any) error {
	return &GGUFError{File: p.file, Key: p.key, Reason: fmt.Sprintf(format, args...)}
}

func (p *ggufParser) left() int64 { return int64(len(p.b)) - p.pos }

func (p *ggufParser) need(n int64, what string) error {
	if n < 0 || n > p.left() {
		return p.fail("truncated file: %s needs %d bytes at offset %d, %d left", what, n, p.pos, p.left())
	}
	return nil
}

func (p *ggufParser) u32(what string) (uint32, error) {
	if err := p.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(p.b[p.pos:])
	p.pos += 4
	return v, nil
}

func (p *ggufParser) u64(what string) (uint64, error) {
	if err := p.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(p.b[p.pos:])
	p.pos += 8
	return v, nil
}

func (p *ggufParser) str(what string) (string, error) {
	n, err := p.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(p.left()) {
		return "", p.fail("truncated file: %s of %d bytes at offset %d, %d left", what, n, p.pos, p.left())
	}
	s := string(p.b[p.pos : p.pos+int64(n)])
	p.pos += int64(n)
	return s, nil
}

// value reads one value of type t; depth counts array nesting.
func (p *ggufParser) value(t GGUFValueType, depth int) (GGUFValue, error) {
	if t >= ggufTypeEnd {
		return GGUFValue{}, p.fail("unknown value type %d at offset %d", uint32(t), p.pos-4)
	}
	v := GGUFValue{Type: t}
	if sz := ggufScalarSize[t]; sz > 0 {
		if err := p.need(int64(sz), t.String()+" value"); err != nil {
			return v, err
		}
		b := p.b[p.pos:]
		switch t {
		case GGUFUint8:
			v.V = b[0]
		case GGUFInt8:
			v.V = int8(b[0])
		case GGUFUint16:
			v.V = binary.LittleEndian.Uint16(b)
		case GGUFInt16:
			v.V = int16(binary.LittleEndian.Uint16(b))
		case GGUFUint32:
			v.V = binary.LittleEndian.Uint32(b)
		case GGUFInt32:
			v.V = int32(binary.LittleEndian.Uint32(b))
		case GGUFFloat32:
			v.V = math.Float32frombits(binary.LittleEndian.Uint32(b))
		case GGUFBool:
			if b[0] > 1 {
				return v, p.fail("bool value %d at offset %d", b[0], p.pos)
			}
			v.V = b[0] == 1
		case GGUFUint64:
			v.V = binary.LittleEndian.Uint64(b)
		case GGUFInt64:
			v.V = int64(binary.LittleEndian.Uint64(b))
		case GGUFFloat64:
			v.V = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
		p.pos += int64(sz)
		return v, nil
	}
	if t == GGUFString {
		s, err := p.str("string")
		v.V = s
		return v, err
	}
	// Array: element type, count, elements.
	if depth >= ggufMaxArrayDepth {
		return v, p.fail("arrays nested deeper than %d", ggufMaxArrayDepth)
	}
	et, err := p.u32("array element type")
	if err != nil {
		return v, err
	}
	v.Elem = GGUFValueType(et)
	if v.Elem >= ggufTypeEnd {
		return v, p.fail("unknown array element type %d", et)
	}
	n, err := p.u64("array length")
	if err != nil {
		return v, err
	}
	minSize := int64(ggufScalarSize[v.Elem])
	switch v.Elem {
	case GGUFString:
		minSize = 8
	case GGUFArray:
		minSize = 12
	}
	if n > uint64(p.left()/minSize) {
		return v, p.fail("array of %d %s elements does not fit in the %d bytes left (truncated or corrupt)", n, v.Elem, p.left())
	}
	switch v.Elem {
	case GGUFString:
		a := make([]string, n)
		for i := range a {
			if a[i], err = p.str("string array element"); err != nil {
				return v, err
			}
		}
		v.V = a
	case GGUFArray:
		a := make([]GGUFValue, n)
		for i := range a {
			if a[i], err = p.value(GGUFArray, depth+1); err != nil {
				return v, err
			}
		}
		v.V = a
	case GGUFFloat32, GGUFFloat64:
		a := make([]float64, n)
		for i := range a {
			e, _ := p.value(v.Elem, depth+1) // size checked above
			a[i], _ = e.Float()
		}
		v.V = a
	case GGUFUint8, GGUFUint16, GGUFUint32, GGUFUint64:
		a := make([]uint64, n)
		for i := range a {
			e, _ := p.value(v.Elem, depth+1)
			a[i], _ = e.Uint()
		}
		v.V = a
	case GGUFBool:
		a := make([]GGUFValue, n)
		for i := range a {
			if a[i], err = p.value(GGUFBool, depth+1); err != nil {
				return v, err
			}
		}
		v.V = a
	default: // signed integers
		a := make([]int64, n)
		for i := range a {
			e, _ := p.value(v.Elem, depth+1)
			switch x := e.V.(type) {
			case int8:
				a[i] = int64(x)
			case int16:
				a[i] = int64(x)
			case int32:
				a[i] = int64(x)
			case int64:
				a[i] = x
			}
		}
		v.V = a
	}
	return v, nil
}

// parseGGUF parses and validates the GGUF file held in b.
func parseGGUF(file string, b []byte) (*ggufHeader, error) {
	p := &ggufParser{file: file, b: b}
	if len(b) < 24 {
		return nil, p.fail("file is %d bytes, too short for a GGUF header (truncated file?)", len(b))
	}
	switch magic := string(b[:4]); magic {
	case ggufMagic:
	case "FUGG":
		return nil, p.fail("big-endian GGUF files are not supported")
	default:
		return nil, p.fail("not a GGUF file (magic %q)", magic)
	}
	p.pos = 4
	h := &ggufHeader{alignment: ggufDefaultAlignment}
	h.version, _ = p.u32("version")
	switch {
	case h.version == 2 || h.version == 3:
	case h.version&0xffff == 0 && h.version != 0:
		return nil, p.fail("big-endian GGUF files are not supported (version field %#x)", h.version)
	case h.version == 1:
		return nil, p.fail("GGUF version 1 is not supported (only 2 and 3)")
	default:
		return nil, p.fail("unsupported GGUF version %d (only 2 and 3)", h.version)
	}
	nt, _ := p.u64("tensor count")
	nkv, _ := p.u64("metadata count")
	// Each tensor info takes at least 24 bytes, each key/value at least 13.
	if nt > uint64(p.left()/24) {
		return nil, p.fail("tensor count %d cannot fit in a %d-byte file", nt, len(b))
	}
	if nkv > uint64(p.left()/13) {
		return nil, p.fail("metadata count %d cannot fit in a %d-byte file", nkv, len(b))
	}
	seenKey := make(map[string]bool, nkv)
	h.kvs = make([]GGUFKV, 0, nkv)
	for range nkv {
		p.key = ""
		k, err := p.str("metadata key")
		if err != nil {
			return nil, err
		}
		p.key = k
		if k == "" {
			return nil, p.fail("empty metadata key")
		}
		if seenKey[k] {
			return nil, p.fail("duplicate metadata key")
		}
		seenKey[k] = true
		t, err := p.u32("value type")
		if err != nil {
			return nil, err
		}
		v, err := p.value(GGUFValueType(t), 0)
		if err != nil {
			return nil, err
		}
		if k == "general.alignment" {
			a, ok := v.V.(uint32)
			if !ok {
				return nil, p.fail("alignment has type %s, want UINT32", v.Type)
			}
			if a == 0 || a&(a-1) != 0 {
				return nil, p.fail("alignment %d is not a power of two", a)
			}
			h.alignment = int64(a)
		}
		h.kvs = append(h.kvs, GGUFKV{Key: k, Value: v})
	}
	p.key = ""
	seen := make(map[string]bool, nt)
	h.infos = make([]ggufInfo, 0, nt)
	for range nt {
		name, err := p.str("tensor name")
		if err != nil {
			return nil, err
		}
		tfail := func(format string, args ...any) error {
			return &GGUFError{File: file, Tensor: name, Reason: fmt.Sprintf(format, args...)}
		}
		if name == "" {
			return nil, p.fail("empty tensor name at offset %d", p.pos)
		}
		if seen[name] {
			return nil, tfail("duplicate tensor name")
		}
		seen[name] = true
		nd, err := p.u32("tensor dimension count")
		if err != nil {
			return nil, err
		}
		if nd > ggufMaxDims {
			return nil, tfail("%d dimensions (at most %d)", nd, ggufMaxDims)
		}
		shape := make([]int, nd)
		elems := uint64(1)
		for i := range int(nd) {
			d, err := p.u64("tensor dimension")
			if err != nil {
				return nil, err
			}
			if d > 1<<40 || d != 0 && elems > (1<<50)/d {
				return nil, tfail("absurd dimension %d", d)
			}
			elems *= d
			shape[int(nd)-1-i] = int(d) // ggml's ne[0] is the row length
		}
		tid, err := p.u32("tensor type")
		if err != nil {
			return nil, err
		}
		off, err := p.u64("tensor offset")
		if err != nil {
			return nil, err
		}
		dt, ok := ggmlTypes[tid]
		if !ok {
			if n, known := ggmlOtherTypes[tid]; known {
				return nil, tfail("unsupported tensor type %s (ggml type %d); zimage reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K", n, tid)
			}
			return nil, tfail("unknown tensor type %d", tid)
		}
		size, ok := dt.TensorBytes(shape)
		if !ok {
			return nil, tfail("row length %d is not a multiple of the %s block size %d", rowLen(shape), dt, dt.BlockSize())
		}
		if off > 1<<62 {
			return nil, tfail("absurd data offset %d", off)
		}
		h.infos = append(h.infos, ggufInfo{name: name, dtype: dt, shape: shape, off: int64(off), size: size})
	}
	h.dataOff = (p.pos + h.alignment - 1) / h.alignment * h.alignment
	dataLen := int64(len(b)) - h.dataOff
	if len(h.infos) > 0 && dataLen < 0 {
		return nil, p.fail("truncated file: data area would start at %d, file is %d bytes", h.dataOff, len(b))
	}
	// Offsets: aligned, inside the file, not overlapping.
	order := make([]int, len(h.infos))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, c int) bool { return h.infos[order[a]].off < h.infos[order[c]].off })
	end := int64(0)
	prev := ""
	for _, i := range order {
		t := h.infos[i]
		if t.off%h.alignment != 0 {
			return nil, &GGUFError{File: file, Tensor: t.name, Reason: fmt.Sprintf("data offset %d is not a multiple of the alignment %d", t.off, h.alignment)}
		}
		if t.off+t.size > dataLen {
			return nil, &GGUFError{File: file, Tensor: t.name, Reason: fmt.Sprintf("data [%d, %d) extends past the end of the file (data area holds %d bytes; truncated file?)", t.off, t.off+t.size, max(dataLen, 0))}
		}
		if t.off < end {
			return nil, &GGUFError{File: file, Tensor: t.name, Reason: fmt.Sprintf("data at %d overlaps tensor %q (ends at %d)", t.off, prev, end)}
		}
		if t.size > 0 {
			end, prev = t.off+t.size, t.name
		}
	}
	return h, nil
}

func rowLen(shape []int) int {
	if len(shape) == 0 {
		return 1
	}
	return shape[len(shape)-1]
}

// GGUFFile is one GGUF file opened read-only and memory-mapped (read into
// memory where mmap is unavailable). Tensor data are zero-copy views.
type GGUFFile struct {
	path    string
	hdr     *ggufHeader
	mapping []byte
	tensors map[string]*Tensor
	names   []string
	meta    map[string]GGUFValue

	closeOnce sync.Once
	closeErr  error
}

// IsGGUF reports whether the file at path starts with the GGUF magic.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	_, err = f.ReadAt(m[:], 0)
	return err == nil && bytes.Equal(m[:], []byte(ggufMagic))
}

// OpenGGUF opens and validates a GGUF file.
func OpenGGUF(path string) (*GGUFFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if st.IsDir() {
		return nil, &GGUFError{File: path, Reason: "is a directory, not a GGUF file"}
	}
	if st.Size() < 24 {
		return nil, &GGUFError{File: path, Reason: fmt.Sprintf("file is %d bytes, too short for a GGUF header (truncated file?)", st.Size())}
	}
	all, mapping, err := mapData(f, st.Size(), 0)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	hdr, err := parseGGUF(path, all)
	if err != nil {
		if mapping != nil {
			_ = unmap(mapping)
		}
		return nil, err
	}
	registerMapping(mapping, path) // a fault in it becomes a FaultError naming the file
	g := &GGUFFile{path: path, hdr: hdr, mapping: mapping}
	g.tensors = make(map[string]*Tensor, len(hdr.infos))
	g.names = make([]string, len(hdr.infos))
	for i, t := range hdr.infos {
		g.names[i] = t.name
		lo := hdr.dataOff + t.off
		g.tensors[t.name] = &Tensor{Name: t.name, DType: t.dtype, Shape: t.shape, Data: all[lo : lo+t.size : lo+t.size], File: path}
	}
	g.meta = make(map[string]GGUFValue, len(hdr.kvs))
	for _, kv := range hdr.kvs {
		g.meta[kv.Key] = kv.Value
	}
	return g, nil
}

// Path returns the path the file was opened with.
func (g *GGUFFile) Path() string { return g.path }

// Version returns the GGUF version (2 or 3).
func (g *GGUFFile) Version() int { return int(g.hdr.version) }

// Alignment returns the data alignment (general.alignment or 32).
func (g *GGUFFile) Alignment() int { return int(g.hdr.alignment) }

// DataOffset returns the file offset of the tensor data area.
func (g *GGUFFile) DataOffset() int64 { return g.hdr.dataOff }

// Names returns the tensor names in file order.
func (g *GGUFFile) Names() []string { return slices.Clone(g.names) }

// Len returns the number of tensors.
func (g *GGUFFile) Len() int { return len(g.names) }

// Tensor returns the named tensor (shared: treat as read-only). Its Shape is
// row-major (ggml's dimensions reversed) and Data holds the stored bytes,
// blocks for the quantized types.
func (g *GGUFFile) Tensor(name string) (*Tensor, bool) {
	t, ok := g.tensors[name]
	return t, ok
}

// Metadata returns the metadata entries in file order.
func (g *GGUFFile) Metadata() []GGUFKV { return slices.Clone(g.hdr.kvs) }

// Meta returns one metadata value.
func (g *GGUFFile) Meta(key string) (GGUFValue, bool) {
	v, ok := g.meta[key]
	return v, ok
}

// MetaString returns a string metadata value ("" if absent or not a string).
func (g *GGUFFile) MetaString(key string) string {
	s, _ := g.meta[key].Str()
	return s
}

// Close releases the mapping; tensor data must not be used afterwards.
func (g *GGUFFile) Close() error {
	g.closeOnce.Do(func() {
		if g.mapping != nil {
			unregisterMapping(g.mapping)
			g.closeErr = unmap(g.mapping)
		}
		g.mapping = nil
	})
	if g.closeErr != nil {
		return fmt.Errorf("weights: %s: %w", g.path, g.closeErr)
	}
	return nil
}
