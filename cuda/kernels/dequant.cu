// Dequantisation of ggml block-quantized weights (GGUF checkpoints) into the
// backend's dtype, one thread per element. Bit-exact to weights.Dequantize
// (gguf-py's numpy reference): every product and sum is rounded to float32
// on its own (__fmul_rn/__fadd_rn are never contracted into an FMA), scales
// are widened from f16 exactly (f16_to_f32 of elementwise.cu), and a bf16
// output is rounded to nearest even once, as weights.EncodeBF16 does.
#include "common.cuh"

#ifdef ZK_HOST_SHIM
// g++ -std=c++20 does not contract a*b+c (-ffp-contract=off), so plain
// operators round like the intrinsics.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
#endif

// Block bytes are read one at a time: blocks are 18, 22, 110 ... bytes, so
// their fields are not aligned.
ZK_DEV float dq_f16(const unsigned char* b) { return f16_to_f32((unsigned short)(b[0] | (b[1] << 8))); }
ZK_DEV unsigned dq_u32(const unsigned char* b) {
	return (unsigned)b[0] | ((unsigned)b[1] << 8) | ((unsigned)b[2] << 16) | ((unsigned)b[3] << 24);
}

// Each dq_* returns element i of the block at b.

// Q4_0: d, 16 nibble bytes: element j low nibble of byte j, j+16 the high; -8.
ZK_DEV float dq_q4_0(const unsigned char* b, int i) {
	int q = i < 16 ? (b[2 + i] & 0xf) : (b[2 + i - 16] >> 4);
	return __fmul_rn(dq_f16(b), (float)(q - 8));
}
// Q4_1: d, m, nibbles; d·q + m.
ZK_DEV float dq_q4_1(const unsigned char* b, int i) {
	int q = i < 16 ? (b[4 + i] & 0xf) : (b[4 + i - 16] >> 4);
	return __fadd_rn(__fmul_rn(dq_f16(b), (float)q), dq_f16(b + 2));
}
// Q5_0: d, 32 high bits (bit i for element i), nibbles; -16.
ZK_DEV float dq_q5_0(const unsigned char* b, int i) {
	unsigned qh = dq_u32(b + 2);
	int q = i < 16 ? (b[6 + i] & 0xf) : (b[6 + i - 16] >> 4);
	q |= (int)((qh >> i) & 1) << 4;
	return __fmul_rn(dq_f16(b), (float)(q - 16));
}
// Q5_1: d, m, 32 high bits, nibbles; d·q + m.
ZK_DEV float dq_q5_1(const unsigned char* b, int i) {
	unsigned qh = dq_u32(b + 4);
	int q = i < 16 ? (b[8 + i] & 0xf) : (b[8 + i - 16] >> 4);
	q |= (int)((qh >> i) & 1) << 4;
	return __fadd_rn(__fmul_rn(dq_f16(b), (float)q), dq_f16(b + 2));
}
// Q8_0: d and 32 signed bytes.
ZK_DEV float dq_q8_0(const unsigned char* b, int i) { return __fmul_rn((float)(signed char)b[2 + i], dq_f16(b)); }

// Q2_K: 16 scale bytes (scale low nibble, min high), 64 bytes of 2-bit
// values, d, dmin. Element i = h·128 + s·32 + l: bits 2s of byte h·32 + l,
// group i/16; (d·sc)·q − dmin·m.
ZK_DEV float dq_q2_k(const unsigned char* b, int i) {
	int g = i >> 4, h = i >> 7, s = (i >> 5) & 3, l = i & 31;
	float dl = __fmul_rn(dq_f16(b + 80), (float)(b[g] & 0xf));
	float ml = __fmul_rn(dq_f16(b + 82), (float)(b[g] >> 4));
	int q = (b[16 + h * 32 + l] >> (2 * s)) & 3;
	return __fsub_rn(__fmul_rn(dl, (float)q), ml);
}
// Q3_K: 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of packed
// 6-bit scales (−32), d. A clear high bit subtracts 4.
ZK_DEV float dq_q3_k(const unsigned char* b, int i) {
	const unsigned char *hmask = b, *qs = b + 32, *sc = b + 96;
	int g = i >> 4, h = i >> 7, s = (i >> 5) & 3, l = i & 31;
	int lo = (sc[g % 8] >> (4 * (g / 8))) & 0xf;
	int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
	float dl = __fmul_rn(dq_f16(b + 108), (float)((lo | (hi << 4)) - 32));
	int q = (qs[h * 32 + l] >> (2 * s)) & 3;
	if (((hmask[i & 31] >> (i >> 5)) & 1) == 0) q -= 4;
	return __fmul_rn(dl, (float)q);
}
// The 6-bit scale and min of group g of a Q4_K/Q5_K block (12 bytes at s).
ZK_DEV void dq_k_scale_min(const unsigned char* s, int g, int* sc, int* m) {
	if (g < 4) {
		*sc = s[g] & 63;
		*m = s[g + 4] & 63;
	} else {
		*sc = (s[g + 4] & 0xf) | ((s[g - 4] >> 2) & 0x30);
		*m = (s[g + 4] >> 4) | ((s[g] >> 2) & 0x30);
	}
}
// Q4_K: d, dmin, 12 scale bytes, 128 nibble bytes; group g (32 elements)
// takes the low (g even) or high (g odd) nibbles of bytes (g/2)·32 + l.
ZK_DEV float dq_q4_k(const unsigned char* b, int i) {
	int g = i >> 5, l = i & 31, sc, m;
	dq_k_scale_min(b + 4, g, &sc, &m);
	float dg = __fmul_rn(dq_f16(b), (float)sc), mg = __fmul_rn(dq_f16(b + 2), (float)m);
	int q = (b[16 + (g / 2) * 32 + l] >> (4 * (g % 2))) & 0xf;
	return __fsub_rn(__fmul_rn(dg, (float)q), mg);
}
// Q5_K: as Q4_K plus 32 bytes of high bits (bit g of byte l).
ZK_DEV float dq_q5_k(const unsigned char* b, int i) {
	int g = i >> 5, l = i & 31, sc, m;
	dq_k_scale_min(b + 4, g, &sc, &m);
	float dg = __fmul_rn(dq_f16(b), (float)sc), mg = __fmul_rn(dq_f16(b + 2), (float)m);
	int q = ((b[48 + (g / 2) * 32 + l] >> (4 * (g % 2))) & 0xf) | (((b[16 + l] >> g) & 1) << 4);
	return __fsub_rn(__fmul_rn(dg, (float)q), mg);
}
// Q6_K: 128 bytes of low nibbles, 64 of 2-bit highs, 16 signed scales, d.
// In half h, quarter k, position l: low nibble (k < 2) or high nibble of
// byte h·64 + l + 32·(k&1), high bits 2k of byte h·32 + l, −32; scale
// h·8 + l/16 + 2k.
ZK_DEV float dq_q6_k(const unsigned char* b, int i) {
	int h = i >> 7, k = (i >> 5) & 3, l = i & 31;
	int lb = b[h * 64 + l + 32 * (k & 1)];
	int nib = k < 2 ? (lb & 0xf) : (lb >> 4);
	int hb = (b[128 + h * 32 + l] >> (2 * k)) & 3;
	int q = (nib | (hb << 4)) - 32;
	float dg = __fmul_rn(dq_f16(b + 208), (float)(signed char)b[192 + h * 8 + l / 16 + 2 * k]);
	return __fmul_rn(dg, (float)q);
}

// zk_dequant_<type>_<dst>(src, y, n): n elements (whole blocks) of the
// blocks at src into y.
#define ZK_DQ(TYPE, BS, BB, S, T)                                                              \
	extern "C" __global__ void zk_dequant_##TYPE##_##S(const unsigned char* __restrict__ src, \
	                                                   T* __restrict__ y, int n) {           \
		ZK_GRID_LOOP(i, n) { st(y, i, dq_##TYPE(src + (long)(i / BS) * BB, i % BS)); }        \
	}
#define ZK_DQ_ALL(S, T)                 \
	ZK_DQ(q4_0, 32, 18, S, T)           \
	ZK_DQ(q4_1, 32, 20, S, T)           \
	ZK_DQ(q5_0, 32, 22, S, T)           \
	ZK_DQ(q5_1, 32, 24, S, T)           \
	ZK_DQ(q8_0, 32, 34, S, T)           \
	ZK_DQ(q2_k, 256, 84, S, T)          \
	ZK_DQ(q3_k, 256, 110, S, T)         \
	ZK_DQ(q4_k, 256, 144, S, T)         \
	ZK_DQ(q5_k, 256, 176, S, T)         \
	ZK_DQ(q6_k, 256, 210, S, T)
ZK_TYPES(ZK_DQ_ALL)
