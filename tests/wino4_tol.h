/* WINOGRAD4's (F(4x4, 3x3)) tolerance against the direct sums, shared by test_wino4.c and
 * test_driver_nn.c. Its transforms multiply by up to 8 going in and scale by 1/24 coming out
 * (WINOGRAD's by 1 and 1/2), so each output carries the rounding of terms several times its own
 * size: an output that sums L products (forward: 9 C/G, data gradient: 9 K/G, weight gradient:
 * the batch's outputs of the channel) is held within WINO4_TOL * sqrt(L) of the largest
 * magnitude of the whole result. Measured (test_wino4's last line): at most 5.0e-7 over its zoo
 * (OpenBLAS Haswell kernels; deep layers of 256 and 512 channels no worse than thin ones), so
 * this leaves a margin of 6 for other GEMM kernels' rounding. A wrong tile position, row or
 * border term moves outputs by a sizeable fraction of their magnitude: an output off by 1% of
 * the largest is over 100 times this (test_wino4's test_tolerance_sees). */
#ifndef CT_TESTS_WINO4_TOL_H
#define CT_TESTS_WINO4_TOL_H

#define WINO4_TOL 3e-6

#endif
