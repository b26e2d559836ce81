"""ControlNet block arrangements the pipeline fixtures do not cover -> <out>/e2e_controlnet/modes/.

The e2e_controlnet cases use a Union-2.1-style model (add_control_noise_refiner="control_noise_refiner").
The released Union v1 (add_control_noise_refiner=null: plain control_noise_refiner blocks refine the
control tokens, no refiner hints) and 2.0 ("control_layers": the control layers also run over the image
tokens before the noise refiner and give its hints) take other paths of upstream's
ZImageControlNetModel.forward; this records one forward of each, run whole by upstream code:

  hints = controlnet([x], t, [cap_feats], [control_context], conditioning_scale)  (from_transformer)
  out   = transformer([x], t, [cap_feats], controlnet_block_samples=hints)

One weights file serves both: a v1 model (control_layers_places [0], control_in_dim 33) saved with
save_pretrained (config.json: null), and config_control_layers.json, the 2.0 config under which upstream
from_pretrained loads the same file (the control_noise_refiner.* tensors are then unused).

Run from a copy of shared/tools/zref (see generate.sh):
    /usr/bin/python3 modes.py --model-dir DIR/tiny-z-image-turbo --out DIR/e2e_controlnet/modes
"""

import argparse
import json
import math
import os
import shutil
import sys

import zref_lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    zref_lib.setup()
    import torch
    from build_models import load_components
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    import fixtures_controlnet

    torch.manual_seed(0)
    comps = load_components(a.model_dir)
    tr = comps["transformer"]
    tc = tr.config
    base = {
        "control_layers_places": [0],
        "control_in_dim": 2 * tc.in_channels + 1,
        "all_patch_size": list(tc.all_patch_size),
        "all_f_patch_size": list(tc.all_f_patch_size),
        "dim": tc.dim,
        "n_refiner_layers": tc.n_refiner_layers,
        "n_heads": tc.n_heads,
        "n_kv_heads": tc.n_kv_heads,
        "norm_eps": tc.norm_eps,
        "qk_norm": tc.qk_norm,
    }
    v1_cfg = dict(base, add_control_noise_refiner=None, control_refiner_layers_places=None)
    v20_cfg = dict(base, add_control_noise_refiner="control_layers", control_refiner_layers_places=[0])

    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    v1 = ZImageControlNetModel(**v1_cfg).eval()
    weights = zref_lib.init_tiny_weights(v1, 20251127 + 11, fixtures_controlnet._rules(1.0))
    v1 = v1.to(torch.bfloat16)
    wdir = os.path.join(a.out, "controlnet")
    v1.save_pretrained(wdir, safe_serialization=True)
    zref_lib.save_json(os.path.join(a.out, "config_control_layers.json"),
                       dict(json.load(open(os.path.join(wdir, "config.json"))), **v20_cfg))

    # inputs: one latent, caption features, control context (random, fixed seed)
    g = torch.Generator("cpu").manual_seed(7)
    hl, wl, n_cap = 8, 12, 37
    x = torch.randn(tc.in_channels, 1, hl, wl, generator=g)
    cap = torch.randn(n_cap, tc.cap_feat_dim, generator=g)
    ctx = torch.randn(base["control_in_dim"], 1, hl, wl, generator=g)
    t = torch.tensor([0.6], dtype=torch.float32)
    scale = 0.7
    tensors = {"x": x[:, 0], "cap_feats": cap, "control_context": ctx[:, 0], "t": t}
    meta = {}
    for name, cfg in (("v1", v1_cfg), ("control_layers", v20_cfg)):
        if name == "v1":
            m = ZImageControlNetModel.from_pretrained(wdir, torch_dtype=torch.float32).eval()
        else:
            tmp = os.path.join(a.out, "_tmp_v20")
            shutil.copytree(wdir, tmp)
            shutil.copyfile(os.path.join(a.out, "config_control_layers.json"), os.path.join(tmp, "config.json"))
            m = ZImageControlNetModel.from_pretrained(tmp, torch_dtype=torch.float32).eval()
            shutil.rmtree(tmp)
        sd = dict(m.named_parameters())
        for k, v in sd.items():  # loaded exactly what was written
            assert torch.equal(v.detach(), weights[k].to(torch.float32)), k
        m = ZImageControlNetModel.from_transformer(m, tr)
        with torch.no_grad():
            hints = m([x.clone()], t.clone(), [cap.clone()], [ctx.clone()], conditioning_scale=scale)
            out = tr([x.clone()], t.clone(), [cap.clone()], controlnet_block_samples=hints)[0][0]
            plain = tr([x.clone()], t.clone(), [cap.clone()])[0][0]
        assert sorted(hints) == sorted(cfg["control_layers_places"])
        for p, h in hints.items():
            tensors[f"{name}.hint.layer{p}"] = zref_lib.f32(h[0])
        tensors[f"{name}.transformer_out"] = zref_lib.f32(out[:, 0])
        meta[name] = {"config": cfg, "tensors_used": sorted(sd),
                      "out_rel_diff_vs_no_control": float((out - plain).norm() / plain.norm())}
        assert meta[name]["out_rel_diff_vs_no_control"] > 0.05
    zref_lib.save_tensors(os.path.join(a.out, "modes.safetensors"), tensors)
    zref_lib.save_json(os.path.join(a.out, "modes.json"), {
        "what": __doc__.split("\n\n")[0],
        "call": "hints = ZImageControlNetModel.from_transformer(cn, transformer)([x], t, [cap_feats], [control_context], "
                f"conditioning_scale={scale}); transformer([x], t, [cap_feats], controlnet_block_samples=hints)",
        "upstream": zref_lib.upstream_commits(),
        "torch": torch.__version__,
        "shapes": {"x": [tc.in_channels, hl, wl], "cap_feats": [n_cap, tc.cap_feat_dim],
                   "control_context": [base["control_in_dim"], hl, wl]},
        "tensor_naming": {"<mode>.hint.layer<p>": "scaled hint for main layer p [S_unified, dim]",
                          "<mode>.transformer_out": "DiT output with the hints [C, hl, wl]"},
        "modes": meta,
    })


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
