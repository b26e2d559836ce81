// kquant_ref: golden bytes of ggml's reference quantizers for zimage's
// weights tests (testdata/gguf/kquant/). Built by generate.sh together with
// an upstream ggml-quants.c (not copied here); see that script and
// testdata/README.md.
//
// It makes a fixed set of float32 rows (each a multiple of 256 values),
// quantizes every row with quantize_row_<type>_ref (what llama.cpp's
// quantize_<type> runs when no importance matrix is given), and writes:
//   cases.txt    one line per row: name and number of values, in order
//   x.f32        the rows, concatenated, little-endian float32
//   <type>.bin   the quantized rows, concatenated
//   dequant.txt  per type, FNV-1a 64 of dequantize_row_<type> of those
//                bytes (float32 bits, NaNs made 0x7fc00000)
//
// Usage: kquant_ref OUTDIR
//        kquant_ref -quantize IN.f32 OUTDIR   (see quantize_file)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-common.h"
#include "ggml-quants.h"

// ggml-quants.c links against these ggml.c functions; none of them is on
// the paths used here (quantize_row_*_ref, dequantize_row_*).
static void unused(const char *what) {
    fprintf(stderr, "kquant_ref: unexpected call of %s\n", what);
    abort();
}
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: %s\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) {
    (void)type, (void)ne;
    unused("ggml_row_size");
    return 0;
}
size_t ggml_type_size(enum ggml_type type) {
    (void)type;
    unused("ggml_type_size");
    return 0;
}
const char *ggml_type_name(enum ggml_type type) {
    (void)type;
    unused("ggml_type_name");
    return "";
}

// ---- deterministic inputs -------------------------------------------------

static uint64_t rng_state;

static uint64_t splitmix64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// uniform in [0, 1)
static double unif(void) { return (double)(splitmix64() >> 11) * 0x1.0p-53; }

static double gauss(void) {
    double u = unif(), v = unif();
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

// rounds to a bfloat16 value (truncating the low 16 bits): real weights are
// often bf16, which makes many ties in the searches.
static float bf16_trunc(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    b &= 0xffff0000u;
    memcpy(&f, &b, 4);
    return f;
}

// half-integer in [lo, hi] (lo, hi themselves half-integers or integers)
static float half_step(float lo, float hi) {
    int n = (int)((hi - lo) * 2) + 1;
    return lo + 0.5f * (float)(splitmix64() % (uint64_t)n);
}

#define MAXN (1 << 16)

struct row {
    const char *name;
    int n;
};

static float X[MAXN];
static int nx;
static struct row rows[64];
static int nrows;

static float *add_row(const char *name, int n) {
    if (nx + n > MAXN || nrows == 64 || n % QK_K != 0) {
        fprintf(stderr, "kquant_ref: bad row %s\n", name);
        exit(1);
    }
    rows[nrows].name = name;
    rows[nrows].n = n;
    nrows++;
    float *x = X + nx;
    nx += n;
    return x;
}

static void make_rows(void) {
    float *x;
    int i, j;
    rng_state = 20260807;

    x = add_row("gauss", 1024);
    for (i = 0; i < 1024; i++) x[i] = (float)gauss();

    x = add_row("gauss_weights", 1024); // weight-like magnitudes
    for (i = 0; i < 1024; i++) x[i] = (float)(0.02 * gauss());

    x = add_row("gauss_bf16", 1024);
    for (i = 0; i < 1024; i++) x[i] = bf16_trunc((float)(0.05 * gauss()));

    x = add_row("uniform", 512);
    for (i = 0; i < 512; i++) x[i] = (float)(2 * unif() - 1);

    x = add_row("uniform_positive", 512);
    for (i = 0; i < 512; i++) x[i] = (float)unif();

    x = add_row("offset_positive", 256); // every sub-block's min > 0
    for (i = 0; i < 256; i++) x[i] = (float)(3 + 0.5 * gauss());

    x = add_row("negative_only", 512);
    for (i = 0; i < 512; i++) x[i] = -(float)fabs(gauss()) - 1e-3f;

    x = add_row("outliers", 1024);
    for (i = 0; i < 1024; i++) {
        x[i] = (float)gauss();
        if (i % 37 == 5) x[i] *= 40;
    }
    x[300] = 1000;
    x[700] = -1000;

    x = add_row("heavy_tail", 512); // gauss cubed
    for (i = 0; i < 512; i++) {
        double g = gauss();
        x[i] = (float)(g * g * g);
    }

    x = add_row("mixed_magnitude", 1024); // each 16 values scaled by 10^U(-4,2)
    for (i = 0; i < 1024; i += 16) {
        double s = pow(10, -4 + 6 * unif());
        for (j = 0; j < 16; j++) x[i + j] = (float)(s * gauss());
    }

    x = add_row("zeros", 256); // +0 and -0
    for (i = 0; i < 256; i++) x[i] = (i % 3 == 0) ? -0.0f : 0.0f;

    x = add_row("constant_positive", 256);
    for (i = 0; i < 256; i++) x[i] = 0.75f;

    x = add_row("constant_negative", 256);
    for (i = 0; i < 256; i++) x[i] = -1.5f;

    x = add_row("tiny_f16_subnormal", 256); // scales in f16's subnormal range
    for (i = 0; i < 256; i++) x[i] = (float)(3e-6 * gauss());

    x = add_row("tiny_f16_underflow", 256); // scales round to f16 zero
    for (i = 0; i < 256; i++) x[i] = (float)(1e-9 * gauss());

    x = add_row("below_group_eps", 256); // under GROUP_MAX_EPS (1e-15)
    for (i = 0; i < 256; i++) x[i] = (float)(1e-16 * gauss());

    x = add_row("near_group_eps", 256);
    for (i = 0; i < 256; i++) x[i] = (float)(2e-15 * gauss());

    x = add_row("huge", 256); // f16 scales near their top
    for (i = 0; i < 256; i++) x[i] = (float)(1e5 * gauss());

    x = add_row("huge_f16_overflow", 256); // f16 scales overflow to inf
    for (i = 0; i < 256; i++) x[i] = (float)(1e9 * gauss());

    x = add_row("with_inf", 256); // broken weights: ±Inf in some sub-blocks
    for (i = 0; i < 256; i++) x[i] = (float)gauss();
    x[5] = INFINITY;
    x[40] = -INFINITY;
    x[41] = INFINITY;
    x[200] = -INFINITY;

    x = add_row("one_subblock", 512); // all zero but one 16- or 32-value sub-block
    for (i = 0; i < 512; i++) x[i] = 0;
    for (i = 48; i < 64; i++) x[i] = (float)gauss();
    for (i = 256 + 160; i < 256 + 192; i++) x[i] = (float)gauss();

    x = add_row("some_below_group_eps", 512); // every other sub-block under 1e-15
    for (i = 0; i < 512; i++) x[i] = (float)(((i / 16) % 2 ? 1e-16 : 1.0) * gauss());

    // Sub-blocks in ± pairs: make_qx_quants and make_q3_quants give exactly
    // opposite scales, so the largest |scale| is a tie and the first must win.
    x = add_row("mirrored_pairs", 512);
    for (i = 0; i < 512; i += 32) {
        float s = i < 256 ? 1.0f : -1.0f;
        for (j = 0; j < 16; j++) {
            x[i + j] = (float)gauss();
            x[i + 16 + j] = -x[i + j];
            x[i + j] *= s;
            x[i + 16 + j] *= s;
        }
    }

    x = add_row("spike", 256);
    for (i = 0; i < 256; i++) x[i] = 0;
    x[77] = -2.5f;

    x = add_row("sparse", 512);
    for (i = 0; i < 512; i++) x[i] = unif() < 0.9 ? 0.0f : (float)gauss();

    // Rows on the quantizers' grids, so that nearest_int meets exact halves
    // and candidate scales tie.
    x = add_row("ties_q3_k", 256); // |max| = 4 → iscale 1 (make_q3_quants)
    for (i = 0; i < 256; i += 16) {
        x[i] = -4;
        for (j = 1; j < 16; j++) x[i + j] = half_step(-3.5f, 3.5f);
    }

    x = add_row("ties_q6_k", 256); // max -32 → iscale 1 (make_qx_quants)
    for (i = 0; i < 256; i += 16) {
        x[i + 3] = -32;
        for (j = 0; j < 16; j++)
            if (j != 3) x[i + j] = half_step(-31.5f, 31.5f);
    }

    x = add_row("ties_q2_k", 256); // min 0, max 3 per 16
    for (i = 0; i < 256; i += 16) {
        x[i] = 0;
        x[i + 1] = 3;
        for (j = 2; j < 16; j++) x[i + j] = half_step(0, 3);
    }

    x = add_row("ties_q4_k", 256); // min 0, max 15 per 32
    for (i = 0; i < 256; i += 32) {
        x[i] = 0;
        x[i + 1] = 15;
        for (j = 2; j < 32; j++) x[i + j] = half_step(0, 15);
    }

    x = add_row("ties_q5_k", 256); // min 0, max 31 per 32
    for (i = 0; i < 256; i += 32) {
        x[i] = 0;
        x[i + 1] = 31;
        for (j = 2; j < 32; j++) x[i + j] = half_step(0, 31);
    }

    x = add_row("ties_simple", 256); // Q8_0: amax 127; Q4_0: max -8; Q4_1: 0..15
    for (i = 0; i < 256; i += 32) {
        int k = (i / 32) % 3;
        for (j = 0; j < 32; j++) {
            if (k == 0) x[i + j] = j == 0 ? 127 : half_step(-126.5f, 126.5f);
            if (k == 1) x[i + j] = j == 0 ? -8 : half_step(-7.5f, 7.5f);
            if (k == 2) x[i + j] = j == 0 ? 0 : j == 1 ? 15 : half_step(0, 15);
        }
    }

    x = add_row("small_integers", 256);
    for (i = 0; i < 256; i++) x[i] = (float)((int)(splitmix64() % 5) - 2);

    // Q4_0 and Q5_0 round x·id to float32 before adding 8.5 (16.5); a value
    // whose exact x·id + 8.5 truncates differently (gguf-py computes it in
    // float64, as an FMA would) is rare, ~1 in 10^7: search Gaussian
    // blocks for 4 such blocks of each type.
    x = add_row("q4_0_q5_0_double_rounding", 256);
    for (int found = 0; found < 8;) {
        float *b = x + 32 * found, amax = 0, max = 0;
        for (j = 0; j < 32; j++) {
            b[j] = (float)gauss();
            if (fabsf(b[j]) > amax) amax = fabsf(b[j]), max = b[j];
        }
        const float div = found < 4 ? -8 : -16, off = found < 4 ? 8.5f : 16.5f;
        const int top = found < 4 ? 15 : 31;
        const float d = max / div, id = d ? 1.0f / d : 0.0f;
        for (j = 0; j < 32; j++) {
            volatile float x0 = b[j] * id; // rounded even where contraction is on
            const int q32 = (int)(x0 + off), q64 = (int)(float)((double)b[j] * (double)id + (double)off);
            if (q32 != q64 && (q32 < top || q64 < top)) {
                found++;
                break;
            }
        }
    }
}

// ---- quantizers -----------------------------------------------------------

typedef void (*quant_fn)(const float *x, void *y, int64_t k);
typedef void (*dequant_fn)(const void *x, float *y, int64_t k);

struct qtype {
    const char *name;
    int block, bytes;
    quant_fn q;
    dequant_fn dq;
};

#define QT(name, blk, T, qf, df) \
    { name, blk, (int)sizeof(T), (quant_fn)(qf), (dequant_fn)(df) }

static const struct qtype types[] = {
    QT("q4_0", QK4_0, block_q4_0, quantize_row_q4_0_ref, dequantize_row_q4_0),
    QT("q4_1", QK4_1, block_q4_1, quantize_row_q4_1_ref, dequantize_row_q4_1),
    QT("q5_0", QK5_0, block_q5_0, quantize_row_q5_0_ref, dequantize_row_q5_0),
    QT("q5_1", QK5_1, block_q5_1, quantize_row_q5_1_ref, dequantize_row_q5_1),
    QT("q8_0", QK8_0, block_q8_0, quantize_row_q8_0_ref, dequantize_row_q8_0),
    QT("q2_k", QK_K, block_q2_K, quantize_row_q2_K_ref, dequantize_row_q2_K),
    QT("q3_k", QK_K, block_q3_K, quantize_row_q3_K_ref, dequantize_row_q3_K),
    QT("q4_k", QK_K, block_q4_K, quantize_row_q4_K_ref, dequantize_row_q4_K),
    QT("q5_k", QK_K, block_q5_K, quantize_row_q5_K_ref, dequantize_row_q5_K),
    QT("q6_k", QK_K, block_q6_K, quantize_row_q6_K_ref, dequantize_row_q6_K),
};

static FILE *create(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    return f;
}

static void put(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) {
        perror("write");
        exit(1);
    }
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

// quantize_file writes OUTDIR/<type>.bin for the float32 values of IN (a
// multiple of 256 of them) with every type: the mode of
// TestQuantizeMatchesGGMLCBinary (ZIMAGE_KQUANT_REF).
static int quantize_file(const char *in, const char *dir) {
    FILE *f = fopen(in, "rb");
    if (!f) {
        perror(in);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size % (4 * QK_K) != 0) {
        fprintf(stderr, "kquant_ref: %s: %ld bytes, not a multiple of %d float32\n", in, size, QK_K);
        return 1;
    }
    const int64_t n = size / 4;
    float *x = malloc((size_t)size);
    uint8_t *q = malloc((size_t)(n / 32 * 34));
    if (!x || !q || fread(x, 4, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "kquant_ref: cannot read %s\n", in);
        return 1;
    }
    fclose(f);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const struct qtype *qt = &types[t];
        char name[64];
        snprintf(name, sizeof name, "%s.bin", qt->name);
        qt->q(x, q, n);
        f = create(dir, name);
        put(f, q, (size_t)(n / qt->block) * (size_t)qt->bytes);
        fclose(f);
    }
    free(x);
    free(q);
    return 0;
}

int main(int argc, char **argv) {
    const uint32_t one = 1;
    if (*(const uint8_t *)&one != 1) {
        fprintf(stderr, "kquant_ref: needs a little-endian machine\n");
        return 1;
    }
    if (argc == 4 && strcmp(argv[1], "-quantize") == 0) return quantize_file(argv[2], argv[3]);
    if (argc != 2) {
        fprintf(stderr, "usage: kquant_ref OUTDIR | kquant_ref -quantize IN.f32 OUTDIR\n");
        return 2;
    }
    const char *dir = argv[1];
    make_rows();

    FILE *f = create(dir, "cases.txt");
    for (int r = 0; r < nrows; r++) fprintf(f, "%s %d\n", rows[r].name, rows[r].n);
    fclose(f);
    f = create(dir, "x.f32");
    put(f, X, sizeof(float) * (size_t)nx);
    fclose(f);

    FILE *dq = create(dir, "dequant.txt");
    static uint8_t Q[MAXN / 32 * 34];
    static float Y[MAXN];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const struct qtype *qt = &types[t];
        char name[64];
        snprintf(name, sizeof name, "%s.bin", qt->name);
        f = create(dir, name);
        uint64_t h = 0xcbf29ce484222325ULL;
        int off = 0;
        for (int r = 0; r < nrows; r++) {
            int n = rows[r].n;
            size_t nb = (size_t)(n / qt->block) * (size_t)qt->bytes;
            memset(Q, 0xa5, nb); // every byte must be written by the quantizer
            qt->q(X + off, Q, n);
            put(f, Q, nb);
            qt->dq(Q, Y, n);
            for (int i = 0; i < n; i++) {
                uint32_t b;
                memcpy(&b, &Y[i], 4);
                if (isnan(Y[i])) b = 0x7fc00000u;
                h = fnv1a(h, (const uint8_t *)&b, 4);
            }
            off += n;
        }
        fclose(f);
        fprintf(dq, "%s %016llx\n", qt->name, (unsigned long long)h);
    }
    fclose(dq);
    return 0;
}
