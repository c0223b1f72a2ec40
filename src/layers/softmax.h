/* The softmax kernels Softmax and SoftmaxWithLoss share. Data is outer x C x inner; the softmax
 * runs over C. x may equal y, dy may equal dx. scratch holds `inner` floats. */
#ifndef CT_SOFTMAX_H
#define CT_SOFTMAX_H

#include <stddef.h>

void ct_softmax_forward(size_t outer, size_t C, size_t inner, const float *x, float *y, float *scratch);
/* dx = y * (dy - sum over C of dy * y) */
void ct_softmax_backward(size_t outer, size_t C, size_t inner, const float *y, const float *dy, float *dx,
                         float *scratch);

#endif
