# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, embedsignature=True
"""Compiled kernels that apply parameter updates to (shared-memory) numpy arrays,
and one that finds the vocabulary rows a chunk of word2vec sentences touches.

Every update kernel exists for float32 and float64 (``cython.floating``); all arguments
of one call must share the dtype, there is no silent casting, with one exception:
the half-precision wire.  axpy, scatter_add and gather also take float16 on the
wire side (the update, the pulled rows) of float32 parameters, and narrow /
widen convert whole frames; rounding to float16 is IEEE's nearest, ties to
even, exactly as numpy's ``astype(np.float16)``.  Inputs are
``const`` memoryviews, so read-only buffers such as ``np.frombuffer`` over a
received ZeroMQ frame are accepted without a copy.

Such a frame may start at any byte address, so elements are never dereferenced
through a ``float *`` / ``double *`` (undefined behaviour when misaligned, and
a real fault wherever the compiler picks an aligned SIMD instruction); they are
read and written with ``memcpy`` through ``char *``.  gcc and clang lower that
to a single unaligned load or store, the same instructions they emit for the
aligned case, so the safety costs nothing.

The module is built for the baseline ISA (no -march=native: one wheel serves
every node of a cluster).  The one loop where that showed is the dense axpy:
numpy runs ``a += b`` with AVX2 when the CPU has it, and an SSE2 loop stayed
~8% behind it on 256 MB arrays.  So that loop is written in C, where gcc's
``target_clones`` can compile it for baseline and for AVX2 and pick one when
the module loads (x86-64 with glibc; elsewhere it is the baseline loop).

The float16 conversions lose most to the baseline ISA: in portable C each
takes a dozen integer operations and branches per element, where x86's F16C
converts eight in one instruction (numpy's astype runs at 1-2 GB/s, the F16C
loops at memory speed).  target_clones cannot name F16C, so those loops are
compiled with ``target("avx,f16c")`` and picked through function pointers
when the module loads, if the CPU has F16C (x86-64 with GCC >= 11 or clang >=
18, whose ``__builtin_cpu_supports`` know it); the portable loops serve
everywhere else and for the last 1-7 elements of every F16C loop.  Both give
the same bits, NaNs included (quieted, the payload cut as F16C cuts it).

``deepdist._core_ref`` is the NumPy twin of this module: same functions, same
exceptions, same results.
"""

import operator

cimport cython
from cython cimport floating
from libc.stdint cimport INT64_MAX, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.dict cimport PyDict_GetItemWithError
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject

import numpy as np

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define DEEPDIST_PREFETCH_READ(p) __builtin_prefetch((p), 0)
    #define DEEPDIST_PREFETCH_WRITE(p) __builtin_prefetch((p), 1)
    #else
    #define DEEPDIST_PREFETCH_READ(p) ((void)0)
    #define DEEPDIST_PREFETCH_WRITE(p) ((void)0)
    #endif

    /* target_clones needs ifunc support: ELF and glibc. */
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__)
    #define DEEPDIST_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define DEEPDIST_CLONES
    #endif

    /* dst[i] += alpha * src[i] for 0 <= i < n, dst and src at any byte address.
       alpha == 1 gets its own loop: 1 * x == x, so only the multiply goes. */
    #define DEEPDIST_DEFINE_AXPY(NAME, T)                                        \\
        static DEEPDIST_CLONES void                                             \\
        NAME(char *dst, const char *src, T alpha, Py_ssize_t n)                 \\
        {                                                                       \\
            Py_ssize_t i, end = n * (Py_ssize_t)sizeof(T);                      \\
            T x, y;                                                             \\
            if (alpha == 1) {                                                   \\
                for (i = 0; i < end; i += sizeof(T)) {                          \\
                    memcpy(&x, src + i, sizeof(T));                             \\
                    memcpy(&y, dst + i, sizeof(T));                             \\
                    y += x;                                                     \\
                    memcpy(dst + i, &y, sizeof(T));                             \\
                }                                                               \\
            } else {                                                            \\
                for (i = 0; i < end; i += sizeof(T)) {                          \\
                    memcpy(&x, src + i, sizeof(T));                             \\
                    memcpy(&y, dst + i, sizeof(T));                             \\
                    y += alpha * x;                                             \\
                    memcpy(dst + i, &y, sizeof(T));                             \\
                }                                                               \\
            }                                                                   \\
        }
    DEEPDIST_DEFINE_AXPY(deepdist_axpy_f32, float)
    DEEPDIST_DEFINE_AXPY(deepdist_axpy_f64, double)

    /* The largest of the n words at src (any byte address), each masked with
       mask.  With the mask that clears a float's sign bit this is the bit
       pattern of the largest |x|: IEEE floats of one sign order as their bit
       patterns do as integers, and NaN's patterns lie above infinity's.
       Signed words: masked, they are never negative, and x86 compares signed
       64-bit integers in one AVX2 instruction but not unsigned ones. */
    #define DEEPDIST_DEFINE_MAX_MASKED(NAME, T)                                  \
        static DEEPDIST_CLONES T                                                \
        NAME(const char *src, Py_ssize_t n, T mask)                             \
        {                                                                       \
            Py_ssize_t i, end = n * (Py_ssize_t)sizeof(T);                      \
            T x, largest = 0;                                                   \
            for (i = 0; i < end; i += sizeof(T)) {                              \
                memcpy(&x, src + i, sizeof(T));                                 \
                x &= mask;                                                      \
                largest = x > largest ? x : largest;                            \
            }                                                                   \
            return largest;                                                     \
        }
    DEEPDIST_DEFINE_MAX_MASKED(deepdist_max_masked_16, int16_t)
    DEEPDIST_DEFINE_MAX_MASKED(deepdist_max_masked_32, int32_t)
    DEEPDIST_DEFINE_MAX_MASKED(deepdist_max_masked_64, int64_t)

    /* The half-precision wire, portable: one element at a time, converted
       on bit patterns, so that no FPU mode (flush-to-zero set by another
       library, say) can change a conversion. */

    /* The float16 nearest the float32 with bit pattern x, ties to even.  A NaN
       stays NaN, quieted and with its payload cut to the top 10 bits: what
       F16C does, so that both kinds of loop give the same bits. */
    static inline uint16_t deepdist_narrow_one(uint32_t x)
    {
        uint32_t sign = x >> 16 & 0x8000, a = x & 0x7fffffff, shift, kept, rest, tie;
        if (a > 0x7f800000)                     /* NaN */
            return (uint16_t)(sign | 0x7e00 | (a >> 13 & 0x3ff));
        if (a >= 0x477ff000)                    /* from 65520, halfway from 65504 to 2**16: inf (ties to even) */
            return (uint16_t)(sign | 0x7c00);
        if (a >= 0x38800000) {                  /* from 2**-14: a normal float16 */
            a -= (127 - 15) << 23;              /* rebias the exponent */
            /* Drop 13 significand bits, rounding half to even; a carry out
               of the significand steps the exponent up, as it should. */
            return (uint16_t)(sign | (a + 0xfff + (a >> 13 & 1)) >> 13);
        }
        if (a <= 0x33000000)                    /* up to 2**-25, half the smallest subnormal: 0 (ties to even) */
            return (uint16_t)sign;
        /* A subnormal float16 k * 2**-24 (k = 0x400, the smallest normal, if
           it rounds up): k is the significand with its implicit bit, shifted
           right by 150 - 24 - exponent, rounded half to even. */
        shift = 126 - (a >> 23);                /* 14 to 24 */
        a = (a & 0x7fffff) | 0x800000;
        kept = a >> shift;
        rest = a & ((1u << shift) - 1);
        tie = 1u << (shift - 1);
        return (uint16_t)(sign | (kept + (rest > tie || (rest == tie && (kept & 1)))));
    }

    /* The float32 equal to the float16 with bit pattern h (NaN quieted, its
       payload kept, as F16C does). */
    static inline float deepdist_widen_one(uint16_t h)
    {
        uint32_t sign = (uint32_t)(h & 0x8000) << 16, a = h & 0x7fff, bits;
        float x;
        if (a >= 0x7c00) {                      /* inf or NaN */
            bits = sign | 0x7f800000 | (a & 0x3ff) << 13 | (a > 0x7c00 ? 0x400000 : 0);
        } else if (a >= 0x400) {                /* normal: rebias the exponent */
            bits = sign | (a + ((127 - 15) << 10)) << 13;
        } else {
            /* Zero or subnormal, a * 2**-24: an exact product, and a normal
               float32 unless 0, so no FPU mode touches it. */
            x = (float)a * (1.0f / 16777216.0f);
            memcpy(&bits, &x, sizeof(bits));
            bits |= sign;
        }
        memcpy(&x, &bits, sizeof(x));
        return x;
    }

    /* dst[i] = src[i] rounded to float16 (n float32 at src, n float16 at dst),
       both at any byte address. */
    static void deepdist_narrow_portable(char *dst, const char *src, Py_ssize_t n)
    {
        Py_ssize_t i;
        uint32_t x;
        uint16_t h;
        for (i = 0; i < n; i++) {
            memcpy(&x, src + 4 * i, 4);
            h = deepdist_narrow_one(x);
            memcpy(dst + 2 * i, &h, 2);
        }
    }

    /* dst[i] = src[i] (n float16 at src, n float32 at dst), at any address. */
    static void deepdist_widen_portable(char *dst, const char *src, Py_ssize_t n)
    {
        Py_ssize_t i;
        uint16_t h;
        float x;
        for (i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            x = deepdist_widen_one(h);
            memcpy(dst + 4 * i, &x, 4);
        }
    }

    /* dst[i] += alpha * src[i] (n float16 at src, n float32 at dst), the
       product rounded to float32 first, as numpy's dst += alpha * src rounds
       it; alpha == 1 adds src[i] itself, as in deepdist_axpy_f32. */
    static void deepdist_axpy_half_portable(char *dst, const char *src, float alpha, Py_ssize_t n)
    {
        Py_ssize_t i;
        uint16_t h;
        float y;
        for (i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            memcpy(&y, dst + 4 * i, 4);
            if (alpha == 1)
                y += deepdist_widen_one(h);
            else
                y += alpha * deepdist_widen_one(h);
            memcpy(dst + 4 * i, &y, 4);
        }
    }

    /* The same three with F16C, eight elements per instruction, and the
       portable loops for the rest.  The loadu/storeu intrinsics are unaligned
       accesses, whatever their pointer types say.  GCC 11 and clang 18 are the
       first whose __builtin_cpu_supports knows "f16c". */
    #if defined(__x86_64__) && ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) \\
                                || (defined(__clang__) && __clang_major__ >= 18))
    #include <immintrin.h>
    #define DEEPDIST_HAVE_F16C 1
    #define DEEPDIST_F16C __attribute__((target("avx,f16c")))

    static inline DEEPDIST_F16C __m256 deepdist_load_halves(const char *src)
    {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src));
    }

    static DEEPDIST_F16C void deepdist_narrow_f16c(char *dst, const char *src, Py_ssize_t n)
    {
        Py_ssize_t i;
        for (i = 0; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(dst + 2 * i),
                             _mm256_cvtps_ph(_mm256_loadu_ps((const float *)(src + 4 * i)),
                                             _MM_FROUND_TO_NEAREST_INT));
        deepdist_narrow_portable(dst + 2 * i, src + 4 * i, n - i);
    }

    static DEEPDIST_F16C void deepdist_widen_f16c(char *dst, const char *src, Py_ssize_t n)
    {
        Py_ssize_t i;
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps((float *)(dst + 4 * i), deepdist_load_halves(src + 2 * i));
        deepdist_widen_portable(dst + 4 * i, src + 2 * i, n - i);
    }

    static DEEPDIST_F16C void deepdist_axpy_half_f16c(char *dst, const char *src, float alpha, Py_ssize_t n)
    {
        Py_ssize_t i;
        __m256 y, alphas = _mm256_set1_ps(alpha);
        if (alpha == 1) {
            for (i = 0; i + 8 <= n; i += 8) {
                y = _mm256_add_ps(_mm256_loadu_ps((const float *)(dst + 4 * i)), deepdist_load_halves(src + 2 * i));
                _mm256_storeu_ps((float *)(dst + 4 * i), y);
            }
        } else {
            for (i = 0; i + 8 <= n; i += 8) {
                y = _mm256_add_ps(_mm256_loadu_ps((const float *)(dst + 4 * i)),
                                  _mm256_mul_ps(alphas, deepdist_load_halves(src + 2 * i)));
                _mm256_storeu_ps((float *)(dst + 4 * i), y);
            }
        }
        deepdist_axpy_half_portable(dst + 4 * i, src + 2 * i, alpha, n - i);
    }
    #endif

    /* The loops the kernels call: portable until deepdist_pick_half_loops
       says otherwise. */
    static void (*deepdist_narrow)(char *, const char *, Py_ssize_t) = deepdist_narrow_portable;
    static void (*deepdist_widen)(char *, const char *, Py_ssize_t) = deepdist_widen_portable;
    static void (*deepdist_axpy_half)(char *, const char *, float, Py_ssize_t) = deepdist_axpy_half_portable;

    /* Points them at the F16C loops if f16c is set and the CPU has F16C (and
       the OS saves the AVX registers, which "avx" checks), else at the
       portable ones.  Returns whether F16C is in use. */
    static int deepdist_pick_half_loops(int f16c)
    {
    #ifdef DEEPDIST_HAVE_F16C
        __builtin_cpu_init();
        if (f16c && __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) {
            deepdist_narrow = deepdist_narrow_f16c;
            deepdist_widen = deepdist_widen_f16c;
            deepdist_axpy_half = deepdist_axpy_half_f16c;
            return 1;
        }
    #endif
        deepdist_narrow = deepdist_narrow_portable;
        deepdist_widen = deepdist_widen_portable;
        deepdist_axpy_half = deepdist_axpy_half_portable;
        return 0;
    }
    """
    void _prefetch_read "DEEPDIST_PREFETCH_READ"(const void *p) noexcept nogil
    void _prefetch_write "DEEPDIST_PREFETCH_WRITE"(const void *p) noexcept nogil
    void _axpy_f32 "deepdist_axpy_f32"(char *dst, const char *src, float alpha,
                                       Py_ssize_t n) noexcept nogil
    void _axpy_f64 "deepdist_axpy_f64"(char *dst, const char *src, double alpha,
                                       Py_ssize_t n) noexcept nogil
    int32_t _max_masked_32 "deepdist_max_masked_32"(const char *src, Py_ssize_t n,
                                                    int32_t mask) noexcept nogil
    int64_t _max_masked_64 "deepdist_max_masked_64"(const char *src, Py_ssize_t n,
                                                    int64_t mask) noexcept nogil
    int16_t _max_masked_16 "deepdist_max_masked_16"(const char *src, Py_ssize_t n,
                                                    int16_t mask) noexcept nogil
    float _widen_one "deepdist_widen_one"(uint16_t h) noexcept nogil
    # Function pointers, set by _pick_half_loops.
    void _narrow_loop "deepdist_narrow"(char *dst, const char *src, Py_ssize_t n) noexcept nogil
    void _widen_loop "deepdist_widen"(char *dst, const char *src, Py_ssize_t n) noexcept nogil
    void _axpy_half_loop "deepdist_axpy_half"(char *dst, const char *src, float alpha,
                                              Py_ssize_t n) noexcept nogil
    bint _pick_half_loops "deepdist_pick_half_loops"(bint f16c) noexcept nogil

_pick_half_loops(True)


# What the Cython kernels read: row indices, and floats as bit patterns.
ctypedef fused word:
    int64_t
    uint32_t
    uint64_t

# The bit pattern of a float32 / float64.
ctypedef fused uword:
    uint32_t
    uint64_t

cdef enum:
    _CACHE_LINE = 64
    # How many rows ahead scatter_add and gather prefetch.  Rows at random
    # places in a table larger than the cache each cost a memory round trip,
    # and a row is too short for the hardware prefetcher to pick up.  Measured
    # on rows of 40 B to 1.2 KB: 1.5-2x the rows/s, flat from 8 to 16 ahead.
    _PREFETCH_AHEAD = 12


# ---------------------------------------------------------------------------
# Memory access at any alignment.

cdef inline word _load(const word *p, Py_ssize_t i) noexcept nogil:
    """p[i], for p at any byte address."""
    cdef word x
    memcpy(&x, <const char *>p + i * <Py_ssize_t>sizeof(word), sizeof(word))
    return x


cdef inline void _prefetch_lines(const void *p, Py_ssize_t nbytes, bint write) noexcept nogil:
    """Hint the cache lines holding bytes [p, p + nbytes) into the cache."""
    cdef const char *line = <const char *>(<size_t>p & ~<size_t>(_CACHE_LINE - 1))
    cdef const char *end = <const char *>p + nbytes
    while line < end:
        if write:
            _prefetch_write(line)
        else:
            _prefetch_read(line)
        line += _CACHE_LINE


# ---------------------------------------------------------------------------
# Raw kernels: no Python objects, no checks; callers validate.

cdef inline void _axpy_kernel(floating *dst, const floating *src, floating alpha,
                              Py_ssize_t n) noexcept nogil:
    """dst[i] += alpha * src[i]  for 0 <= i < n."""
    if floating is float:
        _axpy_f32(<char *>dst, <const char *>src, alpha, n)
    else:
        _axpy_f64(<char *>dst, <const char *>src, alpha, n)


cdef Py_ssize_t _first_bad_row(const int64_t *rows, Py_ssize_t n, int64_t lo,
                               int64_t hi) noexcept nogil:
    """min{i : not lo <= rows[i] < hi}, or -1 if every row is in range (0 <= lo <= hi)."""
    cdef Py_ssize_t i
    cdef uint64_t width = <uint64_t>(hi - lo)
    for i in range(n):
        # One unsigned compare catches both sides: below lo, the difference wraps
        # around to more than any width (unsigned arithmetic wraps by definition).
        if <uint64_t>_load(rows, i) - <uint64_t>lo >= width:
            return i
    return -1


cdef bint _ascending_kernel(const int64_t *rows, Py_ssize_t n) noexcept nogil:
    """Whether rows[i] <= rows[i + 1] for every i (n >= 1)."""
    cdef Py_ssize_t i
    cdef int64_t previous = _load(rows, 0), row
    for i in range(1, n):
        row = _load(rows, i)
        if row < previous:
            return False
        previous = row
    return True


cdef void _scatter_add_kernel(floating[:, ::1] dst, const int64_t *rows,
                              const floating[:, ::1] src, floating alpha) noexcept nogil:
    """dst[rows[i], :] += alpha * src[i, :]  for i = 0, 1, ..., len(src) - 1.

    Sequential in i, so repeated rows accumulate.  rows must be in range.
    """
    cdef Py_ssize_t i, n = src.shape[0], dim = src.shape[1]
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            _prefetch_lines(&dst[_load(rows, i + _PREFETCH_AHEAD), 0], dim * sizeof(floating), True)
        _axpy_kernel(&dst[_load(rows, i), 0], &src[i, 0], alpha, dim)


cdef void _gather_kernel(const floating[:, ::1] src, const int64_t *rows,
                         floating[:, ::1] out) noexcept nogil:
    """out[i, :] = src[rows[i], :]  for 0 <= i < len(out).  rows must be in range."""
    cdef Py_ssize_t i, n = out.shape[0], row_bytes = out.shape[1] * sizeof(floating)
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            _prefetch_lines(&src[_load(rows, i + _PREFETCH_AHEAD), 0], row_bytes, False)
        memcpy(&out[i, 0], &src[_load(rows, i), 0], row_bytes)


cdef void _scatter_add_half_kernel(float[:, ::1] dst, const int64_t *rows,
                                   const uint16_t[:, ::1] src, float alpha) noexcept nogil:
    """_scatter_add_kernel for float16 src (bit patterns): dst[rows[i], :] += alpha * src[i, :]."""
    cdef Py_ssize_t i, n = src.shape[0], dim = src.shape[1]
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            _prefetch_lines(&dst[_load(rows, i + _PREFETCH_AHEAD), 0], dim * sizeof(float), True)
        _axpy_half_loop(<char *>&dst[_load(rows, i), 0], <const char *>&src[i, 0], alpha, dim)


cdef void _gather_half_kernel(const float[:, ::1] src, const int64_t *rows,
                              uint16_t[:, ::1] out) noexcept nogil:
    """_gather_kernel into float16 out (bit patterns): out[i, :] = src[rows[i], :] rounded to float16."""
    cdef Py_ssize_t i, n = out.shape[0], dim = out.shape[1]
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            _prefetch_lines(&src[_load(rows, i + _PREFETCH_AHEAD), 0], dim * sizeof(float), False)
        _narrow_loop(<char *>&out[i, 0], <const char *>&src[_load(rows, i), 0], dim)


cdef void _scatter_kernel(floating[:, ::1] dst, const int64_t *rows,
                          const floating[:, ::1] src) noexcept nogil:
    """dst[rows[i], :] = src[i, :]  for i = 0, 1, ..., len(src) - 1 (in order: a
    repeated row ends up holding its last source row).  rows must be in range."""
    cdef Py_ssize_t i, n = src.shape[0], row_bytes = src.shape[1] * sizeof(floating)
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            _prefetch_lines(&dst[_load(rows, i + _PREFETCH_AHEAD), 0], row_bytes, True)
        memcpy(&dst[_load(rows, i), 0], &src[i, 0], row_bytes)


cdef Py_ssize_t _nonzero_rows_kernel(const uword *src, Py_ssize_t n_rows, Py_ssize_t dim,
                                     int64_t *out) noexcept nogil:
    """Writes to out, ascending, every row i of the C-contiguous (n_rows, dim)
    matrix of floats whose bit patterns are src that holds a value other than
    +0.0 and -0.0 (NaN included); returns how many it wrote.
    """
    cdef Py_ssize_t i, j, count = 0
    cdef const uword *row
    cdef uword bits
    for i in range(n_rows):
        row = src + i * dim
        # Shifting out the sign bit leaves zero exactly for +0.0 and -0.0.  An
        # integer OR over the whole row is branch-free and vectorises on
        # baseline SSE2 for both widths; gcc leaves a float64 compare scalar.
        bits = 0
        for j in range(dim):
            bits |= _load(row, j) << 1
        if bits:
            out[count] = i
            count += 1
    return count


# ---------------------------------------------------------------------------
# Typed layer: memoryview conversion (ValueError on wrong ndim, non-contiguous
# or read-only dst), shape and bounds checks, then the raw kernel without the GIL.

cdef int _axpy(floating[::1] dst, const floating[::1] src, double alpha) except -1:
    cdef Py_ssize_t n = dst.shape[0]
    if src.shape[0] != n:
        raise ValueError(f"axpy: dst has {n} elements but src has {src.shape[0]}")
    if n:
        with nogil:
            # Rounding alpha to the array type first makes float32 results equal
            # numpy's dst += np.float32(alpha) * src.
            _axpy_kernel(&dst[0], &src[0], <floating>alpha, n)
    return 0


cdef int _axpy_half(float[::1] dst, const uint16_t[::1] src, double alpha) except -1:
    cdef Py_ssize_t n = dst.shape[0]
    if src.shape[0] != n:
        raise ValueError(f"axpy: dst has {n} elements but src has {src.shape[0]}")
    if n:
        with nogil:
            _axpy_half_loop(<char *>&dst[0], <const char *>&src[0], <float>alpha, n)
    return 0


cdef bint _check_row_args(str func, str name, Py_ssize_t shape0, Py_ssize_t shape1, str table,
                          Py_ssize_t n_rows, Py_ssize_t dim, const int64_t[::1] rows) except -1:
    """What every row kernel checks before it writes: the per-row array ``name`` has shape
    (len(rows), dim) and every row is in [0, n_rows) of ``table``.  Returns whether
    there is anything to do."""
    cdef Py_ssize_t n = rows.shape[0], bad
    if shape0 != n or shape1 != dim:
        raise ValueError(f"{func}: {name} has shape ({shape0}, {shape1}), "
                         f"expected (len(rows), {table}.shape[1]) = ({n}, {dim})")
    if n == 0:
        return False
    with nogil:
        bad = _first_bad_row(&rows[0], n, 0, n_rows)
    if bad >= 0:
        raise IndexError(f"{func}: rows[{bad}] = {_load(&rows[0], bad)} is out of "
                         f"bounds for an array with {n_rows} rows; nothing was written")
    return dim != 0


cdef int _scatter_add(floating[:, ::1] dst, const int64_t[::1] rows,
                      const floating[:, ::1] src, double alpha) except -1:
    if _check_row_args("scatter_add", "src", src.shape[0], src.shape[1], "dst", dst.shape[0], dst.shape[1],
                       rows):
        with nogil:
            _scatter_add_kernel(dst, &rows[0], src, <floating>alpha)
    return 0


cdef int _scatter_add_half(float[:, ::1] dst, const int64_t[::1] rows,
                           const uint16_t[:, ::1] src, double alpha) except -1:
    if _check_row_args("scatter_add", "src", src.shape[0], src.shape[1], "dst", dst.shape[0], dst.shape[1],
                       rows):
        with nogil:
            _scatter_add_half_kernel(dst, &rows[0], src, <float>alpha)
    return 0


cdef int _gather(const floating[:, ::1] src, const int64_t[::1] rows,
                 floating[:, ::1] out) except -1:
    if _check_row_args("gather", "out", out.shape[0], out.shape[1], "src", src.shape[0], src.shape[1], rows):
        with nogil:
            _gather_kernel(src, &rows[0], out)
    return 0


cdef int _gather_half(const float[:, ::1] src, const int64_t[::1] rows,
                      uint16_t[:, ::1] out) except -1:
    if _check_row_args("gather", "out", out.shape[0], out.shape[1], "src", src.shape[0], src.shape[1], rows):
        with nogil:
            _gather_half_kernel(src, &rows[0], out)
    return 0


cdef int _scatter(floating[:, ::1] dst, const int64_t[::1] rows,
                  const floating[:, ::1] src) except -1:
    if _check_row_args("scatter", "src", src.shape[0], src.shape[1], "dst", dst.shape[0], dst.shape[1], rows):
        with nogil:
            _scatter_kernel(dst, &rows[0], src)
    return 0


cdef object _nonzero_rows(const floating[:, ::1] src):
    cdef Py_ssize_t count = 0
    result = np.empty(src.shape[0], dtype=np.int64)
    cdef int64_t[::1] out = result
    if src.shape[0] and src.shape[1]:
        with nogil:
            if floating is float:
                count = _nonzero_rows_kernel(<const uint32_t *>&src[0, 0], src.shape[0],
                                             src.shape[1], &out[0])
            else:
                count = _nonzero_rows_kernel(<const uint64_t *>&src[0, 0], src.shape[0],
                                             src.shape[1], &out[0])
    # A copy rather than a view, so the full-length buffer is freed; it is at
    # most 8 bytes per row, small next to the row that was scanned.
    return result[:count].copy()


cdef double _max_abs(const floating[::1] src) except? -1:
    cdef int32_t bits32 = 0
    cdef int64_t bits64 = 0
    cdef float largest32
    cdef double largest64
    if floating is float:
        if src.shape[0]:
            with nogil:
                bits32 = _max_masked_32(<const char *>&src[0], src.shape[0], 0x7fffffff)
        memcpy(&largest32, &bits32, sizeof(float))
        return largest32
    else:
        if src.shape[0]:
            with nogil:
                bits64 = _max_masked_64(<const char *>&src[0], src.shape[0], 0x7fffffffffffffff)
        memcpy(&largest64, &bits64, sizeof(double))
        return largest64


cdef double _max_abs_half(const uint16_t[::1] src) except? -1:
    cdef int16_t bits = 0
    if src.shape[0]:
        with nogil:
            bits = _max_masked_16(<const char *>&src[0], src.shape[0], 0x7fff)
    return _widen_one(<uint16_t>bits)


# ---------------------------------------------------------------------------
# Public API: dtype dispatch with explicit TypeErrors (Cython's own fused
# dispatch would report a mismatch as ValueError("Buffer dtype mismatch ...")).

cdef object _dtype(object a):
    return np.asarray(a).dtype


cdef bint _is_float32(str func, str name, object a) except -1:
    dt = _dtype(a)
    if dt == np.float32:
        return True
    if dt == np.float64:
        return False
    raise TypeError(f"{func}: {name} must be float32 or float64, got {dt}")


cdef bint _pair_is_float32(str func, str a_name, object a, str b_name, object b) except -1:
    cdef bint single = _is_float32(func, a_name, a)
    if _is_float32(func, b_name, b) != single:
        raise TypeError(f"{func}: {a_name} is {_dtype(a)} but {b_name} is {_dtype(b)}; "
                        f"both must have the same dtype")
    return single


cdef enum:
    # What _wire_dtypes found.
    _FLOAT64_BOTH
    _FLOAT32_BOTH
    _FLOAT16_WIRE


cdef int _wire_dtypes(str func, str param_name, object param, str wire_name, object wire) except -1:
    """Which dtypes a parameter-side and a wire-side array have: both float32, both float64, or float16
    on the wire side of a float32 parameter (the half-precision wire)."""
    if _dtype(wire) == np.float16:
        if _is_float32(func, param_name, param):
            return _FLOAT16_WIRE
        raise TypeError(f"{func}: {wire_name} is float16 but {param_name} is {_dtype(param)}; float16 goes only "
                        f"with float32")
    return _FLOAT32_BOTH if _pair_is_float32(func, param_name, param, wire_name, wire) else _FLOAT64_BOTH


cdef object _half_bits(object a):
    """float16 a as its uint16 bit patterns, sharing its memory: Cython has no float16 memoryview.  Anything
    but an ndarray goes through memoryview(), so that a non-buffer raises TypeError instead of being copied
    (as the typed memoryviews of the other dtypes do)."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(memoryview(a))
    return a.view(np.uint16)


cdef int _check_apart(str func, str a_name, object a, str b_name, object b) except -1:
    """Refuse an output that shares memory with an input: the loops read the input as they write the
    output, so overlapping buffers would give results that depend on the loop (and memcpy's behaviour on
    overlap is undefined)."""
    if np.may_share_memory(a, b):
        raise ValueError(f"{func}: {a_name} and {b_name} share memory; pass a copy of {b_name}")
    return 0


cdef int _check_rows(str func, object rows) except -1:
    dt = _dtype(rows)
    if dt != np.int64:
        raise TypeError(f"{func}: rows must be int64, got {dt}")
    return 0


def axpy(dst, src, alpha=1.0):
    """dst += alpha * src, in place.

    dst: 1-D C-contiguous writable float32/float64 array.
    src: 1-D C-contiguous array (read-only and unaligned are fine), same dtype
    and length as dst, or float16 for a float32 dst (widened exactly).  alpha
    is rounded to the dtype of dst before use, and alpha * src to it after.
    Raises TypeError on dtype mismatch, ValueError on length mismatch.
    """
    cdef int dtypes = _wire_dtypes("axpy", "dst", dst, "src", src)
    _check_apart("axpy", "dst", dst, "src", src)
    if dtypes == _FLOAT16_WIRE:
        _axpy_half(dst, _half_bits(src), alpha)
    elif dtypes == _FLOAT32_BOTH:
        _axpy[cython.float](dst, src, alpha)
    else:
        _axpy[cython.double](dst, src, alpha)


def scatter_add(dst, rows, src, alpha=1.0):
    """dst[rows[i], :] += alpha * src[i, :] for each i, in place.

    Repeated rows accumulate (unlike ``dst[rows] += src``).
    dst: 2-D C-contiguous writable float32/float64 array.
    rows: 1-D contiguous int64 array.  src: shape (len(rows), dst.shape[1]),
    same dtype as dst, or float16 for a float32 dst (rounded as axpy rounds).
    Every row is bounds-checked before anything is written: a row outside
    [0, dst.shape[0]) raises IndexError and leaves dst unchanged.
    Raises TypeError on dtype mismatch, ValueError on shape mismatch.
    """
    _check_rows("scatter_add", rows)
    cdef int dtypes = _wire_dtypes("scatter_add", "dst", dst, "src", src)
    _check_apart("scatter_add", "dst", dst, "src", src)
    if dtypes == _FLOAT16_WIRE:
        _scatter_add_half(dst, rows, _half_bits(src), alpha)
    elif dtypes == _FLOAT32_BOTH:
        _scatter_add[cython.float](dst, rows, src, alpha)
    else:
        _scatter_add[cython.double](dst, rows, src, alpha)


def gather(src, rows, out):
    """out[i, :] = src[rows[i], :] for each i.

    src: 2-D C-contiguous float32/float64 array.  rows: 1-D contiguous int64
    array.  out: writable, shape (len(rows), src.shape[1]), same dtype as
    src, or float16 for float32 src (the rows rounded as narrow rounds).
    Rows are bounds-checked first: IndexError leaves out unchanged.
    Raises TypeError on dtype mismatch, ValueError on shape mismatch.
    """
    _check_rows("gather", rows)
    cdef int dtypes = _wire_dtypes("gather", "src", src, "out", out)
    _check_apart("gather", "out", out, "src", src)
    if dtypes == _FLOAT16_WIRE:
        _gather_half(src, rows, _half_bits(out))
    elif dtypes == _FLOAT32_BOTH:
        _gather[cython.float](src, rows, out)
    else:
        _gather[cython.double](src, rows, out)


def scatter(dst, rows, src):
    """dst[rows[i], :] = src[i, :] for each i, in place: gather's inverse.

    A repeated row ends up holding the last of its source rows.
    dst: 2-D C-contiguous writable float32/float64 array.  rows: 1-D
    contiguous int64 array.  src: shape (len(rows), dst.shape[1]), same dtype
    as dst.  Rows are bounds-checked first: IndexError leaves dst unchanged.
    Raises TypeError on dtype mismatch, ValueError on shape mismatch.
    """
    _check_rows("scatter", rows)
    cdef bint single = _pair_is_float32("scatter", "dst", dst, "src", src)
    _check_apart("scatter", "dst", dst, "src", src)
    if single:
        _scatter[cython.float](dst, rows, src)
    else:
        _scatter[cython.double](dst, rows, src)


def index_words(sentences, dict key_to_index not None, Py_ssize_t size):
    """The vocabulary indexes of the words of ``sentences`` that key_to_index has, in order, and where each
    sentence's end among them is: returns (indexes uint32, ends int64), sentence s's words being
    ``indexes[ends[s - 1]:ends[s]]`` (from 0 for the first).

    sentences: a list of lists of words (str).  Words key_to_index lacks are skipped.  An index outside
    [0, size) raises IndexError.  What word2vec looks up once per chunk, for the rows it pulls and for the
    training alike: a dict lookup per word in C, with the word's cached hash.  A lookup can run Python code
    (a key's __eq__, a value's __index__); should it change the lists, RuntimeError, never a write past the
    result.
    """
    cdef Py_ssize_t s, j, n = 0, count, capacity, index
    cdef PyObject *found
    cdef list words
    cdef object word
    if type(sentences) is not list:
        raise TypeError(f"index_words: sentences must be a list of lists, got {type(sentences).__name__}")
    if not 0 <= size <= 1 << 32:
        raise ValueError(f"index_words: a vocabulary of {size} words has no uint32 indexes")
    count = PyList_GET_SIZE(sentences)
    ends_array = np.empty(count, np.int64)
    cdef int64_t[::1] ends = ends_array
    for s in range(count):
        if type(<object>PyList_GET_ITEM(sentences, s)) is not list:
            raise TypeError(f"index_words: each sentence must be a list, got "
                            f"{type(<object>PyList_GET_ITEM(sentences, s)).__name__}")
        n += PyList_GET_SIZE(<list>PyList_GET_ITEM(sentences, s))
    capacity = n
    indexes_array = np.empty(capacity, np.uint32)  # room for every word; cut to the known ones
    cdef uint32_t[::1] indexes = indexes_array
    n = 0
    for s in range(count):
        if PyList_GET_SIZE(sentences) != count:
            raise RuntimeError("index_words: sentences changed while their words were looked up")
        words = <list>PyList_GET_ITEM(sentences, s)  # a reference held: the list outlives any change
        j = 0
        while j < PyList_GET_SIZE(words):
            word = <object>PyList_GET_ITEM(words, j)
            j += 1
            found = PyDict_GetItemWithError(key_to_index, word)  # NULL and an exception: raised here
            if found is NULL:
                continue
            index = <object>found
            if not 0 <= index < size:
                raise IndexError(f"index_words: word {word!r} has index {index}, outside the vocabulary of {size}")
            if n == capacity:
                raise RuntimeError("index_words: sentences changed while their words were looked up")
            indexes[n] = <uint32_t>index
            n += 1
        ends[s] = n
    return indexes_array[:n], ends_array


def first_row_outside(rows, lo, hi):
    """The position of the first of the int64 ``rows`` outside [lo, hi), or -1 if none is.

    rows: 1-D contiguous int64 array.  lo, hi: integers (TypeError otherwise) with 0 <= lo <= hi < 2**63
    (ValueError otherwise).  One pass in C: what a shard checks a request's rows against the range it owns
    with.
    """
    _check_rows("first_row_outside", rows)
    cdef const int64_t[::1] view = rows
    lo, hi = operator.index(lo), operator.index(hi)
    if not 0 <= lo <= hi <= INT64_MAX:
        raise ValueError(f"first_row_outside: need 0 <= lo <= hi < 2**63, got lo={lo} hi={hi}")
    cdef int64_t low = lo, high = hi
    cdef Py_ssize_t bad = -1
    if view.shape[0]:
        with nogil:
            bad = _first_bad_row(&view[0], view.shape[0], low, high)
    return bad


def ascending(rows):
    """Whether the int64 ``rows`` (1-D contiguous) never go down: what lets a client cut them by owner with
    a binary search per shard. One pass in C, no temporary."""
    _check_rows("ascending", rows)
    cdef const int64_t[::1] view = rows
    cdef bint result = True
    if view.shape[0] > 1:
        with nogil:
            result = _ascending_kernel(&view[0], view.shape[0])
    return result


def nonzero_rows(src):
    """Ascending int64 indices of the rows of 2-D C-contiguous src holding any element != 0.

    NaN counts as non-zero, -0.0 as zero.
    """
    if _is_float32("nonzero_rows", "src", src):
        return _nonzero_rows[cython.float](src)
    return _nonzero_rows[cython.double](src)


def max_abs(src):
    """The largest |x| over 1-D contiguous float32, float64 or float16 ``src``, as a float (0.0 if empty).

    NaN if any element is NaN, else infinity if any is +-inf: so the values are all finite exactly when
    the result is.  One pass, no branch: what a shard checks each update with, and bounds the values it
    holds by.
    """
    if _dtype(src) == np.float16:
        return _max_abs_half(_half_bits(src))
    if _is_float32("max_abs", "src", src):
        return _max_abs[cython.float](src)
    return _max_abs[cython.double](src)


def narrow(src, out):
    """out[i] = src[i] rounded to the nearest float16, for every i: what a float32 frame goes on the
    half-precision wire as.

    src: 1-D C-contiguous float32 array.  out: 1-D C-contiguous writable float16 array of the same
    length.  Ties round to even; from +-65520 on (past +-65504, the largest float16) the result is
    +-inf; float16 subnormals are kept; NaN stays NaN.  Both at any byte address.
    Raises TypeError on other dtypes, ValueError on a length mismatch.
    """
    if _dtype(src) != np.float32 or _dtype(out) != np.float16:
        raise TypeError(f"narrow: src must be float32 and out float16, got {_dtype(src)} and {_dtype(out)}")
    _check_apart("narrow", "out", out, "src", src)
    cdef const float[::1] values = src
    cdef uint16_t[::1] halves = _half_bits(out)
    cdef Py_ssize_t n = values.shape[0]
    if halves.shape[0] != n:
        raise ValueError(f"narrow: src has {n} elements but out has {halves.shape[0]}")
    if n:
        with nogil:
            _narrow_loop(<char *>&halves[0], <const char *>&values[0], n)


def widen(src, out):
    """out[i] = src[i], exactly, for every i: a float16 frame from the half-precision wire as float32.

    src: 1-D C-contiguous float16 array.  out: 1-D C-contiguous writable float32 array of the same
    length.  Both at any byte address.
    Raises TypeError on other dtypes, ValueError on a length mismatch.
    """
    if _dtype(src) != np.float16 or _dtype(out) != np.float32:
        raise TypeError(f"widen: src must be float16 and out float32, got {_dtype(src)} and {_dtype(out)}")
    _check_apart("widen", "out", out, "src", src)
    cdef const uint16_t[::1] halves = _half_bits(src)
    cdef float[::1] values = out
    cdef Py_ssize_t n = halves.shape[0]
    if values.shape[0] != n:
        raise ValueError(f"widen: src has {n} elements but out has {values.shape[0]}")
    if n:
        with nogil:
            _widen_loop(<char *>&values[0], <const char *>&halves[0], n)


def _use_f16c(bint f16c):
    """For tests: run narrow, widen and the float16 paths of axpy, scatter_add and gather on the F16C loops
    (if f16c and the CPU has F16C) or on the portable ones, which otherwise run only for loop tails and on
    other CPUs.  Returns whether the F16C loops are in use.  The module starts with them where it can."""
    return _pick_half_loops(f16c)
