package cpu

// Fail records err as the backend's sticky error (unless one is recorded
// already): later ops return placeholders until ResetErr. The pipeline uses
// it for a memory fault reading mapped weights, which unwinds the op that
// hit it.
func (b *Backend) Fail(err error) { b.setErr(err) }
