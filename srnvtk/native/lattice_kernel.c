/* Fused CPU kernel for decoding an fV-SRN on a lattice (see srnvtk/lattice.py for the maths).
 *
 * Per output voxel: the x interpolation of a row of the projected grid, the first layer's per-axis tables,
 * then every Linear + Snake layer and the head, LANES voxels at a time with all activations in registers
 * and L1. The torch path makes ~10 passes over cache-spilling activation blocks per layer stack; this makes
 * none, and its Snake uses a short polynomial instead of a library sine.
 */
#include <stdlib.h>
#include <string.h>

#include "simd.h"

/* Built with -DWIDTH=<the padded MLP width> (srnvtk/native/lattice.py): a constant width lets the compiler
 * unroll the layers, ~12% faster than a run-time one. */
#ifndef WIDTH
#error "compile with -DWIDTH=<MLP width, a multiple of OUT_BLOCK>"
#endif
#if WIDTH % OUT_BLOCK
#error "WIDTH must be a multiple of OUT_BLOCK"
#endif

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
 *   grid        (depth, height, width_cells, width): the grid projected through the first layer
 *   table_x/y/z (n, width): each axis' position/Fourier share of the first layer (table_x holds its bias)
 *   weights_t   (hidden, width, width), biases (hidden, width): the Linear+Snake layers after the first
 *   head        (width): the last Linear's weights; head_bias its bias
 * width must be WIDTH; -2 otherwise. */
int srn_lattice_decode(const float *grid, int64_t height, int64_t width_cells, int64_t width, const int64_t *z_lo,
                       const int64_t *z_hi, const float *z_t, int64_t nz, const int64_t *y_lo, const int64_t *y_hi,
                       const float *y_t, int64_t ny, const int64_t *x_lo, const int64_t *x_hi, const float *x_t,
                       int64_t nx, const float *table_x, const float *table_y, const float *table_z,
                       const float *weights_t, const float *biases, int64_t hidden, const float *head,
                       float head_bias, float *out) {
    if (width != WIDTH) return -2;
    const axis_weights zs = {z_lo, z_hi, z_t, nz}, ys = {y_lo, y_hi, y_t, ny}, xs = {x_lo, x_hi, x_t, nx};
    const int64_t plane_size = height * width_cells * WIDTH, row_size = width_cells * WIDTH;
    /* Per output row only four source rows matter: interpolate them in z, then in y (the order of the torch
     * path), so scratch memory stays a few rows whatever the grid's size. */
    float *rows = malloc(sizeof(float) * 3 * row_size);
    lanes_f *h = aligned_alloc(sizeof(lanes_f), 2 * WIDTH * sizeof(lanes_f)), *next = h + WIDTH;
    if (!rows || !h) {
        free(rows);
        free(h);
        return -1;
    }
    float *row_lo = rows, *row_hi = rows + row_size, *row = rows + 2 * row_size;
    float row_table[WIDTH];
    lanes_f *const activations = h;
    for (int64_t z = 0; z < zs.n; z++) {
        const float *below = grid + zs.lo[z] * plane_size, *above = grid + zs.hi[z] * plane_size;
        for (int64_t y = 0; y < ys.n; y++) {
            lerp_rows(below + ys.lo[y] * row_size, above + ys.lo[y] * row_size, zs.t[z], row_size, row_lo);
            lerp_rows(below + ys.hi[y] * row_size, above + ys.hi[y] * row_size, zs.t[z], row_size, row_hi);
            lerp_rows(row_lo, row_hi, ys.t[y], row_size, row);
            for (int64_t c = 0; c < WIDTH; c++) row_table[c] = table_y[y * WIDTH + c] + table_z[z * WIDTH + c];
            float *values = out + (z * ys.n + y) * xs.n;
            for (int64_t x0 = 0; x0 < xs.n; x0 += LANES) {
                h = activations;
                next = activations + WIDTH;
                for (int v = 0; v < LANES; v++) {
                    /* lanes past the row's end repeat its last voxel; their results are not stored */
                    int64_t x = x0 + v < xs.n ? x0 + v : xs.n - 1;
                    const float *a = row + xs.lo[x] * WIDTH, *b = row + xs.hi[x] * WIDTH, *tx = table_x + x * WIDTH;
                    float t = xs.t[x];
                    for (int64_t c = 0; c < WIDTH; c++) h[c][v] = ((a[c] + t * (b[c] - a[c])) + tx[c]) + row_table[c];
                }
                for (int64_t c = 0; c < WIDTH; c++) h[c] = snake(h[c]);
                for (int64_t layer = 0; layer < hidden; layer++) {
                    dense(weights_t + layer * WIDTH * WIDTH, biases + layer * WIDTH, WIDTH, WIDTH, h, next,
                          ACTIVATION_SNAKE);
                    lanes_f *swap = h;
                    h = next;
                    next = swap;
                }
                lanes_f result = dot(head, head_bias, WIDTH, h);
                int64_t count = xs.n - x0 < LANES ? xs.n - x0 : LANES;
                memcpy(values + x0, &result, sizeof(float) * count);
            }
        }
    }
    free(rows);
    free(activations);
    return 0;
}
