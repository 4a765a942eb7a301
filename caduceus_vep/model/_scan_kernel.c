/* Fused selective-scan forward (Mamba v1, inference only) for the CPU.
 *
 *   delta_t = softplus(delta_t + delta_bias)            (each optional)
 *   h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
 *   y_t     = <C_t, h_t> + D * u_t                       (D optional)
 *   out_t   = y_t * silu(z_t)                            (z optional)
 *
 * Shapes (element strides are passed explicitly, so transposed views need no copy):
 *   u, delta, z, out: [batch, dim, length]   A: [dim, nstate] contiguous
 *   B, C: [batch, nstate, length]            D, delta_bias: [dim] contiguous
 *
 * Layout of the work: a block of W channels of one batch row is scanned over the whole sequence
 * with its [nstate][W] state kept in L1 (vector registers for W*nstate <= 256 with AVX-512); the
 * W channels are the SIMD lanes, so exp, the update and the readout are all vector operations
 * without horizontal sums. Blocks run on a few POSIX threads. Only fp32; the caller uses PyTorch
 * for anything else. exp/log are short polynomial approximations (relative error ~1e-7) written
 * so that the compiler can vectorise them without -ffast-math. On x86-64 the recurrence has two
 * explicit intrinsics steps, AVX-512 (step_avx512) and AVX2+FMA (step_avx2, which also has explicit
 * softplus and silu: see softplus_avx2), chosen at import by the CPU's features
 * (CADUCEUS_VEP_SCAN_ISA or use_isa() can force one, for tests and benchmarks); otherwise a
 * portable block compiled for AVX-512, AVX2 and baseline runs (target_clones).
 *
 * Called from Python with integer pointers (tensor.data_ptr()) and sizes; see scan.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <math.h>

#if defined(_WIN32)
#define SCAN_NO_THREADS 1
#else
#include <pthread.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#include <xmmintrin.h>
#define SCAN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SCAN_X86 1
#else
#define SCAN_CLONES
#endif

#define W 16          /* channels per block = SIMD lanes */
#define T 64          /* positions per tile */
#define MAX_STATE 64

typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *z, *bias;
    float *out;
    Py_ssize_t batch, dim, length, nstate;
    Py_ssize_t su_b, su_d, su_t, sd_b, sd_d, sd_t, sB_b, sB_n, sB_t, sC_b, sC_n, sC_t;
    Py_ssize_t sz_b, sz_d, sz_t, so_b, so_d, so_t;
    int softplus;
} ScanArgs;

typedef struct {
    const ScanArgs *a;
    Py_ssize_t first, last; /* range of (batch, channel block) work items */
} Job;

/* exp(x), branch-free: x = n*ln2 + r, |r| <= ln2/2, e^r by its degree-6 Taylor polynomial. */
static inline float exp_approx(float x) {
    x = x > -87.0f ? x : -87.0f; /* max/min, in the operand order of (v)maxps/(v)minps */
    x = x < 88.0f ? x : 88.0f;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float fn = (x * 1.44269504088896341f + magic) - magic;
    float r = x - fn * 0.693145751953125f;
    r = r - fn * 1.42860682030941723212e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)fn + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log(v) for v in [1, 2]: v = m * 2^e with m in [1/sqrt2, sqrt2), atanh series in s=(m-1)/(m+1). */
static inline float log_1_2(float v) {
    float e = v > 1.41421356f ? 1.0f : 0.0f;
    float m = v > 1.41421356f ? v * 0.5f : v;
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float p = 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return e * 0.693147180559945309f + 2.0f * s * p;
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), the same threshold as PyTorch (x > 20: x). */
static inline float softplus_approx(float x) {
    float ax = x < 0.0f ? -x : x;
    float y = exp_approx(-ax);                 /* (0, 1] */
    float v = 1.0f + y;
    float vm1 = v - 1.0f;
    /* log1p(y) = log(v) * y / (v - 1) corrects the rounding of 1 + y (exact when v == 1). */
    float l1p = vm1 == 0.0f ? y : log_1_2(v) * (y / (vm1 == 0.0f ? 1.0f : vm1));
    float sp = (x > 0.0f ? x : 0.0f) + l1p;
    return x > 20.0f ? x : sp;
}

/* Copy a [tl x w] tile (element strides st along positions, sk along channels) into dst[t][k],
 * zero-filling lanes k >= w; the two common layouts get loops the compiler can vectorise. */
static inline void load_tile(float dst[T][W], const float *src, Py_ssize_t st, Py_ssize_t sk,
                             int tl, int w) {
    if (sk == 1 && w == W) {
        for (int t = 0; t < tl; t++)
            for (int k = 0; k < W; k++) dst[t][k] = src[t * st + k];
        return;
    }
    for (int t = 0; t < tl; t++)
        for (int k = w; k < W; k++) dst[t][k] = 0.0f;
    for (int k = 0; k < w; k++) {
        const float *s = src + k * sk;
        if (st == 1)
            for (int t = 0; t < tl; t++) dst[t][k] = s[t];
        else
            for (int t = 0; t < tl; t++) dst[t][k] = s[t * st];
    }
}

static inline void store_tile(float *dst, float src[T][W], Py_ssize_t st, Py_ssize_t sk, int tl, int w) {
    if (sk == 1 && w == W) {
        for (int t = 0; t < tl; t++)
            for (int k = 0; k < W; k++) dst[t * st + k] = src[t][k];
        return;
    }
    for (int k = 0; k < w; k++) {
        float *d = dst + k * sk;
        for (int t = 0; t < tl; t++) d[t * st] = src[t][k];
    }
}

/* Ask for the cache lines of element (t, k) ... of the *next* tile while this one is computed:
 * rows 2-4 KB apart defeat the hardware prefetchers. Called once per position i < T of a tile. */
static inline void prefetch_next(const float *src, Py_ssize_t st, Py_ssize_t sk, int i, int tn) {
    if (i >= tn) return;
    if (sk == 1) {                      /* one row of W channels per position */
        __builtin_prefetch(src + i * st);
        __builtin_prefetch(src + i * st + (W - 1));
    } else if (st == 1) {               /* W channels, each T contiguous positions */
        const int per = T / W;          /* positions handled per channel */
        const int k = i / per, j = (i % per) * W;
        if (j < tn) __builtin_prefetch(src + k * sk + j);
    }
}

/* One position of the recurrence for the W channels of a block, all N states:
 *   h[n] = exp(dt * A[n]) * h[n] + du * B[n];   y += C[n] * h[n]
 * Portable version, vectorised by the compiler over the W lanes. */
static inline void step_generic(float h[][W], const float At[][W], const float *dt, const float *du,
                                float *y, const float *bt, Py_ssize_t sBn, const float *ct,
                                Py_ssize_t sCn, Py_ssize_t N) {
    for (Py_ssize_t n = 0; n < N; n++) {
        const float bn = bt[n * sBn], cn = ct[n * sCn];
        for (int k = 0; k < W; k++) {
            float hn = exp_approx(dt[k] * At[n][k]) * h[n][k] + du[k] * bn;
            h[n][k] = hn;
            y[k] += cn * hn;
        }
    }
}

#ifdef SCAN_X86
#include <immintrin.h>
/* The same step with AVX-512 intrinsics (one zmm = the W = 16 lanes): rounding by vrndscaleps and
 * the 2^n scaling by vscalefps, which also handles under/overflow, so the exp needs no clamps:
 * about 15 instead of 27 vector instructions per state. Chosen at run time (cpu_has_avx512). */
__attribute__((target("avx512f"))) static inline void step_avx512(
        float h[][W], const float At[][W], const float *dt, const float *du, float *y,
        const float *bt, Py_ssize_t sBn, const float *ct, Py_ssize_t sCn, Py_ssize_t N) {
    const __m512 vdt = _mm512_loadu_ps(dt), vdu = _mm512_loadu_ps(du);
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2hi = _mm512_set1_ps(0.693145751953125f);
    const __m512 ln2lo = _mm512_set1_ps(1.42860682030941723212e-6f);
    const __m512 c6 = _mm512_set1_ps(1.0f / 720.0f), c5 = _mm512_set1_ps(1.0f / 120.0f);
    const __m512 c4 = _mm512_set1_ps(1.0f / 24.0f), c3 = _mm512_set1_ps(1.0f / 6.0f);
    const __m512 c2 = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 lo = _mm512_set1_ps(-150.0f); /* below: exp underflows to 0 anyway */
    __m512 vy = _mm512_loadu_ps(y);
    for (Py_ssize_t n = 0; n < N; n++) {
        __m512 x = _mm512_max_ps(_mm512_mul_ps(vdt, _mm512_loadu_ps(At[n])), lo);
        __m512 fn = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(fn, ln2hi, x);
        r = _mm512_fnmadd_ps(fn, ln2lo, r);
        __m512 p = _mm512_fmadd_ps(c6, r, c5);
        p = _mm512_fmadd_ps(p, r, c4);
        p = _mm512_fmadd_ps(p, r, c3);
        p = _mm512_fmadd_ps(p, r, c2);
        p = _mm512_fmadd_ps(p, r, one);
        p = _mm512_fmadd_ps(p, r, one);
        __m512 e = _mm512_scalef_ps(p, fn);
        __m512 hn = _mm512_fmadd_ps(e, _mm512_loadu_ps(h[n]), _mm512_mul_ps(vdu, _mm512_set1_ps(bt[n * sBn])));
        _mm512_storeu_ps(h[n], hn);
        vy = _mm512_fmadd_ps(_mm512_set1_ps(ct[n * sCn]), hn, vy);
    }
    _mm512_storeu_ps(y, vy);
}

/* exp of 8 lanes for step_avx2: the polynomial and operation order of step_avx512. AVX2 has no
 * vscalefps, so 2^n is built in the exponent bits, which needs n in [-126, 127]: x is clamped to
 * [-87, 88] (the clamps of exp_approx) instead of step_avx512's -150. Below -87 the result is
 * e^-87 ~ 1.6e-38 instead of (flushed) 0, a difference no fp32 state can see. */
__attribute__((target("avx2,fma"))) static inline __m256 exp_avx2(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2hi = _mm256_set1_ps(0.693145751953125f);
    const __m256 ln2lo = _mm256_set1_ps(1.42860682030941723212e-6f);
    const __m256 c6 = _mm256_set1_ps(1.0f / 720.0f), c5 = _mm256_set1_ps(1.0f / 120.0f);
    const __m256 c4 = _mm256_set1_ps(1.0f / 24.0f), c3 = _mm256_set1_ps(1.0f / 6.0f);
    const __m256 c2 = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 fn = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fn, ln2hi, x);
    r = _mm256_fnmadd_ps(fn, ln2lo, r);
    __m256 p = _mm256_fmadd_ps(c6, r, c5);
    p = _mm256_fmadd_ps(p, r, c4);
    p = _mm256_fmadd_ps(p, r, c3);
    p = _mm256_fmadd_ps(p, r, c2);
    p = _mm256_fmadd_ps(p, r, one);
    p = _mm256_fmadd_ps(p, r, one);
    /* 2^fn, exact (fn is an integer in [-126, 127]); p * 2^fn rounds like vscalefps. */
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fn), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* step_avx512 with AVX2+FMA intrinsics: the W = 16 lanes as two ymm halves (0-7, 8-15), the same
 * operations in the same order. The [N][16] state does not fit in 16 ymm registers; it stays in
 * L1 (as in step_avx512, where N is not known at compile time either). Chosen at run time on CPUs
 * with AVX2 and FMA but no AVX-512 (most AMD EPYC / Ryzen). */
__attribute__((target("avx2,fma"))) static inline void step_avx2(
        float h[][W], const float At[][W], const float *dt, const float *du, float *y,
        const float *bt, Py_ssize_t sBn, const float *ct, Py_ssize_t sCn, Py_ssize_t N) {
    const __m256 vdt0 = _mm256_loadu_ps(dt), vdt1 = _mm256_loadu_ps(dt + 8);
    const __m256 vdu0 = _mm256_loadu_ps(du), vdu1 = _mm256_loadu_ps(du + 8);
    __m256 vy0 = _mm256_loadu_ps(y), vy1 = _mm256_loadu_ps(y + 8);
    for (Py_ssize_t n = 0; n < N; n++) {
        const __m256 bn = _mm256_set1_ps(bt[n * sBn]), cn = _mm256_set1_ps(ct[n * sCn]);
        __m256 e0 = exp_avx2(_mm256_mul_ps(vdt0, _mm256_loadu_ps(At[n])));
        __m256 e1 = exp_avx2(_mm256_mul_ps(vdt1, _mm256_loadu_ps(At[n] + 8)));
        __m256 hn0 = _mm256_fmadd_ps(e0, _mm256_loadu_ps(h[n]), _mm256_mul_ps(vdu0, bn));
        __m256 hn1 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(h[n] + 8), _mm256_mul_ps(vdu1, bn));
        _mm256_storeu_ps(h[n], hn0);
        _mm256_storeu_ps(h[n] + 8, hn1);
        vy0 = _mm256_fmadd_ps(cn, hn0, vy0);
        vy1 = _mm256_fmadd_ps(cn, hn1, vy1);
    }
    _mm256_storeu_ps(y, vy0);
    _mm256_storeu_ps(y + 8, vy1);
}

/* exp_approx, log_1_2 and softplus_approx on 8 lanes: the same operations in the same order
 * (selects as blends). Needed because without AVX-512's masks the compiler cannot vectorise
 * their conditional divisions (it may not execute a division the C code skips), and the scalar
 * softplus and silu gate then cost ~3x the recurrence itself. */
__attribute__((target("avx2,fma"))) static inline __m256 exp_approx_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f)); /* x > -87 ? x : -87 */
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));  /* x < 88 ? x : 88 */
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 fn = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic), magic);
    __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 720.0f), r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fn), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx2,fma"))) static inline __m256 log_1_2_avx2(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 big = _mm256_cmp_ps(v, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    const __m256 e = _mm256_and_ps(big, one);
    const __m256 m = _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.5f)), big);
    const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 9.0f), s2, _mm256_set1_ps(1.0f / 7.0f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 5.0f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 3.0f));
    p = _mm256_fmadd_ps(p, s2, one);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693147180559945309f),
                           _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), s), p));
}

__attribute__((target("avx2,fma"))) static inline __m256 softplus_avx2(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 y = exp_approx_avx2(_mm256_sub_ps(zero, ax));
    const __m256 v = _mm256_add_ps(one, y);
    const __m256 vm1 = _mm256_sub_ps(v, one);
    const __m256 exact = _mm256_cmp_ps(vm1, zero, _CMP_EQ_OQ);
    const __m256 l = _mm256_mul_ps(log_1_2_avx2(v), _mm256_div_ps(y, _mm256_blendv_ps(vm1, one, exact)));
    const __m256 sp = _mm256_add_ps(_mm256_max_ps(x, zero), _mm256_blendv_ps(l, y, exact));
    return _mm256_blendv_ps(sp, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

/* The per-tile softplus and silu(z) gate of DEFINE_SCAN_BLOCK for scan_block_avx2. */
#define SOFTPLUS_TILE_AVX2(tile, tl) \
    for (int t = 0; t < (tl); t++) \
        for (int k = 0; k < W; k += 8) \
            _mm256_storeu_ps(&tile[t][k], softplus_avx2(_mm256_loadu_ps(&tile[t][k])))
#define GATE_TILE_AVX2(y_tile, z_tile, tl) \
    for (int t = 0; t < (tl); t++) \
        for (int k = 0; k < W; k += 8) { \
            const __m256 zv = _mm256_loadu_ps(&z_tile[t][k]); \
            const __m256 g = _mm256_div_ps(zv, _mm256_add_ps(_mm256_set1_ps(1.0f), \
                                           exp_approx_avx2(_mm256_sub_ps(_mm256_setzero_ps(), zv)))); \
            _mm256_storeu_ps(&y_tile[t][k], _mm256_mul_ps(_mm256_loadu_ps(&y_tile[t][k]), g)); \
        }
#endif

/* The same two loops for the compiler to vectorise (the portable and AVX-512 paths). */
#define SOFTPLUS_TILE_AUTO(tile, tl) \
    for (int t = 0; t < (tl); t++) \
        for (int k = 0; k < W; k++) \
            tile[t][k] = softplus_approx(tile[t][k])
#define GATE_TILE_AUTO(y_tile, z_tile, tl) \
    for (int t = 0; t < (tl); t++) \
        for (int k = 0; k < W; k++) { \
            float zv = z_tile[t][k]; \
            y_tile[t][k] *= zv / (1.0f + exp_approx(-zv)); \
        }

#define DEFINE_SCAN_BLOCK(NAME, ATTR, STEP, SOFTPLUS_TILE, GATE_TILE) \
ATTR static void NAME(const ScanArgs *a, Py_ssize_t b, Py_ssize_t d0) { \
    const Py_ssize_t N = a->nstate, L = a->length; \
    const Py_ssize_t w = a->dim - d0 < W ? a->dim - d0 : W; \
    float h[MAX_STATE][W]; \
    float At[MAX_STATE][W]; \
    float Dk[W], bias[W]; \
    float dt_tile[T][W], u_tile[T][W], y_tile[T][W], z_tile[T][W]; \
    memset(h, 0, sizeof h); \
    for (Py_ssize_t n = 0; n < N; n++) \
        for (int k = 0; k < W; k++) \
            At[n][k] = k < w ? a->A[(d0 + k) * N + n] : 0.0f; \
    for (int k = 0; k < W; k++) { \
        Dk[k] = (a->D && k < w) ? a->D[d0 + k] : 0.0f; \
        bias[k] = (a->bias && k < w) ? a->bias[d0 + k] : 0.0f; \
    } \
    const float *u = a->u + b * a->su_b + d0 * a->su_d; \
    const float *dl = a->delta + b * a->sd_b + d0 * a->sd_d; \
    const float *Bp = a->B + b * a->sB_b; \
    const float *Cp = a->C + b * a->sC_b; \
    const float *z = a->z ? a->z + b * a->sz_b + d0 * a->sz_d : NULL; \
    float *out = a->out + b * a->so_b + d0 * a->so_d; \
 \
    for (Py_ssize_t t0 = 0; t0 < L; t0 += T) { \
        const int tl = (int)(L - t0 < T ? L - t0 : T); \
        /* Gather the tile (any strides); lanes past the last channel are zero. */ \
        load_tile(u_tile, u + t0 * a->su_t, a->su_t, a->su_d, tl, (int)w); \
        load_tile(dt_tile, dl + t0 * a->sd_t, a->sd_t, a->sd_d, tl, (int)w); \
        for (int t = 0; t < tl; t++) \
            for (int k = 0; k < W; k++) dt_tile[t][k] += bias[k]; \
        if (z) load_tile(z_tile, z + t0 * a->sz_t, a->sz_t, a->sz_d, tl, (int)w); \
        if (a->softplus) SOFTPLUS_TILE(dt_tile, tl); \
        /* The recurrence: state [N][W] stays in registers / L1. */ \
        const Py_ssize_t tn_ = L - (t0 + T); \
        const int tn = tn_ <= 0 ? 0 : (int)(tn_ < T ? tn_ : T); /* positions in the next tile */ \
        for (int t = 0; t < tl; t++) { \
            float du[W], dt[W], y[W]; \
            if (tn && w == W) { \
                prefetch_next(u + (t0 + T) * a->su_t, a->su_t, a->su_d, t, tn); \
                prefetch_next(dl + (t0 + T) * a->sd_t, a->sd_t, a->sd_d, t, tn); \
                if (z) prefetch_next(z + (t0 + T) * a->sz_t, a->sz_t, a->sz_d, t, tn); \
            } \
            for (int k = 0; k < W; k++) { \
                dt[k] = dt_tile[t][k]; \
                du[k] = dt[k] * u_tile[t][k]; \
                y[k] = Dk[k] * u_tile[t][k]; \
            } \
            const float *bt = Bp + (t0 + t) * a->sB_t; \
            const float *ct = Cp + (t0 + t) * a->sC_t; \
            STEP(h, At, dt, du, y, bt, a->sB_n, ct, a->sC_n, N); \
            for (int k = 0; k < W; k++) y_tile[t][k] = y[k]; \
        } \
        /* Gate with silu(z) (vectorised over the block), then scatter. */ \
        if (z) GATE_TILE(y_tile, z_tile, tl); \
        store_tile(out + t0 * a->so_t, y_tile, a->so_t, a->so_d, tl, (int)w); \
    } \
}

DEFINE_SCAN_BLOCK(scan_block_generic, SCAN_CLONES, step_generic, SOFTPLUS_TILE_AUTO, GATE_TILE_AUTO)
#ifdef SCAN_X86
DEFINE_SCAN_BLOCK(scan_block_avx512, __attribute__((target("avx512f"))), step_avx512, SOFTPLUS_TILE_AUTO, GATE_TILE_AUTO)
DEFINE_SCAN_BLOCK(scan_block_avx2, __attribute__((target("avx2,fma"))), step_avx2, SOFTPLUS_TILE_AVX2, GATE_TILE_AVX2)
#endif

/* The code path in use: set at module import (the best the CPU has, or CADUCEUS_VEP_SCAN_ISA),
 * changed only by use_isa()/use_avx512() (tests, benchmarks). */
enum { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static int scan_isa = ISA_PORTABLE;
static const char *const isa_names[] = {"portable", "avx2", "avx512"};

static int isa_supported(int isa) {
#ifdef SCAN_X86
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == ISA_PORTABLE;
}

static int best_isa(void) {
    return isa_supported(ISA_AVX512) ? ISA_AVX512 : isa_supported(ISA_AVX2) ? ISA_AVX2 : ISA_PORTABLE;
}

static void scan_block(const ScanArgs *a, Py_ssize_t b, Py_ssize_t d0) {
#ifdef SCAN_X86
    if (scan_isa == ISA_AVX512) {
        scan_block_avx512(a, b, d0);
        return;
    }
    if (scan_isa == ISA_AVX2) {
        scan_block_avx2(a, b, d0);
        return;
    }
#endif
    scan_block_generic(a, b, d0);
}

static void *run_job(void *arg) {
    const Job *job = (const Job *)arg;
    const ScanArgs *a = job->a;
    const Py_ssize_t blocks = (a->dim + W - 1) / W;
#ifdef SCAN_X86
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* flush denormals to zero (FTZ | DAZ) in this thread */
#endif
    for (Py_ssize_t i = job->first; i < job->last; i++)
        scan_block(a, i / blocks, (i % blocks) * W);
#ifdef SCAN_X86
    _mm_setcsr(csr);
#endif
    return NULL;
}

#define MAX_THREADS 64

static void run_all(const ScanArgs *a, int threads) {
    const Py_ssize_t items = a->batch * ((a->dim + W - 1) / W);
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > items) threads = (int)(items > 0 ? items : 1);
    Job jobs[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        jobs[i].a = a;
        jobs[i].first = items * i / threads;
        jobs[i].last = items * (i + 1) / threads;
    }
#ifndef SCAN_NO_THREADS
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 1; i < threads; i++)
        started[i] = pthread_create(&tids[i], NULL, run_job, &jobs[i]) == 0;
    run_job(&jobs[0]);
    for (int i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            run_job(&jobs[i]); /* could not start a thread: do its share here */
    }
#else
    for (int i = 0; i < threads; i++) run_job(&jobs[i]);
#endif
}

static PyObject *py_scan_f32(PyObject *self, PyObject *args) {
    unsigned long long pu, pd, pA, pB, pC, pD, pz, pbias, pout;
    ScanArgs a;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKKKKKnnnnnnnnnnnnnnnnnnnnnnii",
                          &pu, &pd, &pA, &pB, &pC, &pD, &pz, &pbias, &pout,
                          &a.batch, &a.dim, &a.length, &a.nstate,
                          &a.su_b, &a.su_d, &a.su_t, &a.sd_b, &a.sd_d, &a.sd_t,
                          &a.sB_b, &a.sB_n, &a.sB_t, &a.sC_b, &a.sC_n, &a.sC_t,
                          &a.sz_b, &a.sz_d, &a.sz_t, &a.so_b, &a.so_d, &a.so_t,
                          &a.softplus, &threads))
        return NULL;
    if (a.nstate < 1 || a.nstate > MAX_STATE || a.batch < 0 || a.dim < 0 || a.length < 0) {
        PyErr_SetString(PyExc_ValueError, "scan_f32: unsupported sizes (1 <= nstate <= 64)");
        return NULL;
    }
    if (!pu || !pd || !pA || !pB || !pC || !pout) {
        if (a.batch * a.dim * a.length == 0) Py_RETURN_NONE;
        PyErr_SetString(PyExc_ValueError, "scan_f32: null pointer");
        return NULL;
    }
    a.u = (const float *)(uintptr_t)pu;
    a.delta = (const float *)(uintptr_t)pd;
    a.A = (const float *)(uintptr_t)pA;
    a.B = (const float *)(uintptr_t)pB;
    a.C = (const float *)(uintptr_t)pC;
    a.D = (const float *)(uintptr_t)pD;
    a.z = (const float *)(uintptr_t)pz;
    a.bias = (const float *)(uintptr_t)pbias;
    a.out = (float *)(uintptr_t)pout;
    if (a.batch * a.dim * a.length == 0) Py_RETURN_NONE;
    Py_BEGIN_ALLOW_THREADS
    run_all(&a, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* For tests: use_avx512(flag) switches to the portable path (0) or back to the best path the CPU
 * has (1); returns whether the AVX-512 path is now used. */
static PyObject *py_use_avx512(PyObject *self, PyObject *args) {
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag)) return NULL;
    scan_isa = flag ? best_isa() : ISA_PORTABLE;
    return PyBool_FromLong(scan_isa == ISA_AVX512);
}

/* "auto" -> the best the CPU has; otherwise the index of the name, or -1. */
static int parse_isa(const char *name) {
    if (strcmp(name, "auto") == 0) return best_isa();
    for (int i = 0; i < 3; i++)
        if (strcmp(name, isa_names[i]) == 0) return i;
    return -1;
}

/* use_isa(name): name in "avx512", "avx2", "portable", "auto"; switches to that path if the CPU
 * has it and returns the name of the path now used (unchanged if the CPU lacks it). */
static PyObject *py_use_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    int isa = parse_isa(name);
    if (isa < 0) {
        PyErr_Format(PyExc_ValueError, "use_isa: unknown ISA %R (avx512, avx2, portable or auto)",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (isa_supported(isa)) scan_isa = isa;
    return PyUnicode_FromString(isa_names[scan_isa]);
}

static PyObject *py_current_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(isa_names[scan_isa]);
}

static PyMethodDef methods[] = {
    {"use_avx512", py_use_avx512, METH_VARARGS,
     "use_avx512(flag) -> bool: switch to the portable path (False) or back to the best one (True); "
     "returns whether the AVX-512 path is used."},
    {"use_isa", py_use_isa, METH_VARARGS,
     "use_isa(name) -> str: use the 'avx512', 'avx2' or 'portable' path, or the best ('auto'), where "
     "the CPU has it (for tests and benchmarks); returns the name of the path now used."},
    {"current_isa", py_current_isa, METH_NOARGS,
     "current_isa() -> str: the code path in use ('avx512', 'avx2' or 'portable')."},
    {"scan_f32", py_scan_f32, METH_VARARGS,
     "scan_f32(u, delta, A, B, C, D, z, delta_bias, out, batch, dim, length, nstate, "
     "<6 x 3 element strides: u, delta, B, C, z, out>, softplus, threads): fused fp32 selective "
     "scan forward on raw pointers (0 = absent for D, z, delta_bias). Internal; see scan.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan_kernel",
    "Fused CPU selective-scan forward for caduceus_vep.model.scan (inference only).", -1, methods,
};

PyMODINIT_FUNC PyInit__scan_kernel(void) {
#ifdef SCAN_X86
    __builtin_cpu_init();
#endif
    /* CADUCEUS_VEP_SCAN_ISA (read once, here) forces a path the CPU has; default: the best. */
    const char *want = getenv("CADUCEUS_VEP_SCAN_ISA");
    int isa = want && *want ? parse_isa(want) : best_isa();
    if (isa < 0) {
        PyErr_Format(PyExc_ValueError,
                     "CADUCEUS_VEP_SCAN_ISA must be avx512, avx2, portable or auto, got '%s'", want);
        return NULL;
    }
    if (!isa_supported(isa)) {
        PyErr_Format(PyExc_ImportError, "CADUCEUS_VEP_SCAN_ISA=%s: this CPU lacks that ISA", want);
        return NULL;
    }
    scan_isa = isa;
    PyObject *m = PyModule_Create(&module);
#ifdef SCAN_X86
    const char *isa_str = scan_isa == ISA_AVX512 ? "avx512"
                          : scan_isa == ISA_AVX2 ? "avx2"
                          : "auto-vectorised (target_clones: x86-64-v4/v3/baseline)";
#else
    const char *isa_str = "auto-vectorised (compiler default target)";
#endif
    if (m && (PyModule_AddIntConstant(m, "BLOCK_CHANNELS", W) < 0 ||
              PyModule_AddStringConstant(m, "ISA", isa_str) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
