package synthetic

import (
	"strconv"

	"github.com/zimage/zimage/weights"
)

// VAEEncoder returns the encoder's tensors (diffusers names; quant_conv
// only with use_quant_conv), for img2img/inpaint benchmarks.
func VAEEncoder(c weights.VAEConfig) *Source {
	s := &Source{}
	res := func(p string, ci, co int) {
		s.add(p+".norm1.weight", ci)
		s.add(p+".norm1.bias", ci)
		s.add(p+".conv1.weight", co, ci, 3, 3)
		s.add(p+".conv1.bias", co)
		s.add(p+".norm2.weight", co)
		s.add(p+".norm2.bias", co)
		s.add(p+".conv2.weight", co, co, 3, 3)
		s.add(p+".conv2.bias", co)
		if ci != co {
			s.add(p+".conv_shortcut.weight", co, ci, 1, 1)
			s.add(p+".conv_shortcut.bias", co)
		}
	}
	boc := c.BlockOutChannels
	s.add("encoder.conv_in.weight", boc[0], c.InChannels, 3, 3)
	s.add("encoder.conv_in.bias", boc[0])
	prev := boc[0]
	for i, co := range boc {
		p := "encoder.down_blocks." + strconv.Itoa(i)
		for j := 0; j < c.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			res(p+".resnets."+strconv.Itoa(j), ci, co)
		}
		if i < len(boc)-1 {
			s.add(p+".downsamplers.0.conv.weight", co, co, 3, 3)
			s.add(p+".downsamplers.0.conv.bias", co)
		}
		prev = co
	}
	res("encoder.mid_block.resnets.0", prev, prev)
	res("encoder.mid_block.resnets.1", prev, prev)
	a := "encoder.mid_block.attentions.0."
	s.add(a+"group_norm.weight", prev)
	s.add(a+"group_norm.bias", prev)
	for _, p := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
		s.add(a+p+".weight", prev, prev)
		s.add(a+p+".bias", prev)
	}
	l2 := 2 * c.LatentChannels
	s.add("encoder.conv_norm_out.weight", prev)
	s.add("encoder.conv_norm_out.bias", prev)
	s.add("encoder.conv_out.weight", l2, prev, 3, 3)
	s.add("encoder.conv_out.bias", l2)
	if c.UseQuantConv {
		s.add("quant_conv.weight", l2, l2, 1, 1)
		s.add("quant_conv.bias", l2)
	}
	return s
}
