package weights

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// GGUFTensorOut is one tensor to write with WriteGGUF: Write must write
// exactly DType.TensorBytes(Shape) bytes (blocks for the quantized types).
type GGUFTensorOut struct {
	Name  string
	DType DType
	Shape []int // row-major; written reversed as ggml's ne
	Write func(w io.Writer) error
}

// WriteGGUF writes a GGUF version 3 file: the metadata in order, the tensor
// infos, then each tensor's data streamed through its Write at offsets
// aligned to alignment (32 if 0; a general.alignment entry is added when it
// differs). The file is written under a temporary name and renamed into
// place when complete.
func WriteGGUF(path string, kvs []GGUFKV, tensors []GGUFTensorOut, alignment int) (err error) {
	if alignment == 0 {
		alignment = ggufDefaultAlignment
	}
	if alignment < 0 || alignment&(alignment-1) != 0 {
		return fmt.Errorf("weights: write %s: alignment %d is not a power of two", path, alignment)
	}
	hasAlign := false
	for _, kv := range kvs {
		if kv.Key == "general.alignment" {
			if a, ok := kv.Value.V.(uint32); !ok || int(a) != alignment {
				return fmt.Errorf("weights: write %s: general.alignment %v disagrees with alignment %d", path, kv.Value, alignment)
			}
			hasAlign = true
		}
	}
	if alignment != ggufDefaultAlignment && !hasAlign {
		kvs = append(append([]GGUFKV(nil), kvs...), GGUFKV{Key: "general.alignment", Value: GGUFValue{Type: GGUFUint32, V: uint32(alignment)}})
	}
	var hdr []byte
	hdr = append(hdr, ggufMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, 3)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(tensors)))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(kvs)))
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			return fmt.Errorf("weights: write %s: duplicate metadata key %q", path, kv.Key)
		}
		seen[kv.Key] = true
		hdr = appendGGUFString(hdr, kv.Key)
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(kv.Value.Type))
		if hdr, err = appendGGUFValue(hdr, kv.Value); err != nil {
			return fmt.Errorf("weights: write %s: metadata %q: %w", path, kv.Key, err)
		}
	}
	sizes := make([]int64, len(tensors))
	var off int64
	names := map[string]bool{}
	for i, t := range tensors {
		id, ok := GGMLTypeID(t.DType)
		if !ok {
			return fmt.Errorf("weights: write %s: tensor %q: dtype %s cannot be stored in GGUF", path, t.Name, t.DType)
		}
		if names[t.Name] || t.Name == "" {
			return fmt.Errorf("weights: write %s: tensor name %q empty or repeated", path, t.Name)
		}
		names[t.Name] = true
		size, ok := t.DType.TensorBytes(t.Shape)
		if !ok || len(t.Shape) > ggufMaxDims {
			return fmt.Errorf("weights: write %s: tensor %q: shape %v does not fit %s blocks", path, t.Name, t.Shape, t.DType)
		}
		sizes[i] = size
		hdr = appendGGUFString(hdr, t.Name)
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(t.Shape)))
		for j := len(t.Shape) - 1; j >= 0; j-- {
			hdr = binary.LittleEndian.AppendUint64(hdr, uint64(t.Shape[j]))
		}
		hdr = binary.LittleEndian.AppendUint32(hdr, id)
		hdr = binary.LittleEndian.AppendUint64(hdr, uint64(off))
		off += (size + int64(alignment) - 1) / int64(alignment) * int64(alignment)
	}
	for len(hdr)%alignment != 0 {
		hdr = append(hdr, 0)
	}

	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err = bw.Write(hdr); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	pad := make([]byte, alignment)
	for i, t := range tensors {
		cw := &countWriter{w: bw}
		if err = t.Write(cw); err != nil {
			return fmt.Errorf("weights: write %s: tensor %q: %w", path, t.Name, err)
		}
		if cw.n != sizes[i] {
			return fmt.Errorf("weights: write %s: tensor %q: wrote %d bytes, want %d", path, t.Name, cw.n, sizes[i])
		}
		if r := int(sizes[i] % int64(alignment)); r != 0 {
			if _, err = bw.Write(pad[:alignment-r]); err != nil {
				return fmt.Errorf("weights: write %s: %w", path, err)
			}
		}
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	return nil
}

func appendGGUFString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendGGUFValue encodes v (without its type tag).
func appendGGUFValue(b []byte, v GGUFValue) ([]byte, error) {
	bad := func() ([]byte, error) { return nil, fmt.Errorf("value %T does not match type %s", v.V, v.Type) }
	if v.Type == GGUFArray {
		b = binary.LittleEndian.AppendUint32(b, uint32(v.Elem))
		var elems []GGUFValue
		switch a := v.V.(type) {
		case []string:
			for _, s := range a {
				elems = append(elems, GGUFValue{Type: GGUFString, V: s})
			}
		case []int64:
			for _, x := range a {
				elems = append(elems, scalarOf(v.Elem, float64(x), x, uint64(x)))
			}
		case []uint64:
			for _, x := range a {
				elems = append(elems, scalarOf(v.Elem, float64(x), int64(x), x))
			}
		case []float64:
			for _, x := range a {
				elems = append(elems, scalarOf(v.Elem, x, int64(x), uint64(x)))
			}
		case []GGUFValue:
			elems = a
		default:
			return bad()
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(len(elems)))
		var err error
		for _, e := range elems {
			if e.Type != v.Elem {
				return nil, fmt.Errorf("array element of type %s in an array of %s", e.Type, v.Elem)
			}
			if b, err = appendGGUFValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	switch x := v.V.(type) {
	case string:
		if v.Type != GGUFString {
			return bad()
		}
		return appendGGUFString(b, x), nil
	case bool:
		if v.Type != GGUFBool {
			return bad()
		}
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case uint8:
		return append(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint16:
		return binary.LittleEndian.AppendUint16(b, x), nil
	case int16:
		return binary.LittleEndian.AppendUint16(b, uint16(x)), nil
	case uint32:
		return binary.LittleEndian.AppendUint32(b, x), nil
	case int32:
		return binary.LittleEndian.AppendUint32(b, uint32(x)), nil
	case float32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(x)), nil
	case uint64:
		return binary.LittleEndian.AppendUint64(b, x), nil
	case int64:
		return binary.LittleEndian.AppendUint64(b, uint64(x)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), nil
	}
	return bad()
}

// scalarOf builds a scalar value of type t from whichever form fits.
func scalarOf(t GGUFValueType, f float64, i int64, u uint64) GGUFValue {
	v := GGUFValue{Type: t}
	switch t {
	case GGUFUint8:
		v.V = uint8(u)
	case GGUFInt8:
		v.V = int8(i)
	case GGUFUint16:
		v.V = uint16(u)
	case GGUFInt16:
		v.V = int16(i)
	case GGUFUint32:
		v.V = uint32(u)
	case GGUFInt32:
		v.V = int32(i)
	case GGUFFloat32:
		v.V = float32(f)
	case GGUFUint64:
		v.V = u
	case GGUFInt64:
		v.V = i
	case GGUFFloat64:
		v.V = f
	case GGUFBool:
		v.V = u != 0
	}
	return v
}

// GGUFString, GGUFUint32Value etc. build metadata values.
func GGUFStr(s string) GGUFValue    { return GGUFValue{Type: GGUFString, V: s} }
func GGUFU32(x uint32) GGUFValue    { return GGUFValue{Type: GGUFUint32, V: x} }
func GGUFStrs(s []string) GGUFValue { return GGUFValue{Type: GGUFArray, Elem: GGUFString, V: s} }
