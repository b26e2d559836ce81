package weights

import (
	"fmt"
	"os"
	"sync"

	"github.com/zimage/zimage/internal/pages"
)

// File is one safetensors file opened read-only. On Linux and the BSDs the
// whole file is memory-mapped and tensor data are zero-copy views into the
// mapping; elsewhere (see mmap_other.go) the data area is read into memory
// once at open.
type File struct {
	path    string
	hdr     *header
	data    []byte // the data area (a view into the mapping)
	mapping []byte // the whole mapping, for unmapping; nil on the fallback
	tensors map[string]*Tensor
	names   []string

	closeOnce sync.Once
	closeErr  error
}

// OpenFile opens and validates a safetensors file. Only the length prefix and
// the header are read eagerly; tensor bytes are paged in when touched.
func OpenFile(path string) (*File, error) {
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
		return nil, &HeaderError{File: path, Reason: "is a directory, not a safetensors file"}
	}
	hdr, err := readHeader(path, f, st.Size())
	if err != nil {
		return nil, err
	}
	data, mapping, err := mapData(f, st.Size(), hdr.dataOff)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	registerMapping(mapping, path)
	sf := &File{path: path, hdr: hdr, data: data, mapping: mapping}
	sf.tensors = make(map[string]*Tensor, len(hdr.entries))
	sf.names = make([]string, len(hdr.entries))
	for i, e := range hdr.entries {
		sf.names[i] = e.name
		sf.tensors[e.name] = &Tensor{
			Name:  e.name,
			DType: e.dtype,
			Shape: e.shape,
			Data:  data[e.begin:e.end:e.end],
			File:  path,
		}
	}
	return sf, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in the order of their data offsets.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Len returns the number of tensors in the file.
func (f *File) Len() int { return len(f.names) }

// Tensor returns the named tensor. The returned value is shared: treat it,
// its Shape and its Data as read-only.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Metadata returns a copy of the header's "__metadata__" map (nil if absent).
func (f *File) Metadata() map[string]string {
	if f.hdr.meta == nil {
		return nil
	}
	m := make(map[string]string, len(f.hdr.meta))
	for k, v := range f.hdr.meta {
		m[k] = v
	}
	return m
}

// DataOffset returns the file offset of the data area (8 + header length).
func (f *File) DataOffset() int64 { return f.hdr.dataOff }

// Close releases the mapping; tensor data of this file must not be used
// afterwards. Closing twice is harmless.
func (f *File) Close() error {
	f.closeOnce.Do(func() {
		if f.mapping != nil {
			unregisterMapping(f.mapping)
			f.closeErr = unmap(f.mapping)
		}
		f.mapping, f.data = nil, nil
	})
	if f.closeErr != nil {
		return fmt.Errorf("weights: %s: %w", f.path, f.closeErr)
	}
	return nil
}

// release tells the OS that the pages of b (a view into this process's
// mappings) are not needed any more, so streaming over a file larger than RAM
// keeps the resident set small. It is advisory; errors are ignored.
func release(b []byte) { pages.DropBytes(b) }
