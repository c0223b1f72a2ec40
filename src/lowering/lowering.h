/* CcT's convolution by lowering: rearrange a whole partition of the batch so that one GEMM per
 * group does the convolution, then lift the product back to N x K x OH x OW. Device
 * independent: the geometry, the workspace layout and the cost model are here, and
 * ct_lower_forward_on / ct_lower_backward_on run the steps on a driver (its conv_lower /
 * conv_lift entries and its GEMM). The loops of the steps are each driver's own (the CPU's in
 * drivers/cpu/conv.c and drivers/cpu/winograd.c).
 *
 * Shapes: x N x C x H x W; w K x C/G x kh x kw; b K; y N x K x OH x OW. Channel group g maps
 * input channels [g*C/G, (g+1)*C/G) to outputs [g*K/G, (g+1)*K/G).
 *
 *  TYPE1 lowers the input: D (C kh kw x nb OH OW); y = W . D; blow-up kh*kw on the input side.
 *        When an image's output plane is large (OH OW >= CT_LOWER_DIRECT_PLANE), the GEMM is
 *        issued per image on D's columns of that image, writing y (and reading dy) where they
 *        lie: no product matrix, no lifting copy. Smaller planes keep one GEMM per group for
 *        the partition, whose N would otherwise be too thin.
 *  TYPE2 lowers along x only: D2 (C kw x nb H OW), W2 (kh K x C kw); lifting sums kh shifted
 *        rows; blow-up kw on the input side and kh on the output side.
 *  TYPE3 lowers the kernel: X (C x nb H W) is the input transposed, W3 (kh kw K x C); lifting
 *        sums kh*kw shifted planes; blow-up kh*kw on the output side. Wins when C >> K.
 *  WINOGRAD (3x3, stride 1, no dilation): F(2x2, 3x3), drivers/cpu/winograd.c: the input in
 *        4x4 tiles (V, 16 x C x tiles), the kernel (U, 16 x K x C/G), 16 GEMMs per group on
 *        them, the products lifted into 2x2 output tiles; 2.25 times fewer multiply-adds, a
 *        blow-up of 4 on both sides. On a driver with conv_wino_block (the CPU's) the tiles run
 *        in blocks of tile rows (ct_wino_block), each block's V and M in cache; else staged,
 *        the partition's whole V and M at once (ct_wino_strides).
 *  WINOGRAD4 (where WINOGRAD applies): F(4x4, 3x3), drivers/cpu/winograd4.c: 6x6 input tiles,
 *        36 GEMMs per group, 4 times fewer multiply-adds, a blow-up of 2.25; always blocked, on a
 *        driver with conv_wino4_block only (ct_lower_wino4_block).
 *  DIRECT (depthwise and many-group convolutions, where a group's GEMM would be a few rows or
 *        a few columns deep): no lowering, no GEMM; the driver's conv_direct_* entries run the
 *        convolution's loops, vectorised along an output (or input) row, on a zero-padded copy
 *        of one group's planes in the workspace (ct_direct_layout), so no loop tests a border.
 * A 1x1, stride-1, unpadded convolution needs no lowering (CT_LOWER_POINTWISE): per-image GEMMs
 * on the input as it lies, each writing its output over the bias already in place (one pass
 * fewer than adding it after), or one GEMM for the partition where an image is a single pixel
 * (the input is then N x C as it lies); the cost model may instead pick TYPE1, whose lowering
 * of a 1x1 is a copy that packs the partition's small planes into one wide GEMM. */
#ifndef CT_LOWERING_H
#define CT_LOWERING_H

#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"

typedef struct ct_driver ct_driver;

typedef struct ct_conv_geom {
  int N, C, H, W; /* input */
  int K, G;       /* outputs, groups */
  int kh, kw, sh, sw, ph, pw, dh, dw;
  int OH, OW;     /* output, from ct_conv_geom_finish */
} ct_conv_geom;

typedef enum ct_lowering {
  CT_LOWER_AUTO = 0,
  CT_LOWER_TYPE1 = 1,
  CT_LOWER_TYPE2 = 2,
  CT_LOWER_TYPE3 = 3,
  CT_LOWER_POINTWISE = 4, /* 1x1 / stride 1 / no pad: per-image GEMMs on the input as it is */
  CT_LOWER_WINOGRAD = 5,  /* F(2x2, 3x3); the prototxt's WINOGRAD (4 there) */
  CT_LOWER_DIRECT = 6,    /* direct loops, no GEMM; the prototxt's DIRECT (5 there) */
  CT_LOWER_WINOGRAD4 = 7  /* F(4x4, 3x3), blocked, where the driver has conv_wino4_block; WINOGRAD4 (6) */
} ct_lowering;

/* DIRECT's padded planes, one group at a time (lanes: CT_DIRECT_LANES outputs per vector).
 * Forward and weight gradient: each of the group's Cg input planes as XR rows of XC floats,
 * the input's row r - ph and column q - pw at (r, q), zero outside the input: output (oy, ox)
 * reads (oy sh + i dh, ox sw + j dw) for every tap, and a vector of OWr = OW rounded up to the
 * lanes never leaves the plane; the weight gradient also copies each dy plane as OH rows of
 * OWr floats (zero past OW).
 * Data gradient: input column ix = q + m sw (phase q < sw) takes dy's column ox = m + e for
 * each tap column j with sw | (q + pw - j dw), e = (q + pw - j dw) / sw, and likewise for rows;
 * each of the group's Kg dy planes is copied as QR rows of QC floats, dy's (oy, ox) at (oy + RT,
 * ox + CL), zero elsewhere; a phase of an input row (Mr = ceil(W / sw) rounded up to the lanes
 * values) is summed in a row buffer. scratch: the floats all of it takes. */
#define CT_DIRECT_LANES 8
typedef struct ct_direct_layout {
  int XR, XC, OWr;
  int QR, QC, RT, CL, Mr;
  size_t scratch;
} ct_direct_layout;
ct_direct_layout ct_lower_direct_layout(const ct_conv_geom *g);
/* DIRECT applies to kernels of at most 64 rows and columns (the CPU's kernels list the taps that
 * reach an input row on the stack). */
#define CT_DIRECT_MAX_KERNEL 64
bool ct_lower_direct_applies(const ct_conv_geom *g);

/* The largest workspace (floats) the cost model lets one partition use: 1 GiB. */
#define CT_LOWER_MAX_WORKSPACE ((size_t)1 << 28)

/* Computes OH, OW. False when the dilated kernel does not fit the padded input. */
bool ct_conv_geom_finish(ct_conv_geom *g);
bool ct_conv_is_pointwise(const ct_conv_geom *g);
/* WINOGRAD applies: a 3x3 kernel, stride 1, dilation 1 (any padding, groups). */
bool ct_lower_wino_applies(const ct_conv_geom *g);
/* Its layout for a partition of nb images: T tiles (2x2 outputs each; TH per column of a plane,
 * TW per row), rows of Tp floats in V (16 blocks of C rows, sV floats apart), U and dU (16 blocks
 * of K x C/G, sU apart), M and dM (16 blocks of K rows, sM apart); and the floats of scratch it
 * keeps after them: row buffers of rw floats (a row of tiles is transformed TWv = TW rounded up
 * to 4 tiles at a time), the first prow of them a padded plane. */
typedef struct ct_wino_strides {
  size_t T, Tp, sV, sU, sM;
  int TH, TW, TWv;
  size_t rw, prow;
} ct_wino_strides;
ct_wino_strides ct_lower_wino_strides(const ct_conv_geom *g, int nb);
size_t ct_lower_wino_scratch(const ct_conv_geom *g, int nb);
/* WINOGRAD blocked (on a driver with a conv_wino_block entry, the CPU's): a partition's tiles
 * run in blocks of `rows` rows of tiles (row r = n TH + th of the partition: a block may hold a
 * part of an image or several small images; the last block may be shorter), sized so that a
 * block's V and M stay in the L2 cache between its transform, its GEMMs and its lift, instead of
 * the partition's going out to memory and back. The workspace: U and dU (16 blocks sU apart, as
 * ct_wino_strides), then the block's V [16][C][ld] (blocks sV apart) and M / dM [16][K][ld] (sM
 * apart), tile t = (r - r0) TW + tw of the block, then scratch (prow: rows of the padded plane
 * one block of one image covers). Offsets and sizes in floats. */
typedef struct ct_wino_block {
  int rows;
  size_t ld, sV, sM, prow;
  size_t U, dU, V, M, scratch, workspace;
} ct_wino_block;
/* The L2 bytes a block's V and M are sized to (ct_lower_wino_block); CT_WINO_BLOCK_TILES in the
 * environment sets a block's tiles instead (benchmarks; rounded to whole rows; anything but a
 * positive integer is refused at a conv layer's reshape, as CT_WINOGRAD, CT_DIRECT and
 * CT_WINO_BLOCKED are unless 0 or 1). It and
 * CT_WINO_BLOCKED are read once per process, at their first use: a workspace sized under one
 * value must never be run under another. Tests set them with ct_lower_wino_settings. */
#define CT_WINO_BLOCK_BYTES ((size_t)768 << 10)
/* ... but a block has at least this many tiles (narrower GEMMs run too far below their rate). */
#define CT_WINO_BLOCK_MIN_TILES 128
/* The cost model's speed of a block's passes over V and M that stay in cache, relative to memory. */
#define CT_WINO_CACHE_GAIN 2.0
/* The cost model's knee (cost.c's knee_eff) for a block's 16 (or 36) GEMMs, whose operands sit in
 * cache: thin K or C costs them about half what it costs a GEMM streaming from memory (24).
 * TYPE3's GEMM rate as a fraction of the same shape's in other types: its product, kh kw times
 * y's size, goes through memory, and the lift adds kh kw shifted planes. Both fitted to
 * bench/zoo_bench_conv's `model` mode (DenseNet-121's and ResNet-50's 3x3 layers; measured
 * within 0.8-1.25 of the model on OpenBLAS's Haswell and Cooperlake kernels, where the previous
 * constants put WINOGRAD 1.2-1.6x too slow and TYPE3 1.1-1.6x too fast: DenseNet's 128->32
 * layers picked TYPE3, 1.6x slower than WINOGRAD there). */
#define CT_WINO_KNEE 12.0
/* POINTWISE's knee on an image's plane, its GEMMs' width: ResNet's 1024 <-> 256 1x1 layers at
 * 14x14 ran 5-11% faster per image than TYPE1 packed (whose copies of x and y in and out of the
 * packed layout cost more than memcpy's rate), where the knee of 24 picked TYPE1; at 7x7 TYPE1
 * stays ahead (bench/zoo_bench_conv model). */
#define CT_POINTWISE_KNEE 8.0
#define CT_TYPE3_EFF 0.75
/* TYPE2's knee on an output row's width (its lowered rows and the kh shifted rows its lift adds
 * are OW long; short ones cost more per float than the bytes say): bench/zoo_bench_conv `model`
 * on a Zen 5 (OpenBLAS's Cooperlake kernels, one thread, 2026-12-07) measured TYPE2 1.34x the
 * model at 7x7 against 0.95-1.17x at 14-56, where the other GEMM types sit at 1.1-1.2x at every
 * width; the model put TYPE2 first on ResNet's 7x7x512 3x3 layers (measured 15% slower than
 * WINOGRAD there; forced to WINOGRAD in-net on the Xeon host before it, 53 -> 40 ms forward)
 * and on DenseNet's 14x14 128 -> 32 ones (14% slower). */
#define CT_TYPE2_ROW_KNEE 1.5
/* The Winograd types' GEMM rate as a fraction of the same shape's in the GEMM types (their
 * GEMMs are 16 or 36 narrow ones, between transforms that evict their operands), and the
 * smallest output plane side WINOGRAD4 is modelled on: bench/zoo_bench_conv's `model` mode on
 * the Cooperlake kernels (2026-12-07) measured WINOGRAD4 1.3-1.6x faster than WINOGRAD on
 * ResNet-50's and DenseNet-121's 56x56 and 28x28 layers, but 1.15x slower on ResNet's 14x14x256
 * and 1.3-1.4x slower on the 7x7 ones (a 7x7 plane is 2x2 tiles of 16 outputs for 49, its U 36
 * K C floats against 4 K C images' worth of work), where the model, which counts neither the
 * tiles' padding transforms nor WINOGRAD4's larger transforms, put it first; and TYPE1 1.2x
 * faster than WINOGRAD on ResNet's 7x7x512 layers, where the model put WINOGRAD first. */
#define CT_WINO_EFF 0.65
#define CT_WINO4_MIN_PLANE 20
/* ... and the fewest input channels per group: below it the transforms are most of its work
 * and it gains little on WINOGRAD (3 -> 16 and 16 -> 16 channels at 28x28, 8 images: 0.97-1.12x
 * forward, 1.16-1.4x backward, on layers of well under a millisecond), while
 * its weight gradient rounds about ten times more (up to 1e-5 of its largest against 1e-6; its
 * transforms scale by up to 8 and 1/24), which test_hybrid's 20 training steps on a 1-channel
 * first layer, split 0.3 / 0.7 between two devices, amplified past its 1e-5. */
#define CT_WINO4_MIN_CHANNELS 16
ct_wino_block ct_lower_wino_block(const ct_conv_geom *g, int nb);
/* WINOGRAD4: F(4x4, 3x3) (drivers/cpu/winograd4.c), on a driver with conv_wino4_block only, and
 * always blocked: 6x6 input tiles 4 apart, 36 GEMMs per group, 4 times fewer multiply-adds than
 * the direct sums (WINOGRAD: 2.25), a blow-up of 2.25 on both sides; its transforms scale by up
 * to 8 and 1/24, so it rounds more than WINOGRAD (relative errors near 1e-4 at C = 512). Layout
 * as WINOGRAD's with 36 blocks for 16: tiles of 4x4 outputs (TH, TW; TWv = TW rounded up to 4),
 * row buffers of rw floats, and the block (ct_wino_block): U, dU (36 blocks sU apart), the
 * block's V and M (36 blocks each), then scratch: prow rows of rw floats (the forward's input
 * rows; backward the padded plane the block's tiles of one image cover) and 36 rows of terms
 * (TWv + 16 floats each). */
ct_wino_strides ct_lower_wino4_strides(const ct_conv_geom *g, int nb);
ct_wino_block ct_lower_wino4_block(const ct_conv_geom *g, int nb);
/* For tests: a block's tiles (0: the default sizing) and whether WINOGRAD runs blocked where the
 * driver can, in place of what the environment said; only between passes, with workspaces sized
 * afterwards. */
void ct_lower_wino_settings(long block_tiles, bool blocked);
const char *ct_lowering_name(ct_lowering t);

/* Floats of workspace one partition of nb images needs for type t (forward and backward), with
 * the driver's staged steps (conv_lower ... conv_lower_grad, whose layout ct_lower_layout_of
 * gives). */
size_t ct_lower_workspace(const ct_conv_geom *g, ct_lowering t, int nb);
/* WINOGRAD4 has no staged steps: its workspace is its block's (ct_lower_wino4_block), and
 * ct_lower_layout_of gives the block's parts.
 * The same on driver d: WINOGRAD blocked (ct_wino_block) where d has conv_wino_block, never more
 * than ct_lower_workspace. CT_WINO_BLOCKED=0 in the environment runs WINOGRAD staged on every
 * driver (benchmarks). */
size_t ct_lower_workspace_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb);
/* Whether WINOGRAD runs blocked on d (d has conv_wino_block and CT_WINO_BLOCKED=0 is not set). */
bool ct_lower_wino_blocked_on(const ct_driver *d);
/* Whether d runs type t: every type but WINOGRAD4, which needs d's conv_wino4_block (the CPU's
 * and emu's; not CUDA's). */
bool ct_lower_runs_on(const ct_driver *d, ct_lowering t);
/* Whether type t runs blocked on d (WINOGRAD where ct_lower_wino_blocked_on, WINOGRAD4 wherever
 * it runs): its workspace is then redone in backward whatever forward left there (but where a
 * partition is one block), so a layer keeps no private copy of it. */
bool ct_lower_blocked_on(const ct_driver *d, ct_lowering t);
/* Type 2 runs its GEMMs and its lift (forward) or lift of dy (backward) image by image when a
 * partition has two images or more, each with at least this many product columns (H*OW):
 * CaffeNet's conv2 (729), not its 13 x 13 layers, whose per-image GEMMs would be too thin. */
#define CT_LOWER_IMAGE_COLS 512
bool ct_lower_by_image2(const ct_conv_geom *g, int nb);
/* Type 1 with per-image GEMMs straight into y (see TYPE1 above). */
#define CT_LOWER_DIRECT_PLANE 1024
bool ct_lower_direct1(const ct_conv_geom *g);
/* Type 1 on smaller planes runs a partition in chunks of images, forward and backward, each
 * chunk's lowered data (about CT_LOWER_CHUNK_FLOATS, a megabyte) read by its GEMMs while it is
 * still in cache, in the chunk's slice of the partition's workspace; a chunk keeps at least
 * CT_LOWER_IMAGE_COLS GEMM columns. LeNet's conv2: 8 images of 64 columns. The weight and bias
 * gradients sum the chunks in order. Returns the images per chunk (nb: one chunk). */
#define CT_LOWER_CHUNK_FLOATS ((size_t)1 << 18)
int ct_lower_chunk1(const ct_conv_geom *g, int nb);
/* Type 1 per image (ct_lower_direct1) lowers a band of output rows at a time where an image's
 * lowered data would pass CT_LOWER_BAND_FLOATS (half an L2): each band's GEMMs read it while it
 * is in cache, instead of the partition's (ResNet's conv1: 59 MB at 8 images) going out to
 * memory and back. A band is the geometry with OH its rows and ph less the rows above it
 * (negative past the top: the same input rows, the same zero padding); it keeps
 * CT_LOWER_IMAGE_COLS GEMM columns. The backward without dx lowers the bands again for the
 * weight gradient; with dx it lowers the partition, as before. Returns the rows per band (OH:
 * the image is one band). */
#define CT_LOWER_BAND_FLOATS ((size_t)1 << 17)
int ct_lower_band1(const ct_conv_geom *g);

/* Where the parts of one partition's workspace lie, as offsets in floats from its start:
 * the lowered data (D; type 3: the input transposed; WINOGRAD: V), the lowered kernel (types 2
 * and 3, WINOGRAD's U), the GEMM product (or dy laid out like it, backward) and the lowered
 * kernel's gradient (types 2 and 3, WINOGRAD), and WINOGRAD's row scratch. Parts a type does
 * not use are 0. */
typedef struct ct_lower_layout {
  size_t data, kernel, product, kernel_grad, scratch;
} ct_lower_layout;
ct_lower_layout ct_lower_layout_of(const ct_conv_geom *g, ct_lowering t, int nb);

/* Forward on driver d for nb images starting at x (and y): y = conv(x, w) + b (b may be NULL);
 * all buffers are d's, ws holds ct_lower_workspace floats. Returns CT_OK, or the status of the
 * first driver entry that failed (nothing runs after it; d's error_message says why), leaving
 * y and ws partly written; or CT_EUNSUPPORTED, before anything runs, for WINOGRAD4 on a driver
 * without conv_wino4_block (ct_lower_runs_on: a layer refuses such a plan at reshape). */
ct_status ct_lower_forward_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                              const float *w, const float *b, float *y, float *ws);
/* Backward on d for nb images from dy: dx overwritten, dw and db accumulated (+=); any of the
 * three may be NULL. `reuse`: ws still holds what the forward left there for the same x and w
 * (CcT's reuse of the forward lowering), so the lowering is not redone. Fails as forward does,
 * with dx, dw and db partly written (the accumulated gradients then hold partial sums). */
ct_status ct_lower_backward_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                               const float *w, const float *dy, float *dx, float *dw, float *db, float *ws,
                               bool reuse);
/* The same on the CPU driver (ct_driver_cpu), for host buffers. */
ct_status ct_lower_forward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w,
                           const float *b, float *y, float *ws);
ct_status ct_lower_backward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *ws, bool reuse);

/* The cost model (lowering/cost.c). The rate of the DIRECT kernels as a fraction of the
 * calibrated GEMM rate, whatever the shape: MobileNet v2's depthwise layers ran at 15-35 GFLOP/s
 * of a core whose SGEMM calibrates at 155-190 (bench/zoo_bench_conv, one thread; an 8-lane
 * multiply and add per tap against the GEMM's 16-lane FMAs). The GEMM types' efficiency falls
 * with a thin group (shape_eff in lowering/cost.c), which is where DIRECT wins. */
#define CT_DIRECT_EFF 0.15
/* The cost model: predicted seconds of one forward+backward of nb images with type t, from the
 * GEMM FLOPs at `gflops` and the bytes the lowering and lifting move at `gbytes` per second.
 * Returns a huge value when the workspace would exceed max_ws floats. */
double ct_lower_cost(const ct_conv_geom *g, ct_lowering t, int nb, double gflops, double gbytes, size_t max_ws);
/* The cheapest type by the cost model: for a 1x1 (stride 1, no pad) POINTWISE or TYPE1; else
 * TYPE1-3, WINOGRAD and WINOGRAD4 where they apply and CT_WINOGRAD=0 is not in the environment
 * (CT_WINOGRAD4=0 leaves WINOGRAD4 out alone), and DIRECT for grouped layers (group > 1) unless
 * CT_DIRECT=0 is. The model does not know the drivers: ct_lower_choose_for with wino4 false
 * leaves WINOGRAD4 out for a plan whose drivers do not all run it (ct_lower_runs_on). */
ct_lowering ct_lower_choose(const ct_conv_geom *g, int nb, double gflops, double gbytes, size_t max_ws);
ct_lowering ct_lower_choose_for(const ct_conv_geom *g, int nb, double gflops, double gbytes, size_t max_ws,
                                bool wino4);
/* The 1x1 path runs one GEMM for the partition (an image is one pixel and there is one group). */
bool ct_lower_pw_one_gemm(const ct_conv_geom *g);
/* Multiply-adds x 2 of one forward pass of nb images (the useful FLOPs, independent of type). */
double ct_conv_flops(const ct_conv_geom *g, int nb);

#endif
