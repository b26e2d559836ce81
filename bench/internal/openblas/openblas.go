// Package openblas binds the few OpenBLAS entry points the GEMM benchmark
// compares against. The library is loaded at run time with purego, so the
// build stays CGO_ENABLED=0 and machines without OpenBLAS simply skip.
package openblas

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// Candidates are the shared-library names tried by Load, in order (Debian's
// libopenblas0 package provides the first via update-alternatives).
var Candidates = []string{
	"libopenblas.so.0",
	"libopenblas.so",
	"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
}

// CBLAS enum values (cblas.h).
const (
	rowMajor = 101
	noTrans  = 111
	trans    = 112
)

// Lib is a loaded OpenBLAS. blasint is 32-bit in the Debian build (the
// ILP64 flavour is a different package, libopenblas64-0).
type Lib struct {
	Path string

	// void cblas_sgemm(enum CBLAS_ORDER Order, enum CBLAS_TRANSPOSE TransA,
	//     enum CBLAS_TRANSPOSE TransB, blasint M, blasint N, blasint K,
	//     float alpha, const float *A, blasint lda, const float *B, blasint ldb,
	//     float beta, float *C, blasint ldc);
	sgemm func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32,
		b *float32, ldb int32, beta float32, c *float32, ldc int32)
	// void openblas_set_num_threads(int num_threads);
	setNumThreads func(n int32)
	// int openblas_get_num_threads(void);
	getNumThreads func() int32
	// char *openblas_get_config(void);
	getConfig func() string
	// char *openblas_get_corename(void);
	getCorename func() string
}

// Load opens the first OpenBLAS found among Candidates and resolves every
// symbol, reporting all missing ones at once.
func Load() (*Lib, error) {
	var errs []string
	for _, path := range Candidates {
		h, err := dlopen(path)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		l := &Lib{Path: path}
		var missing []string
		for _, s := range []struct {
			name string
			fn   any
		}{
			{"cblas_sgemm", &l.sgemm},
			{"openblas_set_num_threads", &l.setNumThreads},
			{"openblas_get_num_threads", &l.getNumThreads},
			{"openblas_get_config", &l.getConfig},
			{"openblas_get_corename", &l.getCorename},
		} {
			addr, err := dlsym(h, s.name)
			if err != nil {
				missing = append(missing, s.name)
				continue
			}
			purego.RegisterFunc(s.fn, addr)
		}
		if len(missing) > 0 {
			dlclose(h)
			return nil, fmt.Errorf("openblas: %s lacks %s", path, strings.Join(missing, ", "))
		}
		return l, nil
	}
	return nil, errors.New("openblas: not found: " + strings.Join(errs, "; "))
}

// SetThreads sets OpenBLAS's thread count.
func (l *Lib) SetThreads(n int) { l.setNumThreads(int32(n)) }

// Threads returns OpenBLAS's thread count.
func (l *Lib) Threads() int { return int(l.getNumThreads()) }

// Config returns openblas_get_config() (build options and the core type in
// use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64").
func (l *Lib) Config() string { return l.getConfig() }

// Corename returns the name of the kernel set OpenBLAS selected at load.
func (l *Lib) Corename() string { return l.getCorename() }

// SgemmBT computes C[m,n] = A[m,k]·B[n,k]ᵀ (row-major float32), the same
// product as gemm.MatMulBTF32 without bias.
func (l *Lib) SgemmBT(c, a, b []float32, m, n, k int) error {
	if m <= 0 || n <= 0 || k <= 0 || len(c) < m*n || len(a) < m*k || len(b) < n*k ||
		m > 1<<31-1 || n > 1<<31-1 || k > 1<<31-1 {
		return fmt.Errorf("openblas: bad sgemm sizes m=%d n=%d k=%d (len a=%d b=%d c=%d)", m, n, k, len(a), len(b), len(c))
	}
	l.sgemm(rowMajor, noTrans, trans, int32(m), int32(n), int32(k), 1, &a[0], int32(k), &b[0], int32(k), 0, &c[0], int32(n))
	return nil
}
