package blaslt

import (
	"errors"
	"fmt"
	"os"

	"github.com/zimage/zimage/cuda/internal/bind"
)

// EnvLibrary overrides the path of the cuBLASLt library.
const EnvLibrary = "ZIMAGE_LIBCUBLASLT"

// Libraries are the sonames tried in order when EnvLibrary is unset.
var Libraries = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"}

// ErrNoLibrary reports that no cuBLASLt library could be opened.
var ErrNoLibrary = errors.New("cuda: cuBLASLt not found (install the CUDA toolkit or the nvidia-cublas wheel, or set " + EnvLibrary + ")")

// Load opens cuBLASLt ($ZIMAGE_LIBCUBLASLT, else the first of Libraries
// that loads) and binds every symbol of API. It returns the library name.
func Load() (*API, string, error) {
	names := Libraries
	if p := os.Getenv(EnvLibrary); p != "" {
		names = []string{p}
	}
	h, name, err := bind.Open(names...)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	api := new(API)
	if err := bind.Bind(name, api, bind.DlsymLookup(h)); err != nil {
		return nil, name, fmt.Errorf("cuda: %w", err)
	}
	return api, name, nil
}
