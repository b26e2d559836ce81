package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/lora"
)

// looksLikeLoRA says whether tensor names are those of an adapter file.
func looksLikeLoRA(names []string) bool {
	for _, n := range names {
		for _, frag := range []string{".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.", ".lora.down.", ".lora.up.", "lokr_", "hada_", "lora_magnitude_vector"} {
			if strings.Contains(n, frag) {
				return true
			}
		}
	}
	return false
}

// lora describes a LoRA file: format, ranks, alpha, targeted modules and
// whether it fits Z-Image-Turbo.
func (in *inspector) lora(path string) {
	f, err := lora.Open(path)
	var ue *lora.UnsupportedError
	switch {
	case errors.As(err, &ue):
		in.printf("  lora        %s: not supported (%s)\n", ue.Kind, ue.Key)
		return
	case err != nil:
		in.printf("  lora        unreadable: %s\n", flatLine(err.Error()))
		return
	}
	in.printf("  lora        %s format, %s, %d modules, rank %s\n", f.Format, f.DType, len(f.Modules), joinInts(f.Ranks()))
	var alphas []string
	withAlpha := 0
	for _, m := range f.Modules {
		if m.HasAlpha {
			withAlpha++
			if a := strconv.FormatFloat(m.Alpha, 'g', 6, 64); !slices.Contains(alphas, a) {
				alphas = append(alphas, a)
			}
		}
	}
	fromMeta := 0
	for _, m := range f.Modules {
		if !m.HasAlpha && m.Factor != 1 {
			fromMeta++
			if a := strconv.FormatFloat(m.Alpha, 'g', 6, 64); !slices.Contains(alphas, a) {
				alphas = append(alphas, a)
			}
		}
	}
	switch {
	case fromMeta > 0:
		in.printf("  alpha       %s on %d modules from the adapter metadata (PEFT multiplies the scale by alpha/rank)\n", strings.Join(alphas, ", "), fromMeta)
	case withAlpha == 0:
		in.printf("  alpha       none (= rank: strength is the scale alone)\n")
	default:
		in.printf("  alpha       %s on %d modules (alpha/rank folded into the weights at load, as diffusers does)\n", strings.Join(alphas, ", "), withAlpha)
	}
	if len(f.Dropped) > 0 {
		in.printf("  dropped     %d duplicate keys (as diffusers does), e.g. %s\n", len(f.Dropped), f.Dropped[0])
	}
	blocks := map[string][]int{}
	kinds := map[string]bool{}
	var other []string
	for _, m := range f.Modules {
		parts := strings.SplitN(m.Target, ".", 3)
		if len(parts) == 3 {
			if i, err := strconv.Atoi(parts[1]); err == nil {
				if !slices.Contains(blocks[parts[0]], i) {
					blocks[parts[0]] = append(blocks[parts[0]], i)
				}
				kinds[parts[2]] = true
				continue
			}
		}
		other = append(other, m.Target)
	}
	var bl []string
	for _, k := range []string{"noise_refiner", "context_refiner", "layers"} {
		if idx := blocks[k]; len(idx) > 0 {
			slices.Sort(idx)
			bl = append(bl, fmt.Sprintf("%s %s", k, spanInts(idx)))
		}
	}
	if len(bl) > 0 {
		ks := make([]string, 0, len(kinds))
		for k := range kinds {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		in.printf("  targets     %s in %s\n", strings.Join(ks, ", "), strings.Join(bl, ", "))
	}
	if len(other) > 0 {
		in.printf("  targets     %s\n", strings.Join(other, ", "))
	}
	for _, m := range f.Modules {
		if strings.HasSuffix(m.Target, ".attention.to_q") || strings.HasSuffix(m.Target, ".attention.qkv") {
			in.printf("  model dim   %d (attention input width)\n", m.In)
			break
		}
	}
	if _, err := lora.Bind(f, synthetic.DiT(weights.DefaultDiTConfig())); err != nil {
		in.printf("  fits        not Z-Image-Turbo: %s\n", flatLine(err.Error()))
	} else {
		in.printf("  fits        Z-Image-Turbo (every module lands on a transformer weight of the right shape)\n")
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// spanInts writes sorted ints as ranges: "0-3, 5".
func spanInts(v []int) string {
	var out []string
	for i := 0; i < len(v); {
		j := i
		for j+1 < len(v) && v[j+1] == v[j]+1 {
			j++
		}
		if j > i {
			out = append(out, fmt.Sprintf("%d-%d", v[i], v[j]))
		} else {
			out = append(out, strconv.Itoa(v[i]))
		}
		i = j + 1
	}
	return strings.Join(out, ", ")
}
