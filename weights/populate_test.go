package weights

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestPopulate checks that Populate leaves the data as mapped, and that a
// file truncated under its mapping does not crash it (the advice fails
// quietly; reading the lost pages would still be reported as a fault).
func TestPopulate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 1<<16) // 256 KiB of F32
	if err := WriteFile(path, []*Tensor{{Name: "w", DType: F32, Shape: []int{1 << 16}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Populate()
	w, _ := s.Tensor("w")
	if !bytes.Equal(w.Data, data) {
		t.Fatal("tensor data changed after Populate")
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	s.Populate() // must not crash
	(&Set{}).Populate()
}
