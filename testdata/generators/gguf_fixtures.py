#!/usr/bin/env python3
"""Writes testdata/gguf/: GGUF reference fixtures for zimage's GGUF reader and
dequantisers, checked against llama.cpp's gguf-py.

    GGUF_PY=/path/holding/the/gguf/package /usr/bin/python3 testdata/generators/gguf_fixtures.py [OUTDIR]

GGUF_PY is a directory containing gguf-py's `gguf` package (ggml-org/llama.cpp
gguf-py/gguf: constants.py, quants.py, gguf_reader.py; see testdata/README.md for
the upstream commits). Needs numpy. Deterministic (fixed seeds).

Files written (OUTDIR defaults to testdata/gguf next to this script):
  types/<type>.gguf  one per supported ggml type: tensor "q" (shape [8, 2*block]
                     in row-major order) in that type, "ref" = gguf-py's
                     dequantize(q) as F32; for types gguf-py can quantize also
                     "x" (the F32 source) with q = gguf-py's quantize(x).
  meta_v3.gguf       every metadata value type incl. nested arrays,
                     general.alignment = 64, three small tensors.
  meta_v2.gguf       the same as GGUF version 2 with the default alignment.
The files are written by the small writer below and every one is re-read with
gguf-py's GGUFReader, which must give back the same tensors and metadata.

    GGUF_PY=... python3 gguf_fixtures.py --readback FILE.gguf ...

reads GGUF files (e.g. written by `zimage convert`) with gguf-py and prints, per
file, a JSON object {tensor name: [type name, row-major shape, sha256 of gguf-py's
dequantized float32 little-endian bytes]} (weights.TestGGUFReadBackByGGUFPy).
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.environ["GGUF_PY"])
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T, GGUFValueType as V  # noqa: E402
from gguf.quants import quantize, dequantize  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "--readback" else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gguf")

SCALARS = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
           V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}


def enc_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def enc_value(vtype, value):
    if vtype == V.STRING:
        return enc_str(value)
    if vtype == V.ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        for it in items:
            out += enc_value(etype, it)
        return out
    return struct.pack(SCALARS[vtype], value)


def write_gguf(path, kvs, tensors, version=3, alignment=32):
    """kvs: [(key, vtype, value)]; tensors: [(name, ggml type, row-major shape, raw bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += enc_str(k) + struct.pack("<I", t) + enc_value(t, v)
    off = 0
    offsets = []
    for name, ttype, shape, raw in tensors:
        ne = list(reversed(shape))
        out += enc_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", ttype, off)
        offsets.append(off)
        off += (len(raw) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    data = b""
    for (name, ttype, shape, raw), o in zip(tensors, offsets):
        data += b"\0" * (o - len(data)) + raw
    data += b"\0" * (-len(data) % alignment)
    with open(path, "wb") as f:
        f.write(out + data)


def check_read(path, kvs, tensors):
    r = gguf.GGUFReader(path)
    for k, t, v in kvs:
        f = r.fields[k]
        got = f.contents()
        if t == V.ARRAY and v[0] == V.ARRAY:
            continue  # gguf-py flattens nested arrays; checked structurally by the Go test
        want = [x for x in v[1]] if t == V.ARRAY else v
        if t in (V.FLOAT32,) or (t == V.ARRAY and v[0] == V.FLOAT32):
            assert np.allclose(np.float32(got), np.float32(want)), (k, got, want)
        else:
            assert got == want, (k, got, want)
    by = {t.name: t for t in r.tensors}
    for name, ttype, shape, raw in tensors:
        rt = by[name]
        assert rt.tensor_type == ttype, name
        assert list(reversed(rt.shape.tolist())) == list(shape), (name, rt.shape, shape)
        assert rt.data.tobytes() == raw, name


BLOCK = {t: gguf.GGML_QUANT_SIZES[t] for t in T}
QUANTIZABLE = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}
TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
         T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]


def random_blocks(rng, t, n_blocks):
    """Random but valid blocks: random bytes with the f16 scale fields set to
    finite normal values (random bytes there would be NaN/Inf now and then)."""
    bs, ts = BLOCK[t]
    b = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    def f16(col, scale):
        v = (rng.standard_normal(n_blocks) * scale).astype(np.float16)
        b[:, col:col + 2] = v.view(np.uint8).reshape(n_blocks, 2)
    if t == T.Q2_K:
        f16(80, 0.05); f16(82, 0.05)
    elif t == T.Q3_K:
        f16(108, 0.02)
    elif t in (T.Q4_K, T.Q5_K):
        f16(0, 0.02); f16(2, 0.02)
    elif t == T.Q6_K:
        f16(208, 0.01)
    return b


def source(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, :32] = 0                      # an all-zero block
    x[1, 5] = -4.0                     # a block whose max |x| is negative
    x[2, 40:44] = [1e-3, -1e-3, 7.5, -7.5]
    return x


def main():
    os.makedirs(os.path.join(OUT, "types"), exist_ok=True)
    rng = np.random.default_rng(20261207)
    for t in TYPES:
        bs, ts = BLOCK[t]
        cols = 2 * max(bs, 32)
        shape = (8, cols)
        tensors = []
        if t in QUANTIZABLE:
            x = source(rng, shape)
            if t == T.BF16:
                q = gguf.quants.BF16.quantize(x)
            else:
                q = quantize(x, t)
            tensors.append(("x", T.F32, shape, x.tobytes()))
        else:
            q = random_blocks(rng, t, 8 * cols // bs).reshape(8, -1)
        q = np.ascontiguousarray(q)
        if t == T.BF16:
            ref = dequantize(q.view(np.uint8), t)
        else:
            ref = dequantize(q, t)
        ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(shape)
        assert np.isfinite(ref).all(), t.name
        tensors.append(("q", t, shape, q.tobytes()))
        tensors.append(("ref", T.F32, shape, ref.tobytes()))
        kvs = [("general.architecture", V.STRING, "zimage-test"), ("zimage.type", V.STRING, t.name)]
        path = os.path.join(OUT, "types", t.name.lower() + ".gguf")
        write_gguf(path, kvs, tensors)
        check_read(path, kvs, tensors)
        r = gguf.GGUFReader(path)
        rq = [x for x in r.tensors if x.name == "q"][0]
        again = dequantize(rq.data.view(np.uint8) if t == T.BF16 else rq.data, t)
        assert np.array_equal(np.asarray(again, dtype=np.float32).reshape(shape).view(np.uint32), ref.view(np.uint32)), t.name

    kvs = [
        ("general.architecture", V.STRING, "zimage-test"),
        ("general.alignment", V.UINT32, 64),
        ("t.u8", V.UINT8, 200), ("t.i8", V.INT8, -100), ("t.u16", V.UINT16, 60000), ("t.i16", V.INT16, -30000),
        ("t.u32", V.UINT32, 4000000000), ("t.i32", V.INT32, -2000000000), ("t.f32", V.FLOAT32, 1.5),
        ("t.bool", V.BOOL, True), ("t.str", V.STRING, "héllo"), ("t.u64", V.UINT64, 1 << 60),
        ("t.i64", V.INT64, -(1 << 60)), ("t.f64", V.FLOAT64, -2.25),
        ("t.arr_str", V.ARRAY, (V.STRING, ["a", "", "ĠHello"])),
        ("t.arr_i32", V.ARRAY, (V.INT32, [1, -2, 3])),
        ("t.arr_f32", V.ARRAY, (V.FLOAT32, [0.5, -1.0])),
        ("t.arr_u8", V.ARRAY, (V.UINT8, [])),
        ("t.arr_bool", V.ARRAY, (V.BOOL, [True, False])),
        ("t.arr_arr", V.ARRAY, (V.ARRAY, [(V.INT32, [1, 2]), (V.INT32, [3])])),
    ]
    x = rng.standard_normal((2, 64)).astype(np.float32)
    tensors = [
        ("a.weight", T.Q8_0, (2, 64), quantize(x, T.Q8_0).tobytes()),
        ("b.bias", T.F32, (5,), np.arange(5, dtype=np.float32).tobytes()),
        ("c.weight", T.F16, (2, 3, 4), np.arange(24, dtype=np.float16).tobytes()),
    ]
    path = os.path.join(OUT, "meta_v3.gguf")
    write_gguf(path, kvs, tensors, version=3, alignment=64)
    check_read(path, kvs, tensors)
    kvs2 = [kv for kv in kvs if kv[0] != "general.alignment"]
    path = os.path.join(OUT, "meta_v2.gguf")
    write_gguf(path, kvs2, tensors, version=2, alignment=32)
    check_read(path, kvs2, tensors)
    print("wrote", OUT)


def readback(paths):
    import hashlib
    import json
    for path in paths:
        r = gguf.GGUFReader(path)
        out = {}
        for t in r.tensors:
            data = t.data
            if t.tensor_type == T.BF16:
                data = data.view(np.uint8)
            if t.tensor_type in (T.F32, T.F16):
                f = np.asarray(data, dtype=np.float32)
            else:
                f = dequantize(data, t.tensor_type)
            f = np.ascontiguousarray(f, dtype="<f4")
            out[t.name] = [t.tensor_type.name, [int(d) for d in reversed(t.shape.tolist())], hashlib.sha256(f.tobytes()).hexdigest()]
        print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--readback":
        readback(sys.argv[2:])
    else:
        main()
