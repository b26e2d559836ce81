package pages

// touch writes a zero to one value of every 4 KiB of r: a write fault on
// each page, mapping it in.
func touch(r []float32) {
	for i := 0; i < len(r); i += 1024 {
		r[i] = 0
	}
	if len(r) > 0 {
		r[len(r)-1] = 0
	}
}
