package weights

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestConvertSmall(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.safetensors")
	vals := []float32{1, -2.5, 1.00390625, 3.4e38, float32(math.Inf(-1)), 1e-40, 65520}
	f16 := make([]byte, 2*len(vals))
	EncodeF16(f16, vals)
	ids := &Tensor{Name: "ids", DType: I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}}
	if err := WriteFile(src, []*Tensor{f32Tensor("w", vals...), ids, {Name: "h", DType: F16, Shape: []int{len(vals)}, Data: f16}}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []DType{BF16, F16, F32} {
		dst := filepath.Join(dir, to.String()+".safetensors")
		if err := Convert(src, dst, to); err != nil {
			t.Fatal(err)
		}
		f, err := OpenFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Names(); !slices.Equal(got, []string{"h", "ids", "w"}) {
			t.Errorf("%s: names %v (want name order)", to, got)
		}
		if f.Metadata()["format"] != "pt" {
			t.Errorf("%s: metadata lost: %v", to, f.Metadata())
		}
		gotIDs, _ := f.Tensor("ids")
		if gotIDs.DType != I64 || string(gotIDs.Data) != string(ids.Data) {
			t.Errorf("%s: integer tensor changed", to)
		}
		w, _ := f.Tensor("w")
		if w.DType != to || !slices.Equal(w.Shape, []int{len(vals)}) {
			t.Errorf("%s: w is %s%v", to, w.DType, w.Shape)
		}
		for i, v := range vals {
			var want []byte
			switch to {
			case BF16:
				want = binary.LittleEndian.AppendUint16(nil, F32ToBF16(v))
			case F16:
				want = binary.LittleEndian.AppendUint16(nil, F32ToF16(v))
			case F32:
				want = binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))
			}
			if got := w.Data[i*to.Size() : (i+1)*to.Size()]; string(got) != string(want) {
				t.Errorf("%s: w[%d]=%v: %x, want %x", to, i, v, got, want)
			}
		}
		// F16 → F32 is exact, F16 → F16 a copy.
		h, _ := f.Tensor("h")
		hv, _ := h.Float32()
		for i, v := range hv {
			want := F16ToF32(binary.LittleEndian.Uint16(f16[2*i:]))
			if to == BF16 {
				want = BF16ToF32(F32ToBF16(want))
			}
			if math.Float32bits(v) != math.Float32bits(want) {
				t.Errorf("%s: h[%d] = %v, want %v", to, i, v, want)
			}
		}
		f.Close()
	}
	var de *DTypeError
	if err := Convert(src, filepath.Join(dir, "x.safetensors"), I8); !errors.As(err, &de) {
		t.Errorf("convert to I8: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "cancelled.safetensors")
	if err := Convert(src, out, BF16, WithContext(ctx)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Error("cancelled convert left its temporary file")
	}
}

func TestConvertShardedTinyTransformer(t *testing.T) {
	src := filepath.Join(tinyModel(t), "transformer")
	dir := t.TempDir()
	dst := filepath.Join(dir, "diffusion_pytorch_model.safetensors")
	if err := Convert(src, dst, F32, WithShardSize(12<<20)); err != nil {
		t.Fatal(err)
	}
	in, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := Open(dir) // picks the index written next to the shards
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if out.Index() == "" || len(out.Files()) < 2 {
		t.Fatalf("want a sharded output, got files %v", out.Files())
	}
	if !slices.Equal(in.Names(), out.Names()) {
		t.Fatal("names differ")
	}
	var total int64
	for _, n := range in.Names() {
		a, _ := in.Tensor(n)
		b, _ := out.Tensor(n)
		total += int64(len(b.Data))
		av, _ := a.Float32()
		bv, _ := b.Float32()
		if b.DType != F32 || !slices.Equal(av, bv) {
			t.Fatalf("%s: BF16→F32 not exact", n)
		}
	}
	if out.IndexTotalSize() != total {
		t.Errorf("index total_size %d, data %d", out.IndexTotalSize(), total)
	}
	for _, f := range out.Files() {
		if st, _ := os.Stat(f); st.Size() > 13<<20 {
			t.Errorf("%s: %d bytes exceeds the shard size", f, st.Size())
		}
	}
	// And back to BF16 in one file: bit-identical to the original.
	back := filepath.Join(t.TempDir(), "one.safetensors")
	if err := Convert(out.Index(), back, BF16); err != nil {
		t.Fatal(err)
	}
	one, err := Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	for _, n := range in.Names() {
		a, _ := in.Tensor(n)
		b, _ := one.Tensor(n)
		if string(a.Data) != string(b.Data) {
			t.Fatalf("%s: round trip changed the bytes", n)
		}
	}
}

// writeBigF32 writes a safetensors file of n float32 tensors of size bytes
// each, streaming a deterministic pattern so the test itself stays small.
func writeBigF32(t *testing.T, path string, n int, size int64) {
	t.Helper()
	var out []outTensor
	for i := range n {
		elems := size / 4
		out = append(out, outTensor{name: "t" + string(rune('a'+i)), dtype: F32, shape: []int{int(elems / 1024), 1024}, size: size,
			write: func(w io.Writer) error {
				buf := make([]byte, 1<<16)
				for off := int64(0); off < elems; off += int64(len(buf) / 4) {
					for j := range len(buf) / 4 {
						binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(bigPattern(i, off+int64(j))))
					}
					if _, err := w.Write(buf); err != nil {
						return err
					}
				}
				return nil
			}})
	}
	if err := writeSafetensors(path, out, nil); err != nil {
		t.Fatal(err)
	}
}

func bigPattern(tensor int, i int64) float32 {
	return float32(i%65521)*1.0001 - float32(tensor)*1000.5
}

// Convert must stream: converting a 256 MiB file allocates a few MiB in
// total, not the file (or a tensor) size.
func TestConvertBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and converts a 256 MiB file")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "big.safetensors")
	const perTensor = 64 << 20
	writeBigF32(t, src, 4, perTensor)
	dst := filepath.Join(dir, "big.bf16.safetensors")

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := Convert(src, dst, BF16); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("converted 256 MiB F32 → BF16 with %.1f MiB allocated in total (heap in use after: %.1f MiB)",
		float64(alloc)/(1<<20), float64(after.HeapInuse)/(1<<20))
	if alloc > 16<<20 {
		t.Errorf("Convert allocated %d bytes for a 256 MiB file; want < 16 MiB (streaming)", alloc)
	}
	f, err := OpenFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, _ := os.Stat(dst); st.Size() != f.DataOffset()+4*perTensor/2 {
		t.Errorf("output size %d", st.Size())
	}
	// Spot-check values across every tensor, including chunk boundaries.
	for ti := range 4 {
		tt, _ := f.Tensor("t" + string(rune('a'+ti)))
		for _, i := range []int64{0, 1, convertChunk - 1, convertChunk, convertChunk + 1, perTensor/4 - 1, 12345678} {
			got := binary.LittleEndian.Uint16(tt.Data[2*i:])
			if want := F32ToBF16(bigPattern(ti, i)); got != want {
				t.Fatalf("tensor %d elem %d: %#04x want %#04x", ti, i, got, want)
			}
		}
	}
}
