package gpucheck

import (
	"fmt"
	"strings"
	"time"
)

// Markdown formats the report as the rows of bench/RESULTS.md: one row per
// image size, then the text encoder and the weights.
func (r *Report) Markdown() string {
	var sb strings.Builder
	gb := func(n uint64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(&sb, "device: %s (%s free of %s), precision %s\n\n", r.Device, gb(r.Free), gb(r.Total), r.Precision)
	sb.WriteString("| size | DiT step (mean) | DiT step (min) | all steps | VAE | text encoder | total | peak DiT (+act.) | peak VAE (+act.) |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Sizes {
		if len(s.Steps) == 0 {
			continue
		}
		mn := s.Steps[0]
		for _, d := range s.Steps {
			mn = min(mn, d)
		}
		all := mean(s.Steps) * time.Duration(len(s.Steps))
		fmt.Fprintf(&sb, "| %dx%d | %s | %s | %s | %s | %s | %s | %s (+%s) | %s (+%s) |\n", s.Width, s.Height,
			ms(mean(s.Steps)), ms(mn), ms(all), ms(s.VAE), ms(r.TE), ms(r.TE+all+s.VAE),
			gb(s.PeakDiT), gb(s.ActDiT), gb(s.PeakVAE), gb(s.ActVAE))
	}
	fmt.Fprintf(&sb, "\n| network | weights | load |\n| --- | --- | --- |\n")
	for i, n := range []string{"text encoder", "DiT", "VAE"} {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", n, gb(r.Weights[i]), ms(r.Load[i]))
	}
	return sb.String()
}
