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
 * so that the compiler can vectorise them without -ffast-math; on x86-64 the hot function is
 * compiled for AVX-512, AVX2 and baseline, and the loader picks one at run time (target_clones).
 *
 * Called from Python with integer pointers (tensor.data_ptr()) and sizes; see scan.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
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
#endif

#define DEFINE_SCAN_BLOCK(NAME, ATTR, STEP) \
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
        if (a->softplus) \
            for (int t = 0; t < tl; t++) \
                for (int k = 0; k < W; k++) \
                    dt_tile[t][k] = softplus_approx(dt_tile[t][k]); \
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
        if (z) \
            for (int t = 0; t < tl; t++) \
                for (int k = 0; k < W; k++) { \
                    float zv = z_tile[t][k]; \
                    y_tile[t][k] *= zv / (1.0f + exp_approx(-zv)); \
                } \
        store_tile(out + t0 * a->so_t, y_tile, a->so_t, a->so_d, tl, (int)w); \
    } \
}

DEFINE_SCAN_BLOCK(scan_block_generic, SCAN_CLONES, step_generic)
#ifdef SCAN_X86
DEFINE_SCAN_BLOCK(scan_block_avx512, __attribute__((target("avx512f"))), step_avx512)
static int cpu_has_avx512 = -1; /* set at module import */
#endif

static void scan_block(const ScanArgs *a, Py_ssize_t b, Py_ssize_t d0) {
#ifdef SCAN_X86
    if (cpu_has_avx512 > 0) {
        scan_block_avx512(a, b, d0);
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

/* For tests: use_avx512(flag) turns the AVX-512 path off (0) or back on where the CPU has it;
 * returns whether it is now used. */
static PyObject *py_use_avx512(PyObject *self, PyObject *args) {
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag)) return NULL;
#ifdef SCAN_X86
    cpu_has_avx512 = flag && __builtin_cpu_supports("avx512f");
    return PyBool_FromLong(cpu_has_avx512);
#else
    (void)flag;
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"use_avx512", py_use_avx512, METH_VARARGS,
     "use_avx512(flag) -> bool: switch the AVX-512 code path off/on (for tests); returns whether it is used."},
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
    cpu_has_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
#endif
    PyObject *m = PyModule_Create(&module);
#ifdef SCAN_X86
    const char *isa = cpu_has_avx512 ? "avx512" : "auto-vectorised (target_clones: x86-64-v4/v3/baseline)";
#else
    const char *isa = "auto-vectorised (compiler default target)";
#endif
    if (m && (PyModule_AddIntConstant(m, "BLOCK_CHANNELS", W) < 0 ||
              PyModule_AddStringConstant(m, "ISA", isa) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
