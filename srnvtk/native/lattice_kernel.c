/* Fused CPU kernel for decoding an fV-SRN on a lattice (see srnvtk/lattice.py for the maths).
 *
 * Per output voxel: the x interpolation of a row of the projected grid, the first layer's per-axis tables,
 * then every Linear + Snake layer and the head, LANES voxels at a time with all activations in registers
 * and L1. The torch path makes ~10 passes over cache-spilling activation blocks per layer stack; this makes
 * none, and its Snake uses a short polynomial instead of a library sine.
 *
 * Compiled at run time by srnvtk/native.py with -DWIDTH=<padded MLP width> (a multiple of OUT_BLOCK).
 * Every voxel runs the same instruction sequence whatever its lane or block, so a voxel's value does not
 * depend on which lattice (stride, piece) it is decoded in.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef WIDTH
#error "compile with -DWIDTH=<MLP width, a multiple of 8>"
#endif
#ifdef __AVX512F__
#define LANES 16 /* voxels evaluated together: one SIMD register of floats */
#else
#define LANES 8
#endif
#define OUT_BLOCK 8 /* output units accumulated together, in registers */
#if WIDTH % OUT_BLOCK
#error "WIDTH must be a multiple of OUT_BLOCK"
#endif

/* One float per lane (GCC/Clang vector extension: arithmetic is element-wise, scalars broadcast). */
typedef float lanes_f __attribute__((vector_size(4 * LANES)));
typedef int32_t lanes_i __attribute__((vector_size(4 * LANES)));
typedef lanes_f activations[WIDTH]; /* activations[c]: channel c of the LANES voxels */

/* sin(x)^2 to ~1e-7: reduce by the nearest multiple of pi (sin^2 has period pi, so its sign is moot), then a
 * degree-11 odd Taylor polynomial on [-pi/2, pi/2] (truncation error < 6e-8 there). */
static inline lanes_f sin_squared(lanes_f x) {
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    lanes_f k = (x * 0.318309886183790672f + round_magic) - round_magic;
    lanes_f r = x - k * 3.140625f; /* pi in three parts (Cody-Waite), so r stays exact for moderate k */
    r = r - k * 9.67502593994140625e-4f;
    r = r - k * 1.509957990978376432e-7f;
    lanes_f r2 = r * r;
    lanes_f p = r2 * -2.5052108385441720e-8f + 2.7557319223985893e-6f;
    p = p * r2 - 1.9841269841269841e-4f;
    p = p * r2 + 8.3333333333333333e-3f;
    p = p * r2 - 1.6666666666666667e-1f;
    lanes_f s = r + r * r2 * p;
    lanes_f s2 = s * s;
    /* huge |x| (the reduction no longer exact): stay in sin^2's range; a NaN passes through */
    lanes_i too_big = s2 > 1.0f;
    return (lanes_f)((too_big & (lanes_i)((lanes_f){} + 1.0f)) | (~too_big & (lanes_i)s2));
}

static inline lanes_f snake(lanes_f x) { return x + sin_squared(x); }

/* out = Snake(W in + b); weights_t is (WIDTH in, WIDTH out): the transposed torch weight. */
static void dense_snake(const float *restrict weights_t, const float *restrict bias, const activations in,
                        activations out) {
    for (int o = 0; o < WIDTH; o += OUT_BLOCK) {
        lanes_f acc[OUT_BLOCK];
        for (int k = 0; k < OUT_BLOCK; k++) acc[k] = (lanes_f){} + bias[o + k];
        for (int c = 0; c < WIDTH; c++) {
            const float *w = weights_t + (int64_t)c * WIDTH + o;
            for (int k = 0; k < OUT_BLOCK; k++) acc[k] += w[k] * in[c];
        }
        for (int k = 0; k < OUT_BLOCK; k++) out[o + k] = snake(acc[k]);
    }
}

static void lerp_rows(const float *restrict a, const float *restrict b, float t, int64_t n, float *restrict out) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + t * (b[i] - a[i]);
}

/* One axis of the output lattice: for output index i, interpolate between source lo[i] and hi[i] by t[i]. */
typedef struct {
    const int64_t *lo;
    const int64_t *hi;
    const float *t;
    int64_t n;
} axis_weights;

/* Values of nz x ny x nx voxels into out (z, y, x order); 0 on success, -1 when scratch memory is short.
 *   grid        (depth, height, width_cells, WIDTH): the grid projected through the first layer
 *   table_x/y/z (n, WIDTH): each axis' position/Fourier share of the first layer (table_x holds its bias)
 *   weights_t   (hidden, WIDTH, WIDTH), biases (hidden, WIDTH): the Linear+Snake layers after the first
 *   head        (WIDTH): the last Linear's weights; head_bias its bias */
int srn_lattice_decode(const float *grid, int64_t height, int64_t width_cells, const int64_t *z_lo,
                       const int64_t *z_hi, const float *z_t, int64_t nz, const int64_t *y_lo, const int64_t *y_hi,
                       const float *y_t, int64_t ny, const int64_t *x_lo, const int64_t *x_hi, const float *x_t,
                       int64_t nx, const float *table_x, const float *table_y, const float *table_z,
                       const float *weights_t, const float *biases, int64_t hidden, const float *head,
                       float head_bias, float *out) {
    const axis_weights zs = {z_lo, z_hi, z_t, nz}, ys = {y_lo, y_hi, y_t, ny}, xs = {x_lo, x_hi, x_t, nx};
    const int64_t plane_size = height * width_cells * WIDTH, row_size = width_cells * WIDTH;
    float *plane = malloc(sizeof(float) * plane_size);
    float *row = malloc(sizeof(float) * row_size);
    activations *buffers = aligned_alloc(64, 2 * sizeof(activations));
    if (!plane || !row || !buffers) {
        free(plane);
        free(row);
        free(buffers);
        return -1;
    }
    float row_table[WIDTH];
    for (int64_t z = 0; z < zs.n; z++) {
        lerp_rows(grid + zs.lo[z] * plane_size, grid + zs.hi[z] * plane_size, zs.t[z], plane_size, plane);
        for (int64_t y = 0; y < ys.n; y++) {
            lerp_rows(plane + ys.lo[y] * row_size, plane + ys.hi[y] * row_size, ys.t[y], row_size, row);
            for (int c = 0; c < WIDTH; c++) row_table[c] = table_y[y * WIDTH + c] + table_z[z * WIDTH + c];
            float *values = out + (z * ys.n + y) * xs.n;
            for (int64_t x0 = 0; x0 < xs.n; x0 += LANES) {
                activations *h = &buffers[0], *next = &buffers[1];
                for (int v = 0; v < LANES; v++) {
                    /* lanes past the row's end repeat its last voxel; their results are not stored */
                    int64_t x = x0 + v < xs.n ? x0 + v : xs.n - 1;
                    const float *a = row + xs.lo[x] * WIDTH, *b = row + xs.hi[x] * WIDTH, *tx = table_x + x * WIDTH;
                    float t = xs.t[x];
                    for (int c = 0; c < WIDTH; c++) (*h)[c][v] = ((a[c] + t * (b[c] - a[c])) + tx[c]) + row_table[c];
                }
                for (int c = 0; c < WIDTH; c++) (*h)[c] = snake((*h)[c]);
                for (int64_t layer = 0; layer < hidden; layer++) {
                    dense_snake(weights_t + layer * WIDTH * WIDTH, biases + layer * WIDTH, *h, *next);
                    activations *swap = h;
                    h = next;
                    next = swap;
                }
                lanes_f result = (lanes_f){} + head_bias;
                for (int c = 0; c < WIDTH; c++) result += head[c] * (*h)[c];
                int64_t count = xs.n - x0 < LANES ? xs.n - x0 : LANES;
                memcpy(values + x0, &result, sizeof(float) * count);
            }
        }
    }
    free(plane);
    free(row);
    free(buffers);
    return 0;
}
