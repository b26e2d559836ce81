package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// MaxHeaderSize bounds the JSON header of a safetensors file (the reference
// implementation uses the same 100 MB limit). Larger length prefixes are
// rejected before anything is allocated.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header entry holding string→string metadata.
const metadataKey = "__metadata__"

// entry is one validated header entry; begin/end are relative to the data area.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int64
}

// header is a parsed and validated safetensors header.
type header struct {
	entries []entry // sorted by begin, then name
	meta    map[string]string
	dataOff int64 // offset of the data area in the file (8 + header length)
}

// readHeader reads and validates the header of a safetensors file of the
// given size. It reads only the length prefix and the header bytes (and, on
// a file-level error, the first bytes again to name the file's real format).
func readHeader(file string, r io.ReaderAt, size int64) (*header, error) {
	h, err := readHeaderBytes(file, r, size)
	var he *HeaderError
	if err != nil && errors.As(err, &he) {
		return nil, sniffError(he, r, size)
	}
	return h, err
}

func readHeaderBytes(file string, r io.ReaderAt, size int64) (*header, error) {
	if size < 8 {
		return nil, &HeaderError{File: file, Reason: fmt.Sprintf("file is %d bytes, too short for the 8-byte header length", size)}
	}
	var prefix [8]byte
	if _, err := r.ReadAt(prefix[:], 0); err != nil {
		return nil, &HeaderError{File: file, Reason: "reading header length: " + err.Error()}
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, &HeaderError{File: file, Reason: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)}
	}
	if int64(n) > size-8 {
		return nil, &HeaderError{File: file, Reason: fmt.Sprintf("header length %d exceeds the file size %d (truncated file?)", n, size)}
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, &HeaderError{File: file, Reason: "reading header: " + err.Error()}
	}
	h, err := parseHeader(file, buf, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	h.dataOff = 8 + int64(n)
	return h, nil
}

// parseFileBytes parses the header of a whole safetensors file held in memory.
func parseFileBytes(file string, b []byte) (*header, error) {
	return readHeader(file, bytes.NewReader(b), int64(len(b)))
}

// rawEntry mirrors one header entry; pointers tell absent keys from zeros.
type rawEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader validates the JSON header hdr of a file whose data area holds
// dataLen bytes: an object of objects (plus an optional "__metadata__" object
// of strings), no duplicate names, known dtypes, non-negative dims, offsets
// inside the data area whose span matches shape×dtype size exactly, and no two
// tensors overlapping. Gaps between tensors are allowed.
func parseHeader(file string, hdr []byte, dataLen int64) (*header, error) {
	bad := func(tensor, format string, args ...any) error {
		return &HeaderError{File: file, Tensor: tensor, Reason: fmt.Sprintf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, bad("", "header is not valid JSON: %s", syntaxReason(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, bad("", "header is not a JSON object")
	}
	h := &header{}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("", "header is not valid JSON: %s", syntaxReason(err))
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad("", "header is not valid JSON: non-string key")
		}
		if seen[name] {
			return nil, bad(name, "duplicate entry in header")
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad(name, "header is not valid JSON: %s", syntaxReason(err))
		}
		if name == metadataKey {
			if err := json.Unmarshal(raw, &h.meta); err != nil {
				return nil, bad("", "__metadata__ is not an object of strings: %v", jsonReason(err))
			}
			continue
		}
		if name == "" {
			return nil, bad(name, "empty tensor name")
		}
		e, err := parseEntry(name, raw, dataLen)
		if err != nil {
			return nil, bad(name, "%s", err.Error())
		}
		h.entries = append(h.entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, bad("", "header is not valid JSON: %s", syntaxReason(err))
	}
	// The writer may pad the header with spaces; anything else is garbage.
	if len(bytes.TrimRight(hdr[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, bad("", "trailing data after the header JSON object")
	}
	slices.SortFunc(h.entries, func(a, b entry) int {
		if a.begin != b.begin {
			if a.begin < b.begin {
				return -1
			}
			return 1
		}
		if a.end != b.end { // zero-length tensors first at equal begin
			if a.end < b.end {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	for i := 1; i < len(h.entries); i++ {
		prev, cur := h.entries[i-1], h.entries[i]
		if cur.begin < prev.end {
			return nil, bad(cur.name, "data [%d, %d) overlaps tensor %q at [%d, %d)", cur.begin, cur.end, prev.name, prev.begin, prev.end)
		}
	}
	return h, nil
}

// parseEntry validates one tensor entry.
func parseEntry(name string, raw json.RawMessage, dataLen int64) (entry, error) {
	var r rawEntry
	if len(raw) == 0 || raw[0] != '{' {
		return entry{}, fmt.Errorf("entry is not a JSON object")
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return entry{}, fmt.Errorf("bad entry: %s", jsonReason(err))
	}
	switch {
	case r.DType == nil:
		return entry{}, fmt.Errorf(`missing "dtype"`)
	case r.Shape == nil:
		return entry{}, fmt.Errorf(`missing "shape"`)
	case r.DataOffsets == nil:
		return entry{}, fmt.Errorf(`missing "data_offsets"`)
	}
	dt, ok := ParseDType(*r.DType)
	if !ok {
		return entry{}, fmt.Errorf("unknown dtype %q", *r.DType)
	}
	offs := *r.DataOffsets
	if len(offs) != 2 {
		return entry{}, fmt.Errorf("data_offsets has %d values, want 2", len(offs))
	}
	begin, end := offs[0], offs[1]
	if begin < 0 || end < 0 {
		return entry{}, fmt.Errorf("negative data offset [%d, %d]", begin, end)
	}
	if begin > end {
		return entry{}, fmt.Errorf("data_offsets begin %d > end %d", begin, end)
	}
	if end > dataLen {
		return entry{}, fmt.Errorf("data [%d, %d) extends past the data area of %d bytes (truncated file?)", begin, end, dataLen)
	}
	shape := make([]int, len(*r.Shape))
	// numel*size is computed in uint64 with overflow checks: a forged shape
	// must not wrap around to match the span.
	total := uint64(dt.Size())
	overflow := false
	for i, d := range *r.Shape {
		if d < 0 {
			return entry{}, fmt.Errorf("negative dimension %d in shape %v", d, *r.Shape)
		}
		if uint64(d) > math.MaxInt {
			return entry{}, fmt.Errorf("dimension %d too large", d)
		}
		shape[i] = int(d)
		hi, lo := bits.Mul64(total, uint64(d))
		if hi != 0 {
			overflow = true
		}
		total = lo
	}
	if overflow || total != uint64(end-begin) {
		return entry{}, fmt.Errorf("shape %v of %s needs %s bytes, data_offsets span %d", shape, dt, byteCount(overflow, total), end-begin)
	}
	return entry{name: name, dtype: dt, shape: shape, begin: begin, end: end}, nil
}

func byteCount(overflow bool, n uint64) string {
	if overflow {
		return "more than 2^64"
	}
	return fmt.Sprint(n)
}

// syntaxReason names a premature end of the JSON plainly (the decoder says
// just "EOF").
func syntaxReason(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON"
	}
	return err.Error()
}

// jsonReason shortens encoding/json errors to the useful part.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q: cannot use JSON %s as %s", te.Field, te.Value, te.Type)
		}
		return fmt.Sprintf("cannot use JSON %s as %s", te.Value, te.Type)
	}
	return err.Error()
}
