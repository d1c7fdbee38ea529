/* Fused CPU kernel for decoding an fV-SRN on a lattice (see srnvtk/lattice.py for the maths).
 *
 * Per output row: the latent grid's four source rows it needs, interpolated in z and y, then projected
 * through the first layer's grid weights (a small matrix product per cell: no projected copy of the whole
 * grid is ever made, so memory does not grow with the grid). Per output voxel: the x interpolation of that
 * row, the first layer's per-axis tables, then every Linear + Snake layer and the head, LANES voxels at a
 * time with all activations in registers and L1. The torch path makes ~10 passes over cache-spilling
 * activation blocks per layer stack; this makes none, and its Snake uses a short polynomial instead of a
 * library sine.
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

/* out[c][i] (i in [first, last]) = sum over channels k of weights_t[k][c] * rows[k][i]: the first layer's
 * grid weights applied to the cells of an interpolated row (channel-major in, cell-major out). */
static void project_row(const float *restrict rows, int64_t channels, int64_t width_cells, int64_t first,
                        int64_t last, const float *restrict weights_t, float *restrict out) {
    for (int64_t i = first; i <= last; i++) {
        float acc[WIDTH] = {0};
        for (int64_t k = 0; k < channels; k++) {
            float value = rows[k * width_cells + i];
            for (int c = 0; c < WIDTH; c++) acc[c] += weights_t[k * WIDTH + c] * value;
        }
        for (int c = 0; c < WIDTH; c++) out[i * WIDTH + c] = acc[c];
    }
}

/* Values of nz x ny x nx voxels into out (z, y, x order); 0 on success, -1 when scratch memory is short.
 *   grid        (channels, depth, height, width_cells): the latent grid, as the model holds it
 *   grid_w_t    (channels, width): the first layer's weights on the grid's channels, transposed
 *   table_x/y/z (n, width): each axis' position/Fourier share of the first layer (table_x holds its bias)
 *   weights_t   (hidden, width, width), biases (hidden, width): the Linear+Snake layers after the first
 *   head        (width): the last Linear's weights; head_bias its bias
 * width must be WIDTH; -2 otherwise. */
int srn_lattice_decode(const float *grid, int64_t channels, int64_t depth, int64_t height, int64_t width_cells,
                       const float *grid_w_t, int64_t width, const int64_t *z_lo, const int64_t *z_hi,
                       const float *z_t, int64_t nz, const int64_t *y_lo, const int64_t *y_hi, const float *y_t,
                       int64_t ny, const int64_t *x_lo, const int64_t *x_hi, const float *x_t, int64_t nx,
                       const float *table_x, const float *table_y, const float *table_z, const float *weights_t,
                       const float *biases, int64_t hidden, const float *head, float head_bias, float *out) {
    if (width != WIDTH) return -2;
    if (nx == 0) return 0;
    const axis_weights zs = {z_lo, z_hi, z_t, nz}, ys = {y_lo, y_hi, y_t, ny}, xs = {x_lo, x_hi, x_t, nx};
    const int64_t plane_size = height * width_cells, channel_size = depth * plane_size;
    const int64_t row_size = channels * width_cells;
    /* the cells the x interpolation reads: only these are interpolated and projected */
    int64_t first = width_cells, last = 0;
    for (int64_t x = 0; x < xs.n; x++) {
        first = xs.lo[x] < first ? xs.lo[x] : first;
        last = xs.hi[x] > last ? xs.hi[x] : last;
    }
    const int64_t cells = last - first + 1;
    float *rows = malloc(sizeof(float) * 3 * row_size);
    float *row = malloc(sizeof(float) * width_cells * WIDTH);
    lanes_f *h = aligned_alloc(sizeof(lanes_f), 2 * WIDTH * sizeof(lanes_f)), *next = h + WIDTH;
    if (!rows || !row || !h) {
        free(rows);
        free(row);
        free(h);
        return -1;
    }
    float *row_lo = rows, *row_hi = rows + row_size, *row_zy = rows + 2 * row_size;
    float row_table[WIDTH];
    lanes_f *const activations = h;
    for (int64_t z = 0; z < zs.n; z++) {
        for (int64_t y = 0; y < ys.n; y++) {
            /* per channel: the four source rows, in z, then in y (the order of the torch path) */
            for (int64_t k = 0; k < channels; k++) {
                const float *base = grid + k * channel_size + first;
                const float *below = base + zs.lo[z] * plane_size, *above = base + zs.hi[z] * plane_size;
                float *lo = row_lo + k * width_cells + first, *hi = row_hi + k * width_cells + first;
                lerp_rows(below + ys.lo[y] * width_cells, above + ys.lo[y] * width_cells, zs.t[z], cells, lo);
                lerp_rows(below + ys.hi[y] * width_cells, above + ys.hi[y] * width_cells, zs.t[z], cells, hi);
                lerp_rows(lo, hi, ys.t[y], cells, row_zy + k * width_cells + first);
            }
            project_row(row_zy, channels, width_cells, first, last, grid_w_t, row);
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
    free(row);
    free(activations);
    return 0;
}
