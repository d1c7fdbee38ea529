/* The Snake activation y = x + sin(x)^2 and its gradient dy/dx = 1 + sin(2x), for training on the CPU (see
 * srnvtk/native/snake.py).
 *
 * torch computes Snake and its backward as some eight separate passes over the activations (sine, square,
 * add; cosine, products, sums), each a trip through memory: most of an fV-SRN training step once the grid
 * lookup is fast. Here each direction is one pass, LANES values at a time, with the polynomial sine of
 * simd.h (within ~1e-7 of the library sine), as the decoding kernels use.
 */
#include <stdint.h>
#include <string.h>

#include "simd.h"

typedef float lanes_u __attribute__((vector_size(4 * LANES), aligned(4)));  /* lanes_f at any float address */

static inline lanes_f forward(lanes_f x) { return snake(x); }

static inline lanes_f backward(lanes_f x, lanes_f g) { return g + g * sine(x + x); }

/* y = x + sin(x)^2 for count values. */
void srn_snake_forward(const float *x, int64_t count, float *y) {
    int64_t i = 0;
    for (; i + LANES <= count; i += LANES) *(lanes_u *)(y + i) = forward(*(const lanes_u *)(x + i));
    if (i < count) {  /* the tail, through a zero-padded vector */
        size_t bytes = (size_t)(count - i) * sizeof(float);
        lanes_f v = {0};
        memcpy(&v, x + i, bytes);
        v = forward(v);
        memcpy(y + i, &v, bytes);
    }
}

/* grad_x = grad_y * (1 + sin(2x)) for count values. */
void srn_snake_backward(const float *x, const float *grad_y, int64_t count, float *grad_x) {
    int64_t i = 0;
    for (; i + LANES <= count; i += LANES)
        *(lanes_u *)(grad_x + i) = backward(*(const lanes_u *)(x + i), *(const lanes_u *)(grad_y + i));
    if (i < count) {
        size_t bytes = (size_t)(count - i) * sizeof(float);
        lanes_f v = {0}, g = {0};
        memcpy(&v, x + i, bytes);
        memcpy(&g, grad_y + i, bytes);
        v = backward(v, g);
        memcpy(grad_x + i, &v, bytes);
    }
}
