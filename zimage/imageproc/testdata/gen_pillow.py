# Regenerates the Pillow resize goldens used by resize_test.go:
#   /usr/bin/python3 gen_pillow.py   (Debian python3-pil 9.4.0)
# src_64x96.png is testdata/fixtures/e2e_img2img/init_64x96.png.
from PIL import Image

src = Image.open("src_64x96.png").convert("RGB")
for w, h in [(48, 32), (160, 112), (37, 23), (96, 16)]:
    src.resize((w, h), resample=Image.LANCZOS).save(f"lanczos_rgb_{w}x{h}.png")
grey = src.convert("L")
grey.resize((40, 24), resample=Image.LANCZOS).save("lanczos_l_40x24.png")
grey.save("l_64x96.png")
