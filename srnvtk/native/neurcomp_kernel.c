/* Fused CPU kernel for decoding a Neurcomp (a SIREN, residual or plain) on a lattice.
 *
 * Works on the inference form of srnvtk/neurcomp_eval.py (omega_0, the aspect and the blocks' 0.5 factors
 * already in the weights): every layer is y = sin(W x + b), a residual block adds its outer layer's y to the
 * stream, and a linear head gives the value. LANES points at a time, every activation in registers and L1;
 * the positions are made from the lattice's axes on the fly.
 */
#include <stdlib.h>

#include "simd.h"

/* Values on the lattice zs x ys x xs (normalised coordinates) into out (z, y, x order); 0 on success, -1
 * when scratch memory is short.
 *   widths      (1 + 2 blocks): every sine layer's width, each a multiple of OUT_BLOCK
 *   weights_t   every layer's transposed weight (in, width) one after another; layer 0 reads 3 inputs
 *   biases      every layer's bias, one after another
 *   head        (widths[last]) the head's weights; head_bias its bias
 * residual: block b computes stream += layer 2b+2(layer 2b+1(stream)); otherwise stream = the same. */
int srn_neurcomp_decode(const float *xs, int64_t nx, const float *ys, int64_t ny, const float *zs, int64_t nz,
                        int64_t blocks, int32_t residual, const int64_t *widths, const float *weights_t,
                        const float *biases, const float *head, float head_bias, float *out) {
    const int64_t layers = 1 + 2 * blocks;
    int64_t widest = 3;
    for (int64_t k = 0; k < layers; k++) widest = widths[k] > widest ? widths[k] : widest;
    lanes_f *scratch = aligned_alloc(sizeof(lanes_f), 3 * widest * sizeof(lanes_f));
    if (!scratch) return -1;
    lanes_f *stream = scratch, *hidden = scratch + widest, *outer = scratch + 2 * widest;
    lanes_f *position = outer; /* outer is free until the first block */
    for (int64_t z = 0; z < nz; z++) {
        for (int64_t y = 0; y < ny; y++) {
            float *values = out + (z * ny + y) * nx;
            for (int64_t x0 = 0; x0 < nx; x0 += LANES) {
                for (int v = 0; v < LANES; v++) /* lanes past the row's end repeat its last point, unstored */
                    position[0][v] = xs[x0 + v < nx ? x0 + v : nx - 1];
                position[1] = (lanes_f){} + ys[y];
                position[2] = (lanes_f){} + zs[z];
                const float *w = weights_t, *b = biases;
                dense(w, b, 3, widths[0], position, stream, ACTIVATION_SINE);
                w += 3 * widths[0];
                b += widths[0];
                int64_t stream_width = widths[0];
                for (int64_t block = 0; block < blocks; block++) {
                    int64_t inner_width = widths[2 * block + 1], outer_width = widths[2 * block + 2];
                    dense(w, b, stream_width, inner_width, stream, hidden, ACTIVATION_SINE);
                    w += stream_width * inner_width;
                    b += inner_width;
                    if (residual) { /* outer_width == stream_width: residual streams are not pruned */
                        dense(w, b, inner_width, outer_width, hidden, outer, ACTIVATION_SINE);
                        for (int64_t c = 0; c < outer_width; c++) stream[c] += outer[c];
                    } else {
                        dense(w, b, inner_width, outer_width, hidden, stream, ACTIVATION_SINE);
                    }
                    w += inner_width * outer_width;
                    b += outer_width;
                    stream_width = outer_width;
                }
                lanes_f result = dot(head, head_bias, stream_width, stream);
                int64_t count = nx - x0 < LANES ? nx - x0 : LANES;
                for (int64_t v = 0; v < count; v++) values[x0 + v] = result[v];
            }
        }
    }
    free(scratch);
    return 0;
}
