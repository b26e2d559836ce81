package main

import (
	"flag"
	"fmt"

	"github.com/zimage/zimage/zimage"
)

// selfTestUsage describes --selftest of generate and bench.
const selfTestUsage = "CUDA kernel self-test before first use: auto (run it unless a cached result exists), force (run it now) or off (default: $ZIMAGE_SELFTEST, else auto)"

// selfTestFlag is a --selftest value, checked when set.
type selfTestFlag struct{ mode zimage.SelfTestMode }

func (f *selfTestFlag) String() string { return string(f.mode) }

func (f *selfTestFlag) Set(s string) error {
	m, err := zimage.ParseSelfTestMode(s)
	if err != nil {
		return fmt.Errorf("want auto, force or off")
	}
	f.mode = m
	return nil
}

// register adds --selftest to fs.
func (f *selfTestFlag) register(fs *flag.FlagSet) { fs.Var(f, "selftest", selfTestUsage) }
