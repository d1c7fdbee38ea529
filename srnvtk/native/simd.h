/* What the srnvtk kernels share: a vector of LANES points, fast sines, and a dense layer over such vectors.
 *
 * Every point of a vector runs the same instruction sequence whatever its lane, so a point's value does not
 * depend on which block (stride, piece) it is decoded in. Compiled with -march=native (srnvtk/native).
 */
#ifndef SRNVTK_SIMD_H
#define SRNVTK_SIMD_H

#include <stdint.h>

#ifdef __AVX512F__
#define LANES 16 /* points evaluated together: one SIMD register of floats */
#else
#define LANES 8
#endif
#define OUT_BLOCK 8 /* a dense layer's outputs accumulated together, in registers; widths are padded to it */

/* One float per lane (GCC/Clang vector extension: arithmetic is element-wise, scalars broadcast). */
typedef float lanes_f __attribute__((vector_size(4 * LANES)));
typedef int32_t lanes_i __attribute__((vector_size(4 * LANES)));

/* x - k pi with k the nearest integer to x / pi: pi in three parts (Cody-Waite), so r stays exact for
 * moderate k; the result lies in [-pi/2, pi/2]. */
static inline lanes_f reduce_by_pi(lanes_f x, lanes_f *k_out) {
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    lanes_f k = (x * 0.318309886183790672f + round_magic) - round_magic;
    lanes_f r = x - k * 3.140625f;
    r = r - k * 9.67502593994140625e-4f;
    r = r - k * 1.509957990978376432e-7f;
    *k_out = k;
    return r;
}

/* sin(r) on [-pi/2, pi/2]: the degree-11 odd Taylor polynomial (truncation error < 6e-8 there). */
static inline lanes_f sin_reduced(lanes_f r) {
    lanes_f r2 = r * r;
    lanes_f p = r2 * -2.5052108385441720e-8f + 2.7557319223985893e-6f;
    p = p * r2 - 1.9841269841269841e-4f;
    p = p * r2 + 8.3333333333333333e-3f;
    p = p * r2 - 1.6666666666666667e-1f;
    return r + r * r2 * p;
}

/* Lanes where |v| > 1 (only when the reduction no longer holds, |x| beyond ~1e7) become +-1; NaN passes. */
static inline lanes_f clamp_unit(lanes_f v) {
    lanes_i too_big = (v > 1.0f) | (v < -1.0f);
    lanes_i bits = (lanes_i)v;
    lanes_i signed_one = (bits & INT32_MIN) | 0x3f800000; /* 0x3f800000: the bits of 1.0f */
    return (lanes_f)((too_big & signed_one) | (~too_big & bits));
}

/* sin(x)^2: period pi, so the sign of the reduced sine is moot. Capped at 1 for huge |x| (see clamp_unit);
 * a NaN may become 1 here, but Snake adds x, which carries it. */
static inline lanes_f sin_squared(lanes_f x) {
    lanes_f k;
    lanes_f s = sin_reduced(reduce_by_pi(x, &k));
    lanes_f s2 = s * s;
    lanes_i too_big = s2 > 1.0f;
    return (lanes_f)(((lanes_i)s2 & ~too_big) | (too_big & 0x3f800000)); /* 0x3f800000: the bits of 1.0f */
}

/* sin(x) = (-1)^k sin(x - k pi). */
static inline lanes_f sine(lanes_f x) {
    lanes_f k;
    lanes_f s = sin_reduced(reduce_by_pi(x, &k));
    lanes_i odd = __builtin_convertvector(k, lanes_i) << 31; /* k's parity moved to the sign bit */
    return clamp_unit((lanes_f)((lanes_i)s ^ odd));
}

/* Snake activation x + sin(x)^2 (fV-SRN). */
static inline lanes_f snake(lanes_f x) { return x + sin_squared(x); }

enum activation { ACTIVATION_SNAKE, ACTIVATION_SINE };

/* y = activation(W x + b) for LANES points. weights_t is (in, out): the transposed torch weight; out is a
 * multiple of OUT_BLOCK (padded with zero units). */
static inline void dense(const float *restrict weights_t, const float *restrict bias, int64_t in, int64_t out,
                         const lanes_f *restrict x, lanes_f *restrict y, enum activation activation) {
    for (int64_t o = 0; o < out; o += OUT_BLOCK) {
        lanes_f acc[OUT_BLOCK];
        for (int k = 0; k < OUT_BLOCK; k++) acc[k] = (lanes_f){} + bias[o + k];
        for (int64_t c = 0; c < in; c++) {
            const float *w = weights_t + c * out + o;
            lanes_f xc = x[c];
            for (int k = 0; k < OUT_BLOCK; k++) acc[k] += w[k] * xc;
        }
        for (int k = 0; k < OUT_BLOCK; k++)
            y[o + k] = activation == ACTIVATION_SNAKE ? snake(acc[k]) : sine(acc[k]);
    }
}

/* head . x + bias for LANES points (a layer with one output). */
static inline lanes_f dot(const float *restrict head, float bias, int64_t in, const lanes_f *restrict x) {
    lanes_f result = (lanes_f){} + bias;
    for (int64_t c = 0; c < in; c++) result += head[c] * x[c];
    return result;
}

#endif
