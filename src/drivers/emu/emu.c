/* The emu device (drivers/emu.h): the CPU driver's kernels, run on an arena of memory that is
 * mapped PROT_NONE except while one of this device's calls runs. The host reaches emu memory
 * only through upload/download (the storage layer's copies, counted); anything else faults, and
 * the fault handler names the device and the address instead of a bare segmentation fault.
 *
 * Each device (emu:N) is one per process, shared by every driver for it, and runs one call at a
 * time, as a device's stream would: its calls take a lock (recursive: a kernel may call another
 * entry), open the arena, run the CPU kernel on a single thread, close the arena, and then, at
 * CT_EMU_SPEED below 1, wait (busy, as a device would be) until the call has taken 1/speed of
 * the time it needed, so the scheduler sees a slower device. Settings, read once per device:
 *   CT_EMU_GUARD       when the arena is closed: "call" (default: between any two calls, so a
 *                      host access anywhere outside a driver call faults) or "pass" (between
 *                      layer passes: a fault still catches every access from outside the
 *                      layers, and the arena's page-table changes, which can cost more than
 *                      the work on a virtual machine, happen once a pass) or "off" (never
 *                      closed: for timing runs, where the guard's cost would be mistaken for
 *                      the device's)
 *   CT_EMU_SPEED       fraction of the CPU's speed, (0, 1] (default 1)
 *   CT_EMU_MEMORY_MB   the arena's size (default 4096); allocations beyond fail as a full
 *                      device's would
 *   CT_EMU_FAIL_AFTER  N > 0: the Nth call on the device fails with a device error (tests of
 *                      the error path) */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"
#include "drivers/emu.h"

#define EMU_MAX 64
#define ALIGN 64

typedef struct block {
  size_t off, size;
  bool used;
} block;

typedef struct emu_dev {
  ct_mem mem; /* its place; mem.ctx is this device */
  int index;
  char name[24];
  pthread_mutex_t mu; /* recursive: one call at a time, a kernel may call another entry */
  int depth;          /* nesting of the call on the thread holding mu */
  struct timespec t0; /* when the outermost call started */
  bool guard_pass;    /* CT_EMU_GUARD=pass */
  bool guard_off;     /* CT_EMU_GUARD=off: opened once, never closed */
  int open;           /* holders of the open arena: calls and, with guard_pass, layer passes */
  size_t open_top;    /* bytes from base mapped read-write while open */
  char *base;         /* the arena */
  size_t reserved;    /* bytes mapped */
  size_t top;         /* end of the highest allocated block: the part to open and close */
  block *blocks;      /* sorted by offset, covering [0, reserved) */
  size_t nblocks, cap;
  double speed;
  unsigned long long calls, fail_after;
  bool calibrating; /* its own measurement: not counted towards CT_EMU_FAIL_AFTER */
  char error[256];
  double gflops, gbytes; /* measured once, through the device itself */
} emu_dev;

static pthread_mutex_t devs_mu = PTHREAD_MUTEX_INITIALIZER;
static emu_dev *devs[EMU_MAX];
static struct sigaction old_segv;
static bool handler_installed;

/* ---------------------------------------------------------------- the guard */

static void on_segv(int sig, siginfo_t *si, void *uc) {
  for (int i = 0; i < EMU_MAX; i++) {
    emu_dev *e = devs[i];
    if (!e || (char *)si->si_addr < e->base || (char *)si->si_addr >= e->base + e->reserved) continue;
    char msg[200];
    int n = snprintf(msg, sizeof msg,
                     "cortado: the host touched %s memory at %p outside a driver call (a missing deref)\n", e->name,
                     si->si_addr);
    if (n > 0) (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  /* not ours: whoever handled it before, or the default (a core dump) */
  if (old_segv.sa_flags & SA_SIGINFO) {
    if (old_segv.sa_sigaction) old_segv.sa_sigaction(sig, si, uc);
    return;
  }
  if (old_segv.sa_handler == SIG_IGN) return;
  if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler) {
    old_segv.sa_handler(sig);
    return;
  }
  signal(SIGSEGV, SIG_DFL);
  raise(SIGSEGV);
}

static void install_handler(void) {
  if (handler_installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &old_segv) == 0) handler_installed = true;
}

/* ---------------------------------------------------------------- calls */

static size_t page_up(size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  return (n + pg - 1) / pg * pg;
}

static double elapsed_s(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* The arena opens for its first holder and closes after its last (under mu). */
static bool arena_open(emu_dev *e) {
  if (e->guard_off) return true;
  if (e->open++ > 0) return true;
  e->open_top = page_up(e->top);
  if (e->open_top && mprotect(e->base, e->open_top, PROT_READ | PROT_WRITE) != 0) {
    e->open--;
    e->open_top = 0;
    return false;
  }
  return true;
}

static void arena_close(emu_dev *e) {
  if (e->guard_off || --e->open > 0) return;
  if (e->open_top) mprotect(e->base, e->open_top, PROT_NONE);
  e->open_top = 0;
}

/* Starts a call: the lock, and the arena opened for it. Fails (leaving the lock released) when
 * the injected fault is due. */
static ct_status emu_open(emu_dev *e, const char *what) {
  pthread_mutex_lock(&e->mu);
  if (!e->calibrating) e->calls++;
  if (!e->calibrating && e->fail_after && e->calls == e->fail_after) {
    snprintf(e->error, sizeof e->error, "injected fault in %s (call %llu; CT_EMU_FAIL_AFTER)", what, e->calls);
    pthread_mutex_unlock(&e->mu);
    return CT_EDEVICE;
  }
  if (!arena_open(e)) {
    snprintf(e->error, sizeof e->error, "cannot open the arena for %s: %s", what, strerror(errno));
    pthread_mutex_unlock(&e->mu);
    return CT_EDEVICE;
  }
  if (e->depth++ == 0) clock_gettime(CLOCK_MONOTONIC, &e->t0);
  return CT_OK;
}

/* Ends a call: at CT_EMU_SPEED below 1 the outermost call waits out the rest of its time. */
static ct_status emu_close(emu_dev *e, ct_status s) {
  arena_close(e);
  if (--e->depth == 0 && e->speed < 1) {
    /* A slower device keeps its core busy for the whole call: sleeping would give the core
     * away, and waking again costs tens of microseconds idle and whole time slices under load,
     * far more than most calls take. Long waits sleep all but their last millisecond. */
    double t = elapsed_s(&e->t0), until = t / e->speed, wait = until - t - 1e-3;
    if (wait > 0) {
      struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    while (elapsed_s(&e->t0) < until) {
    }
  }
  pthread_mutex_unlock(&e->mu);
  return s;
}

static emu_dev *dev_of(const ct_driver *d) { return d->ctx; }

#define EMU_ENTRY_AS(name, kernel, params, args)        \
  static ct_status emu_##name params {                  \
    emu_dev *e = dev_of(d);                             \
    CT_TRY(emu_open(e, #name));                         \
    return emu_close(e, ct_cpu_##kernel args);          \
  }
#define EMU_ENTRY(name, params, args) EMU_ENTRY_AS(name, name, params, args)

EMU_ENTRY(memset, (const ct_driver *d, void *p, int byte, size_t bytes), (d, p, byte, bytes))
EMU_ENTRY(copy, (const ct_driver *d, void *dst, const void *src, size_t bytes), (d, dst, src, bytes))
EMU_ENTRY(copy_2d, (const ct_driver *d, size_t rows, size_t row_bytes, void *dst, size_t dst_pitch, const void *src, size_t src_pitch), (d, rows, row_bytes, dst, dst_pitch, src, src_pitch))
EMU_ENTRY_AS(upload, copy, (const ct_driver *d, void *dst, const void *host_src, size_t bytes), (d, dst, host_src, bytes))
EMU_ENTRY_AS(download, copy, (const ct_driver *d, void *host_dst, const void *src, size_t bytes), (d, host_dst, src, bytes))
EMU_ENTRY(gemm, (const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B, float beta, float *C), (d, trans_a, trans_b, M, N, K, alpha, A, B, beta, C))
EMU_ENTRY(gemm_ld, (const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc), (d, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
EMU_ENTRY(gemv, (const ct_driver *d, bool trans_a, int M, int N, float alpha, const float *A, const float *x, float beta, float *y), (d, trans_a, M, N, alpha, A, x, beta, y))
EMU_ENTRY(axpy, (const ct_driver *d, size_t n, float alpha, const float *x, float *y), (d, n, alpha, x, y))
EMU_ENTRY(scal, (const ct_driver *d, size_t n, float alpha, const float *x, float *y), (d, n, alpha, x, y))
EMU_ENTRY(dot, (const ct_driver *d, size_t n, const float *x, const float *y, float *out), (d, n, x, y, out))
EMU_ENTRY(asum, (const ct_driver *d, size_t n, const float *x, float *out), (d, n, x, out))
EMU_ENTRY(sumsq, (const ct_driver *d, size_t n, const float *x, double acc, double *out), (d, n, x, acc, out))
EMU_ENTRY(add, (const ct_driver *d, size_t n, const float *a, const float *b, float *y), (d, n, a, b, y))
EMU_ENTRY(sub, (const ct_driver *d, size_t n, const float *a, const float *b, float *y), (d, n, a, b, y))
EMU_ENTRY(mul, (const ct_driver *d, size_t n, const float *a, const float *b, float *y), (d, n, a, b, y))
EMU_ENTRY(neuron_forward, (const ct_driver *d, const ct_neuron *p, size_t n, const float *x, float *y), (d, p, n, x, y))
EMU_ENTRY(neuron_backward, (const ct_driver *d, const ct_neuron *p, size_t n, const float *x, const float *y, const float *dy, float *dx), (d, p, n, x, y, dy, dx))
EMU_ENTRY(prelu_forward, (const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x, const float *a, float *y), (d, N, C, D, shared, x, a, y))
EMU_ENTRY(prelu_backward, (const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x, const float *dy, const float *a, float *dx, float *da), (d, N, C, D, shared, x, dy, a, dx, da))
EMU_ENTRY(eltwise_forward, (const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x, const float *coeff, float *y, int *winner), (d, op, n, nx, x, coeff, y, winner))
EMU_ENTRY(eltwise_backward, (const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x, int k, const float *coeff, bool stable_prod, const float *y, const float *dy, const int *winner, float *dx), (d, op, n, nx, x, k, coeff, stable_prod, y, dy, winner, dx))
EMU_ENTRY(eltwise_relu_forward, (const ct_driver *d, size_t n, int nx, const float *const *x, const float *coeff, float slope, float *y), (d, n, nx, x, coeff, slope, y))
EMU_ENTRY(eltwise_relu_backward, (const ct_driver *d, size_t n, int nx, const float *coeff, float slope, const float *y, const float *dy, float *const *dx, float *dz), (d, n, nx, coeff, slope, y, dy, dx, dz))
EMU_ENTRY(bias_forward, (const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *b, float *y), (d, outer, dim, inner, x, b, y))
EMU_ENTRY(scale_forward, (const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *s, const float *b, float *y), (d, outer, dim, inner, x, s, b, y))
EMU_ENTRY(scale_backward, (const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *dy, const float *s, float *ds, float *db, float *dx), (d, outer, dim, inner, x, dy, s, ds, db, dx))
EMU_ENTRY(batchnorm_forward, (const ct_driver *d, const ct_batchnorm *p, const float *x, float *y, float *xnorm, float *mean, float *std, float *run_mean, float *run_var, float *run_factor), (d, p, x, y, xnorm, mean, std, run_mean, run_var, run_factor))
EMU_ENTRY(batchnorm_backward, (const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *xnorm, const float *std, float *dx), (d, p, dy, xnorm, std, dx))
EMU_ENTRY(bn_chain_forward, (const ct_driver *d, const ct_bn_chain *p, const float *x, float *y, float *xnorm, float *mean, float *std, float *run_mean, float *run_var, float *run_factor, const float *s, const float *b), (d, p, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b))
EMU_ENTRY(bn_chain_backward, (const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy, const float *xnorm, const float *std, const float *s, float *ds, float *db, float *dx, float *dz), (d, p, y, dy, xnorm, std, s, ds, db, dx, dz))
EMU_ENTRY(bn_chain_backward_x, (const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy, const float *x, const float *mean, const float *std, const float *s, float *ds, float *db, float *dx, float *dz), (d, p, y, dy, x, mean, std, s, ds, db, dx, dz))
EMU_ENTRY(bn_chain_forward_add, (const ct_driver *d, const ct_bn_chain *p, const float *x, const float *add, float c_self, float c_add, float slope, float *out, float *mean, float *std, float *run_mean, float *run_var, float *run_factor, const float *s, const float *b), (d, p, x, add, c_self, c_add, slope, out, mean, std, run_mean, run_var, run_factor, s, b))
EMU_ENTRY(bn_chain_backward_y, (const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy, const float *xnorm, const float *std, const float *s, const float *b, float *ds, float *db, float *dx, float *dz), (d, p, y, dy, xnorm, std, s, b, ds, db, dx, dz))
EMU_ENTRY(conv_lower, (const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, float *ws), (d, g, t, nb, x, w, ws))
EMU_ENTRY(conv_lift, (const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws, const float *b, float *y), (d, g, t, nb, ws, b, y))
EMU_ENTRY(conv_lift_grad, (const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, float *ws), (d, g, t, nb, dy, ws))
EMU_ENTRY(conv_bias_grad, (const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, const float *ws, float *db), (d, g, t, nb, dy, ws, db))
EMU_ENTRY(conv_lower_grad, (const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws, float *dx, float *dw), (d, g, t, nb, ws, dx, dw))
EMU_ENTRY(conv_wino_block, (const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1, const float *in, const float *b, float *out, float *scratch), (d, g, step, nb, r0, r1, in, b, out, scratch))
EMU_ENTRY(conv_wino4_block, (const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1, const float *in, const float *b, float *out, float *scratch), (d, g, step, nb, r0, r1, in, b, out, scratch))
EMU_ENTRY(conv_direct_forward, (const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y, float *ws), (d, g, nb, x, w, b, y, ws))
EMU_ENTRY(conv_direct_backward_data, (const ct_driver *d, const ct_conv_geom *g, int nb, const float *w, const float *dy, float *dx, float *ws), (d, g, nb, w, dy, dx, ws))
EMU_ENTRY(conv_direct_backward_weight, (const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *dy, float *dw, float *db, float *ws), (d, g, nb, x, dy, dw, db, ws))
EMU_ENTRY(conv_pw, (const ct_driver *d, bool trans_w, int M, int Kd, int P, int nb, const float *w, const float *x, size_t x_img, size_t x_row, const float *b, float *y, size_t y_img, size_t y_row), (d, trans_w, M, Kd, P, nb, w, x, x_img, x_row, b, y, y_img, y_row))
EMU_ENTRY(pool_forward, (const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, float *y, int *argmax, float *mask), (d, g, planes, x, y, argmax, mask))
EMU_ENTRY(pool_backward, (const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, const float *dy, const int *argmax, float *dx), (d, g, planes, x, dy, argmax, dx))
EMU_ENTRY(lrn_forward, (const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, float *y, float *scale, float *spow, float *tmp), (d, g, nimg, x, y, scale, spow, tmp))
EMU_ENTRY(lrn_backward, (const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, const float *y, const float *dy, const float *scale, const float *spow, float *dx, float *tmp), (d, g, nimg, x, y, dy, scale, spow, dx, tmp))
EMU_ENTRY(softmax_forward, (const ct_driver *d, size_t outer, size_t C, size_t inner, const float *x, float *y, float *scratch), (d, outer, C, inner, x, y, scratch))
EMU_ENTRY(softmax_backward, (const ct_driver *d, size_t outer, size_t C, size_t inner, const float *y, const float *dy, float *dx, float *scratch), (d, outer, C, inner, y, dy, dx, scratch))
EMU_ENTRY(softmax_loss_forward, (const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob, const float *labels, bool has_ignore, int ignore, double *loss, size_t *valid, ptrdiff_t *bad), (d, outer, C, inner, prob, labels, has_ignore, ignore, loss, valid, bad))
EMU_ENTRY(softmax_loss_backward, (const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob, const float *labels, bool has_ignore, int ignore, float scale, float *dx), (d, outer, C, inner, prob, labels, has_ignore, ignore, scale, dx))
EMU_ENTRY(sigmoid_xent_forward, (const ct_driver *d, size_t n, const float *x, const float *t, bool has_ignore, int ignore, float *sig, double *loss, size_t *valid), (d, n, x, t, has_ignore, ignore, sig, loss, valid))
EMU_ENTRY(sigmoid_xent_backward, (const ct_driver *d, size_t n, const float *sig, const float *t, bool has_ignore, int ignore, float w, float *dx), (d, n, sig, t, has_ignore, ignore, w, dx))
EMU_ENTRY(accuracy, (const ct_driver *d, size_t outer, size_t C, size_t inner, const float *score, const float *labels, int top_k, bool has_ignore, int ignore, float *per_class, size_t *class_count, size_t *hits, size_t *counted, ptrdiff_t *bad), (d, outer, C, inner, score, labels, top_k, has_ignore, ignore, per_class, class_count, hits, counted, bad))
EMU_ENTRY(argmax, (const ct_driver *d, size_t outer, size_t dim, size_t stride, int top_k, bool out_max_val, bool has_axis, const float *x, float *y, ct_rank_entry *scratch), (d, outer, dim, stride, top_k, out_max_val, has_axis, x, y, scratch))
EMU_ENTRY(lstm_unit_forward, (const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x, const float *cont, float *c, float *h), (d, N, D, c_prev, x, cont, c, h))
EMU_ENTRY(lstm_unit_backward, (const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x, const float *cont, const float *c, const float *dc, const float *dh, float *dc_prev, float *dx), (d, N, D, c_prev, x, cont, c, dc, dh, dc_prev, dx))
EMU_ENTRY(dropout_mask, (const ct_driver *d, uint64_t seed, size_t offset, size_t n, float ratio, float scale, float *mask), (d, seed, offset, n, ratio, scale, mask))
EMU_ENTRY(update, (const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0, float *h1), (d, s, n, w, g, h0, h1))

/* ---------------------------------------------------------------- the arena */

static bool blocks_reserve(emu_dev *e, size_t n) {
  if (n <= e->cap) return true;
  size_t cap = e->cap ? e->cap * 2 : 64;
  while (cap < n) cap *= 2;
  block *b = realloc(e->blocks, cap * sizeof *b);
  if (!b) return false;
  e->blocks = b;
  e->cap = cap;
  return true;
}

static void update_top(emu_dev *e) {
  e->top = 0;
  for (size_t i = 0; i < e->nblocks; i++)
    if (e->blocks[i].used) e->top = e->blocks[i].off + e->blocks[i].size;
}

/* First fit over the free blocks. */
static void *arena_alloc(emu_dev *e, size_t bytes) {
  if (bytes > e->reserved) return NULL;
  bytes = bytes ? (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1) : ALIGN;
  pthread_mutex_lock(&e->mu);
  void *p = NULL;
  for (size_t i = 0; i < e->nblocks && !p; i++) {
    block *b = &e->blocks[i];
    if (b->used || b->size < bytes) continue;
    if (b->size > bytes) {
      if (!blocks_reserve(e, e->nblocks + 1)) break;
      b = &e->blocks[i];
      memmove(&e->blocks[i + 2], &e->blocks[i + 1], (e->nblocks - i - 1) * sizeof *b);
      e->blocks[i + 1] = (block){b->off + bytes, b->size - bytes, false};
      e->nblocks++;
      b->size = bytes;
    }
    b->used = true;
    p = e->base + b->off;
  }
  if (p) {
    update_top(e);
    /* allocated while open (a layer pass under CT_EMU_GUARD=pass): its pages open too */
    if (e->open && page_up(e->top) > e->open_top &&
        mprotect(e->base + e->open_top, page_up(e->top) - e->open_top, PROT_READ | PROT_WRITE) == 0)
      e->open_top = page_up(e->top);
  }
  pthread_mutex_unlock(&e->mu);
  return p;
}

static void arena_free(emu_dev *e, void *p) {
  if (!p) return;
  pthread_mutex_lock(&e->mu);
  size_t off = (size_t)((char *)p - e->base);
  for (size_t i = 0; i < e->nblocks; i++) {
    if (e->blocks[i].off != off || !e->blocks[i].used) continue;
    e->blocks[i].used = false;
    /* merge with free neighbours */
    if (i + 1 < e->nblocks && !e->blocks[i + 1].used) {
      e->blocks[i].size += e->blocks[i + 1].size;
      memmove(&e->blocks[i + 1], &e->blocks[i + 2], (e->nblocks - i - 2) * sizeof(block));
      e->nblocks--;
    }
    if (i > 0 && !e->blocks[i - 1].used) {
      e->blocks[i - 1].size += e->blocks[i].size;
      memmove(&e->blocks[i], &e->blocks[i + 1], (e->nblocks - i - 1) * sizeof(block));
      e->nblocks--;
    }
    break;
  }
  update_top(e);
  pthread_mutex_unlock(&e->mu);
}

/* ---------------------------------------------------------------- the place (storage's view) */

static void *mem_alloc(const ct_mem *m, size_t bytes) { return arena_alloc(m->ctx, bytes); }
static void mem_free(const ct_mem *m, void *p) { arena_free(m->ctx, p); }

static ct_status mem_fail(emu_dev *e, ct_status s, const char *what, ct_error *err) {
  if (s) ct_fail(err, s, "%s: %s failed: %s", e->name, what, e->error);
  return s;
}

/* A copy between the host and the arena, as a call of the device. */
static ct_status mem_copy(const ct_mem *m, void *dst, const void *src, size_t bytes, const char *what, ct_error *err) {
  emu_dev *e = m->ctx;
  ct_status s = emu_open(e, what);
  if (!s) {
    memcpy(dst, src, bytes);
    s = emu_close(e, CT_OK);
  }
  return mem_fail(e, s, what, err);
}

static ct_status mem_upload(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  return mem_copy(m, dst, src, bytes, "upload", err);
}

static ct_status mem_download(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  return mem_copy(m, dst, src, bytes, "download", err);
}

static ct_status mem_zero(const ct_mem *m, void *dst, size_t bytes, ct_error *err) {
  emu_dev *e = m->ctx;
  ct_status s = emu_open(e, "zero");
  if (!s) {
    memset(dst, 0, bytes);
    s = emu_close(e, CT_OK);
  }
  return mem_fail(e, s, "zero", err);
}

/* ---------------------------------------------------------------- the driver */

static void *emu_alloc(const ct_driver *d, size_t bytes) { return arena_alloc(dev_of(d), bytes); }
static void emu_free(const ct_driver *d, void *p) { arena_free(dev_of(d), p); }

static void emu_error_message(const ct_driver *d, char *buf, size_t n) {
  emu_dev *e = dev_of(d);
  pthread_mutex_lock(&e->mu);
  snprintf(buf, n, "%s", e->error[0] ? e->error : "no error");
  pthread_mutex_unlock(&e->mu);
}

/* The rates one partition on this device sees: the CPU's, scaled by one factor measured through
 * the device itself (its speed setting included), a 384^3 SGEMM, best of three, once. The device
 * runs the CPU's kernels, so the ratio of its rates (which alone decides the cost model's
 * lowering picks) is the CPU's; measuring the copy rate apart would let a pick near a boundary
 * differ between the two with the noise of two measurements, and a split's result with it. */
static void emu_calibration(const ct_driver *d, double *gflops, double *gbytes) {
  emu_dev *e = dev_of(d);
  pthread_mutex_lock(&e->mu);
  if (e->gflops <= 0) {
    e->calibrating = true;
    ct_cpu_calibration(&e->gflops, &e->gbytes); /* fallback: the CPU's, scaled */
    e->gflops *= e->speed;
    e->gbytes *= e->speed;
    const int n = 384;
    float *a = arena_alloc(e, (size_t)n * n * 3 * sizeof(float));
    if (a) {
      float *b = a + (size_t)n * n, *c = b + (size_t)n * n;
      double best = 1e9;
      bool ok = !emu_memset(d, a, 0, (size_t)n * n * 3 * sizeof(float));
      for (int r = 0; ok && r < 4; r++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ok = !emu_gemm(d, false, false, n, n, n, 1.0f, a, b, 0.0f, c);
        double t = elapsed_s(&t0);
        if (r && t < best) best = t; /* the first is a warm-up */
      }
      if (ok && best > 0) {
        double cpu_gflops, cpu_gbytes;
        ct_cpu_calibration(&cpu_gflops, &cpu_gbytes);
        const double f = 2.0 * n * n * n / best / 1e9 / cpu_gflops;
        e->gflops = cpu_gflops * f;
        e->gbytes = cpu_gbytes * f;
      }
    }
    arena_free(e, a);
    e->calibrating = false;
  }
  *gflops = e->gflops;
  *gbytes = e->gbytes;
  pthread_mutex_unlock(&e->mu);
}

/* A partition on the device runs its kernels on one thread, like the CPU's partitions: OpenBLAS
 * is kept single-threaded for the pass (set on the thread starting it, never by a partition). */
static void emu_region(const ct_driver *d, bool begin) {
  emu_dev *e = dev_of(d);
  if (e->guard_pass) {
    pthread_mutex_lock(&e->mu);
    if (begin)
      (void)arena_open(e); /* a failure here leaves each call to open it (and report) itself */
    else if (e->open)
      arena_close(e);
    pthread_mutex_unlock(&e->mu);
  }
  if (begin)
    ct_blas_single_begin();
  else
    ct_blas_single_end();
}

static const ct_driver_ops emu_ops = {
    .error_message = emu_error_message,
    .region = emu_region,
    .alloc = emu_alloc,
    .free = emu_free,
    .calibration = emu_calibration,
    .memset = emu_memset,
    .copy = emu_copy,
    .copy_2d = emu_copy_2d,
    .upload = emu_upload,
    .download = emu_download,
    .gemm = emu_gemm,
    .gemm_ld = emu_gemm_ld,
    .gemv = emu_gemv,
    .axpy = emu_axpy,
    .scal = emu_scal,
    .dot = emu_dot,
    .asum = emu_asum,
    .sumsq = emu_sumsq,
    .add = emu_add,
    .sub = emu_sub,
    .mul = emu_mul,
    .neuron_forward = emu_neuron_forward,
    .neuron_backward = emu_neuron_backward,
    .prelu_forward = emu_prelu_forward,
    .prelu_backward = emu_prelu_backward,
    .eltwise_forward = emu_eltwise_forward,
    .eltwise_backward = emu_eltwise_backward,
    .eltwise_relu_forward = emu_eltwise_relu_forward,
    .eltwise_relu_backward = emu_eltwise_relu_backward,
    .bias_forward = emu_bias_forward,
    .scale_forward = emu_scale_forward,
    .scale_backward = emu_scale_backward,
    .batchnorm_forward = emu_batchnorm_forward,
    .batchnorm_backward = emu_batchnorm_backward,
    .bn_chain_forward = emu_bn_chain_forward,
    .bn_chain_backward = emu_bn_chain_backward,
    .bn_chain_backward_x = emu_bn_chain_backward_x,
    .bn_chain_backward_y = emu_bn_chain_backward_y,
    .bn_chain_forward_add = emu_bn_chain_forward_add,
    .conv_lower = emu_conv_lower,
    .conv_lift = emu_conv_lift,
    .conv_lift_grad = emu_conv_lift_grad,
    .conv_bias_grad = emu_conv_bias_grad,
    .conv_lower_grad = emu_conv_lower_grad,
    .conv_wino_block = emu_conv_wino_block,
    .conv_wino4_block = emu_conv_wino4_block,
    .conv_direct_forward = emu_conv_direct_forward,
    .conv_direct_backward_data = emu_conv_direct_backward_data,
    .conv_direct_backward_weight = emu_conv_direct_backward_weight,
    .conv_pw = emu_conv_pw,
    .pool_forward = emu_pool_forward,
    .pool_backward = emu_pool_backward,
    .lrn_forward = emu_lrn_forward,
    .lrn_backward = emu_lrn_backward,
    .softmax_forward = emu_softmax_forward,
    .softmax_backward = emu_softmax_backward,
    .softmax_loss_forward = emu_softmax_loss_forward,
    .softmax_loss_backward = emu_softmax_loss_backward,
    .sigmoid_xent_forward = emu_sigmoid_xent_forward,
    .sigmoid_xent_backward = emu_sigmoid_xent_backward,
    .accuracy = emu_accuracy,
    .argmax = emu_argmax,
    .lstm_unit_forward = emu_lstm_unit_forward,
    .lstm_unit_backward = emu_lstm_unit_backward,
    .dropout_mask = emu_dropout_mask,
    .update = emu_update,
};

static ct_status env_number(const char *name, double lo, double hi, double dflt, double *out, ct_error *err) {
  const char *s = getenv(name);
  *out = dflt;
  if (!s || !*s) return CT_OK;
  char *end;
  double v = strtod(s, &end);
  if (*end || !(v > lo) || v > hi)
    return ct_fail(err, CT_EINVAL, "%s=%s: expected a number in (%g, %g]", name, s, lo, hi);
  *out = v;
  return CT_OK;
}

static ct_status dev_get(int index, emu_dev **out, ct_error *err) {
  if (index < 0 || index >= EMU_MAX) return ct_fail(err, CT_EINVAL, "emu:%d: devices are emu:0 to emu:%d", index, EMU_MAX - 1);
  pthread_mutex_lock(&devs_mu);
  emu_dev *e = devs[index];
  ct_status st = CT_OK;
  if (!e) {
    double speed, mb, fail;
    const char *guard = getenv("CT_EMU_GUARD");
    if (guard && *guard && strcmp(guard, "call") && strcmp(guard, "pass") && strcmp(guard, "off")) {
      st = ct_fail(err, CT_EINVAL, "CT_EMU_GUARD=%s: expected \"call\", \"pass\" or \"off\"", guard);
      goto done;
    }
    if ((st = env_number("CT_EMU_SPEED", 0, 1, 1, &speed, err)) ||
        (st = env_number("CT_EMU_MEMORY_MB", 0, 1 << 20, 4096, &mb, err)) ||
        (st = env_number("CT_EMU_FAIL_AFTER", 0, 1e18, 0, &fail, err)))
      goto done;
    e = calloc(1, sizeof *e);
    if (!e) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    e->index = index;
    snprintf(e->name, sizeof e->name, "emu:%d", index);
    e->speed = speed;
    e->guard_pass = guard && !strcmp(guard, "pass");
    e->guard_off = guard && !strcmp(guard, "off");
    e->fail_after = (unsigned long long)fail;
    e->reserved = page_up((size_t)(mb * 1024 * 1024));
    e->base = mmap(NULL, e->reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (e->base == MAP_FAILED || !blocks_reserve(e, 64)) {
      st = ct_fail(err, CT_ENOMEM, "emu:%d: cannot reserve its %.0f MB arena", index, mb);
      if (e->base != MAP_FAILED) munmap(e->base, e->reserved);
      free(e->blocks);
      free(e);
      goto done;
    }
    if (e->guard_off && mprotect(e->base, e->reserved, PROT_READ | PROT_WRITE) != 0) {
      st = ct_fail(err, CT_ENOMEM, "emu:%d: cannot open its arena: %s", index, strerror(errno));
      munmap(e->base, e->reserved);
      free(e->blocks);
      free(e);
      goto done;
    }
    e->blocks[0] = (block){0, e->reserved, false};
    e->nblocks = 1;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&e->mu, &a);
    pthread_mutexattr_destroy(&a);
    e->mem = (ct_mem){.name = e->name,
                      .alloc = mem_alloc,
                      .free = mem_free,
                      .upload = mem_upload,
                      .download = mem_download,
                      .zero = mem_zero,
                      .ctx = e};
    if (!ct_mem_register(&e->mem)) {
      st = ct_fail(err, CT_EINVAL, "emu:%d: too many devices in one process", index);
      munmap(e->base, e->reserved);
      free(e->blocks);
      free(e);
      goto done;
    }
    /* kept for the process: storages anywhere may hold copies in it */
    devs[index] = e;
    install_handler();
  }
done:
  pthread_mutex_unlock(&devs_mu);
  *out = st ? NULL : e;
  return st;
}

ct_status ct_emu_create(int index, ct_driver **out, ct_error *err) {
  *out = NULL;
  emu_dev *e = NULL;
  CT_TRY(dev_get(index, &e, err));
  ct_driver *d = calloc(1, sizeof *d);
  if (!d) return ct_fail(err, CT_ENOMEM, "out of memory");
  d->ops = &emu_ops;
  d->device = "emu";
  d->index = index;
  snprintf(d->name, sizeof d->name, "%s", e->name);
  d->mem = &e->mem;
  d->ctx = e;
  *out = d;
  return CT_OK;
}
