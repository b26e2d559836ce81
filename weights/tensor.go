package weights

// Tensor is one stored tensor: its header entry and a zero-copy view of its
// bytes (little-endian, row-major) inside the read-only mapping of its file.
// Data stays valid until the File or Set it came from is closed.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	File  string // path of the file holding the tensor
}

// NumElements returns the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}
