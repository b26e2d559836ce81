package weights

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// fixtureHeaders returns the length prefix + header of some fixture files
// (data areas dropped to keep the corpus small; the header then points past
// the end, which exercises that check too) and one complete small file.
func fixtureHeaders(f *testing.F) [][]byte {
	var out [][]byte
	root := fixturefs.Path(f, "fixtures")
	for _, rel := range []string{
		"scheduler.safetensors",
		"vae.safetensors",
		"tiny-z-image-turbo/transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
	} {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			f.Fatal(err)
		}
		n := binary.LittleEndian.Uint64(b)
		out = append(out, b[:8+n])
		if len(b) < 1<<16 {
			out = append(out, b)
		}
	}
	return out
}

func FuzzParseHeader(f *testing.F) {
	for _, b := range fixtureHeaders(f) {
		f.Add(b)
	}
	for _, h := range []string{
		`{}`,
		`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
		`{"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"F8_E4M3","shape":[],"data_offsets":[4,5]}}`,
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
		`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`,
		`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`,
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`,
		`{"a":{"dtype":"X","shape":[1],"data_offsets":[0,4]}}`,
		`{"a":[]}`, `[]`, `{"a":`, `{"__metadata__":{"n":1}}`,
	} {
		f.Add(rawFile(h, make([]byte, 8)))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseFileBytes("fuzz", b)
		if err != nil {
			if _, ok := err.(*HeaderError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// Whatever is accepted must be internally consistent.
		dataLen := int64(len(b)) - h.dataOff
		var prevEnd int64
		for _, e := range h.entries {
			size, ok := byteSize(e.dtype, e.shape)
			if !ok || size != e.end-e.begin || e.begin < prevEnd || e.end > dataLen {
				t.Fatalf("accepted inconsistent entry %+v (data %d)", e, dataLen)
			}
			prevEnd = e.end
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(fixturefs.Path(f, "fixtures/tiny-z-image-turbo/transformer"), "diffusion_pytorch_model.safetensors.index.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, s := range []string{
		`{"metadata":{"total_size":12},"weight_map":{"a":"x.safetensors","b":"sub/y.safetensors"}}`,
		`{"weight_map":{"a":"../x.safetensors"}}`,
		`{"weight_map":{"a":"/etc/passwd"}}`,
		`{"weight_map":{"a":"x","a":"y"}}`,
		`{"weight_map":{"a":1}}`,
		`{"weight_map":[]}`, `{"weight_map":{}}`, `{}`, `[]`, `null`, `{"weight_map":{"a":"x"}`,
		`{"weight_map":{"a":"C:\\x"}}`, `{"weight_map":{"":"x"}}`, `{"weight_map":{"a":"./x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := parseIndex("fuzz.json", b)
		if err != nil {
			if _, ok := err.(*IndexError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(idx.weightMap) == 0 || len(idx.shards) == 0 {
			t.Fatal("accepted an empty index")
		}
		for name, shard := range idx.weightMap {
			if name == "" || !localName(shard) {
				t.Fatalf("accepted %q → %q", name, shard)
			}
		}
	})
}
