/* Trilinear lookup of a latent grid at arbitrary points, and its gradient, for training an fV-SRN on the CPU
 * (see srnvtk/native/trilinear.py).
 *
 * The same maths as torch's grid_sample(mode="bilinear", padding_mode="border", align_corners=True) on a
 * (C, z, y, x) grid, but on the grid laid out channels last, (z, y, x, C): each of a point's eight corners is
 * then CHANNELS consecutive floats (one or two cache lines) instead of CHANNELS loads from CHANNELS planes, and
 * the channel loop is a few vector instructions. torch's CPU grid_sample (and above all its backward, a
 * scatter into the channel planes) took ~40% of a training step; this takes a few per cent.
 */
#include <stdint.h>

#ifndef CHANNELS
#error "compile with -DCHANNELS=<latent channels>"
#endif

/* One axis: the lower corner and the weight of the upper one, for a position in [-1, 1] (clamped to the
 * border, as padding_mode="border" does; NaN goes to the first corner). */
static inline void corner(float position, int64_t size, int64_t *lower, float *t) {
    float u = (position + 1.0f) * 0.5f * (float)(size - 1);
    if (!(u > 0.0f)) u = 0.0f;
    if (u > (float)(size - 1)) u = (float)(size - 1);
    int64_t i = (int64_t)u;
    int64_t last = size >= 2 ? size - 2 : 0;
    if (i > last) i = last;
    *lower = i;
    *t = u - (float)i;
}

typedef struct {
    int64_t base;  /* the (z, y, x) lower corner's offset into the table, in floats */
    int64_t step[3];  /* offsets of the upper corner along x, y, z (0 along an axis of one point) */
    float w[8];  /* corner weights, x fastest: (z0 y0 x0), (z0 y0 x1), (z0 y1 x0), ... */
} cell;

static inline cell locate(const float *p, int64_t nz, int64_t ny, int64_t nx) {
    int64_t ix, iy, iz;
    float tx, ty, tz;
    corner(p[0], nx, &ix, &tx);
    corner(p[1], ny, &iy, &ty);
    corner(p[2], nz, &iz, &tz);
    cell c;
    c.base = ((iz * ny + iy) * nx + ix) * CHANNELS;
    c.step[0] = nx > 1 ? CHANNELS : 0;
    c.step[1] = ny > 1 ? nx * CHANNELS : 0;
    c.step[2] = nz > 1 ? nx * ny * CHANNELS : 0;
    float wx[2] = {1.0f - tx, tx}, wy[2] = {1.0f - ty, ty}, wz[2] = {1.0f - tz, tz};
    for (int k = 0; k < 8; k++) c.w[k] = wz[k >> 2] * wy[(k >> 1) & 1] * wx[k & 1];
    return c;
}

static inline int64_t offset(const cell *c, int k) {
    return c->base + (k & 1) * c->step[0] + ((k >> 1) & 1) * c->step[1] + (k >> 2) * c->step[2];
}

/* dst (cols x rows) = src (rows x cols) transposed, tile by tile so that both sides stay in cache: between the
 * grid's (C, points) layout and the kernel's (points, C) table, where torch's strided copy of a permuted grid took
 * about as long as the lookup itself. */
#define TILE 64

void srn_transpose(const float *restrict src, int64_t rows, int64_t cols, float *restrict dst) {
    for (int64_t r0 = 0; r0 < rows; r0 += TILE) {
        int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/* out[n][c] = the grid's channel c at positions[n] (x, y, z in [-1, 1]); table: (nz, ny, nx, CHANNELS). */
void srn_trilinear_forward(const float *restrict positions, int64_t count, const float *restrict table,
                           int64_t nz, int64_t ny, int64_t nx, float *restrict out) {
    for (int64_t n = 0; n < count; n++) {
        cell c = locate(positions + 3 * n, nz, ny, nx);
        const float *p[8];
        for (int k = 0; k < 8; k++) p[k] = table + offset(&c, k);
        float *o = out + n * CHANNELS;
        /* One pass over the channels with the eight corners side by side: a few vector instructions. */
        for (int ch = 0; ch < CHANNELS; ch++)
            o[ch] = c.w[0] * p[0][ch] + c.w[1] * p[1][ch] + c.w[2] * p[2][ch] + c.w[3] * p[3][ch]
                  + c.w[4] * p[4][ch] + c.w[5] * p[5][ch] + c.w[6] * p[6][ch] + c.w[7] * p[7][ch];
    }
}

/* CHUNK consecutive channels at any float address (may_alias: they are read and written as floats too). */
#define CHUNK 8
typedef float chunk_f __attribute__((vector_size(4 * CHUNK), aligned(4), may_alias));
#define WHOLE_CHUNKS (CHANNELS / CHUNK * CHUNK)

/* grad_table += the gradient of sum(out * grad_out) with respect to the table (accumulated in place). */
void srn_trilinear_backward(const float *restrict positions, int64_t count, const float *restrict grad_out,
                            int64_t nz, int64_t ny, int64_t nx, float *grad_table) {
    for (int64_t n = 0; n < count; n++) {
        cell c = locate(positions + 3 * n, nz, ny, nx);
        const float *g = grad_out + n * CHANNELS;
        /* Corner by corner: along an axis of one point two corners are the same entries. Written with
         * explicit vectors because GCC left the plain channel loop scalar (a load, FMA and store per channel),
         * which made the backward pass 4x slower than it is now. */
        for (int k = 0; k < 8; k++) {
            float *target = grad_table + offset(&c, k);
            float w = c.w[k];
            int ch = 0;
            for (; ch < WHOLE_CHUNKS; ch += CHUNK) *(chunk_f *)(target + ch) += w * *(const chunk_f *)(g + ch);
            for (; ch < CHANNELS; ch++) target[ch] += w * g[ch];
        }
    }
}
