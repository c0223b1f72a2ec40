/*
 * cortado — a Caffe-compatible CNN training system.
 *
 * The public C API. Every fallible call returns a ct_status and, on failure, fills the caller's
 * ct_error (which may be NULL) with a one-line human message naming the file, layer or value at
 * fault. Objects are opaque handles made by *_create / *_load and released by the matching *_free;
 * *_free(NULL) is a no-op. Nothing here exits or aborts on bad input.
 */
#ifndef CORTADO_H
#define CORTADO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ct_status {
  CT_OK = 0,
  CT_EINVAL,       /* a bad argument or configuration value */
  CT_EPARSE,       /* malformed prototxt or binary protobuf */
  CT_ESHAPE,       /* shapes that do not fit together */
  CT_EIO,          /* a file could not be opened, read or written */
  CT_ENOMEM,       /* an allocation failed or a size is implausible */
  CT_ENOTFOUND,    /* a named blob, layer or parameter does not exist */
  CT_EUNSUPPORTED, /* a valid Caffe feature cortado does not implement */
  CT_ENUMERIC,     /* NaN or Inf appeared in training */
  CT_EINTERNAL,    /* a broken invariant: a bug in cortado */
  CT_EDEVICE       /* a device failed (a driver call, a copy to or from its memory) */
} ct_status;

typedef struct ct_error {
  ct_status status;
  char msg[1024];
} ct_error;

/* A short name for a status ("invalid argument", ...). */
const char *ct_status_name(ct_status s);

typedef enum ct_phase { CT_TRAIN = 0, CT_TEST = 1 } ct_phase;

/* ------------------------------------------------------------------ nets */

typedef struct ct_net ct_net;

/* Builds a net from a NetParameter prototxt for one phase. `weights` (may be NULL) is a
 * .caffemodel whose blobs are copied by layer name. `stages` (may be NULL) is a NULL-terminated
 * list of stage names for include/exclude rules; `level` the NetState level. On failure *out is
 * NULL. The caller owns the net. */
ct_status ct_net_create(const char *prototxt_path, ct_phase phase, int level, const char *const *stages,
                        const char *weights, ct_net **out, ct_error *err);
/* As ct_net_create, from prototxt text held in memory; `name` is used in error messages and
 * `dir` (may be NULL) anchors relative data paths. */
ct_status ct_net_create_from_text(const char *text, const char *name, const char *dir, ct_phase phase,
                                  ct_net **out, ct_error *err);
void ct_net_free(ct_net *net);

/* CcT's partitions: each layer that gains from it splits its batch into n shares run on n
 * worker threads with a single-threaded BLAS (default: the number of cores). Results equal the
 * one-partition run up to float rounding, and are reproducible for a given n. */
ct_status ct_net_set_partitions(ct_net *net, int n, ct_error *err);
int ct_net_partitions(const ct_net *net);
/* The net's default plan, as the CLI's --device takes it: a comma-separated list of devices
 * ("cpu", "emu:N", "cuda:N"), each with an optional share ("cpu=0.3,emu:0=0.7"; all or none:
 * without shares they are automatic, in proportion to each device's measured throughput). The
 * first device holds the parameters and runs the update and the layers that cannot split their
 * batch; a layer's own `partition` entries override the default. An unknown or absent device,
 * or a bad share, is an error naming it. */
ct_status ct_net_set_devices(ct_net *net, const char *devices, ct_error *err);
/* Useful FLOPs of layer i's forward pass (0 when unknown), and a short note on how it runs
 * (for convolutions: the lowering type in use). */
double ct_net_layer_flops(const ct_net *net, int i);
const char *ct_net_layer_note(const ct_net *net, int i);
/* Useful FLOPs of layer i's backward pass: the forward's once for the data gradient when it
 * propagates to a bottom, once more for the weight gradient when its parameters learn. */
double ct_net_layer_backward_flops(const ct_net *net, int i);

/* The BLAS underneath the CPU driver: OpenBLAS's name for the kernels it runs (e.g.
 * "SkylakeX"). OpenBLAS 0.3.21 does not know recent CPUs (Sapphire Rapids and later) and falls
 * back to its generic "Prescott" kernels there, about 10x slower; ct_blas_core_advice() then
 * names the OPENBLAS_CORETYPE that serves the CPU's vector units ("SkylakeX" for AVX-512,
 * "Haswell" for AVX2), else NULL. OPENBLAS_CORETYPE is read when OpenBLAS loads, so it has to be
 * in the environment before the process starts (the cortado tool restarts itself with it). */
const char *ct_blas_core_name(void);
const char *ct_blas_core_advice(void);
/* The CPU's GEMM rate (GFLOP/s, one thread) and memory bandwidth (GB/s) the lowering cost model
 * picked with in this process, and the calibration cache they came from or went to (*file NULL:
 * none kept); false, and nothing set, where nothing has asked for them yet (no convolution's
 * lowering was picked), so a caller that reports them never makes the process measure. The
 * rates are read from the host's line of the cache, or measured once and written there, so
 * that every run on a host picks the same lowerings. The cache is the file CT_CALIBRATION_FILE
 * names, else $XDG_CACHE_HOME/cortado/calibration, else $HOME/.cache/cortado/calibration;
 * CT_CALIBRATION_FILE=0 measures in every process and keeps nothing; deleting the file
 * measures again. */
bool ct_cpu_calibration_taken(double *gflops, double *gbytes, const char **file);

/* Seeds every random stream of the net (dropout masks, data shuffles, fillers not yet run). */
void ct_net_set_seed(ct_net *net, uint64_t seed);

/* Runs the whole net forward; *loss (may be NULL) receives the weighted sum of its losses. */
ct_status ct_net_forward(ct_net *net, float *loss, ct_error *err);
/* Runs backward from the losses. Parameter gradients accumulate: clear them with
 * ct_net_clear_param_diffs first. */
ct_status ct_net_backward(ct_net *net, ct_error *err);
void ct_net_clear_param_diffs(ct_net *net);
/* Re-derives every top's shape from the current input shapes (after ct_net_blob_reshape). */
ct_status ct_net_reshape(ct_net *net, ct_error *err);

/* Read-write access to a blob (a layer's top) by name, in host memory. Each call brings the host
 * copy up to date (a device may hold the newer values) and makes it the one the net reads next,
 * so call again after a forward or backward pass rather than keeping the pointer; it stays
 * valid until the next reshape. NULL when not found (or a device failed to hand the values
 * over). shape receives up to 8 axes; returns the number of axes, or -1 if not found. */
int ct_net_blob_shape(const ct_net *net, const char *name, int shape[8]);
float *ct_net_blob_data(ct_net *net, const char *name);
float *ct_net_blob_diff(ct_net *net, const char *name);
ct_status ct_net_blob_reshape(ct_net *net, const char *name, int naxes, const int *shape, ct_error *err);
/* The i-th blob name in the net (in creation order), or NULL past the end. */
const char *ct_net_blob_name(const ct_net *net, int i);
/* The names of the net's output blobs (tops consumed by no layer). */
int ct_net_num_outputs(const ct_net *net);
const char *ct_net_output_name(const ct_net *net, int i);
/* The loss weight of output i (0 for an output that is not a loss). */
float ct_net_output_loss_weight(const ct_net *net, int i);

/* Hands images to the MemoryData layer named `layer` (memory_data_param { batch_size channels
 * height width }): `data` holds n images of channels x height x width floats (NCHW), `labels` n
 * floats (may be NULL: all 0). Both are copied; the caller keeps ownership. Each forward pass then
 * serves the next batch_size images in order through the layer's transform_param, wrapping at
 * the end; setting data again restarts from its first image. */
ct_status ct_net_set_memory_data(ct_net *net, const char *layer, const float *data, const float *labels, int n,
                                 ct_error *err);

/* Learnable parameters by layer name and index (0 = weights, 1 = bias, ...), in host memory as
 * ct_net_blob_data. */
int ct_net_param_count(const ct_net *net, const char *layer);
int ct_net_param_shape(const ct_net *net, const char *layer, int index, int shape[8]);
float *ct_net_param_data(ct_net *net, const char *layer, int index);
float *ct_net_param_diff(ct_net *net, const char *layer, int index);

/* Layers, in execution order. */
int ct_net_num_layers(const ct_net *net);
const char *ct_net_layer_name(const ct_net *net, int i);
const char *ct_net_layer_type(const ct_net *net, int i);
/* Runs layer i alone forward / backward (for timing tools). */
ct_status ct_net_forward_layer(ct_net *net, int i, ct_error *err);
ct_status ct_net_backward_layer(ct_net *net, int i, ct_error *err);

/* Weights: .caffemodel in Caffe's binary layout. Loading copies blobs by layer name; layers
 * absent from the file keep their values; a shape mismatch is an error, and so is a file that
 * shares no layer name with the net or holds NaN or Inf values. */
ct_status ct_net_load_weights(ct_net *net, const char *caffemodel, ct_error *err);
ct_status ct_net_save_weights(const ct_net *net, const char *caffemodel, ct_error *err);
/* Copies parameter values by layer name from another net (train -> test sharing). */
ct_status ct_net_share_weights_from(ct_net *dst, const ct_net *src, ct_error *err);

/* ------------------------------------------------------------------ solvers */

typedef struct ct_solver ct_solver;

/* What the training loop reports, for progress displays, structured logs and metrics files.
 * Pointers inside are valid only during the callback. */
typedef enum ct_event_kind {
  CT_EVENT_TRAIN,    /* a display iteration: loss, lr, speed, train outputs */
  CT_EVENT_TEST,     /* one test net scored at iteration `iter` */
  CT_EVENT_SNAPSHOT, /* files written: path (the .caffemodel), path2 (the .solverstate) */
  CT_EVENT_DONE,     /* training finished */
  CT_EVENT_ITER      /* every other iteration (not a display one): loss (smoothed), lr, images_per_s
                        since the last display; for live progress lines */
} ct_event_kind;

typedef struct ct_event {
  ct_event_kind kind;
  int iter, max_iter;
  float loss;            /* TRAIN: smoothed over average_loss iterations */
  float lr;              /* TRAIN: the rate used at this iteration */
  double images_per_s;   /* TRAIN: since the previous display */
  double elapsed_s;      /* seconds since the solver was created */
  int test_net;          /* TEST: which test net */
  int noutputs;          /* TRAIN / TEST: output values (one per element of each output blob) */
  const char *const *output_names;
  const float *outputs;
  const float *output_loss_weights;
  const char *path, *path2;
} ct_event;

/* What the training loop is asked to do at an iteration boundary (Caffe's SolverAction); the
 * CLI maps SIGINT, SIGTERM and SIGHUP to these (--sigint_effect, --sighup_effect). */
typedef enum ct_solver_action {
  CT_ACTION_NONE = 0,
  CT_ACTION_STOP,    /* stop after the iteration that just ended (Solve still snapshots) */
  CT_ACTION_SNAPSHOT /* write a snapshot now and go on */
} ct_solver_action;

typedef struct ct_solver_options {
  const char *weights;  /* fine-tune from this .caffemodel (may be NULL) */
  const char *snapshot; /* resume from this .solverstate (may be NULL) */
  int quiet;            /* 1: no progress log lines */
  void (*log)(void *ctx, const char *line); /* where log lines go; NULL: stderr */
  void *log_ctx;
  void (*event)(void *ctx, const ct_event *e); /* structured reports (may be NULL) */
  void *event_ctx;
  int partitions; /* CPU partitions per layer (0: the number of cores) */
  /* When set, log lines go here instead of `log` (with log_ctx), with the library source file
   * (base name) and line that wrote them, for glog's "file:line]" prefix field. */
  void (*log_at)(void *ctx, const char *file, int line, const char *text);
  /* Asked once after every iteration (may be NULL: never anything). In a cluster run every
   * process asks its own and the processes agree: any one's request applies to all. */
  ct_solver_action (*action)(void *ctx);
  void *action_ctx;
  /* Caffe's train --level / --stage: with has_level, `level` replaces train_state's level;
   * `stages` (NULL-terminated, may be NULL) are added to train_state's stages. */
  int has_level, level;
  const char *const *stages;
  int allow_nonfinite; /* 1: NaN or Inf in the --weights file is a warning, not an error */
  const char *devices;  /* the nets' default plan, as ct_net_set_devices takes it (NULL: the CPU) */
  const char *type;    /* overrides the file's solver type ("SGD", "Adam", ...; NULL: the file's):
                          pycaffe's SGDSolver(file), AdamSolver(file), ... pick the rule */
  /* Caffe's solver callbacks (pycaffe's add_callback), called in every iteration of
   * ct_solver_step: on_start after the gradients are cleared and the test nets run, before the
   * forward pass; on_gradients after backward, before the update. Either may be NULL. A
   * non-zero return stops the step with an error (a callback that failed, or that wants the
   * training to end). */
  int (*on_start)(void *ctx);
  int (*on_gradients)(void *ctx);
  void *hook_ctx;
} ct_solver_options;

/* Reads a SolverParameter prototxt and builds its train net and test nets. */
ct_status ct_solver_create(const char *solver_path, const ct_solver_options *opt, ct_solver **out,
                           ct_error *err);
void ct_solver_free(ct_solver *s);
/* Runs n iterations (display, test and snapshot as the solver says). */
ct_status ct_solver_step(ct_solver *s, int n, ct_error *err);
/* Runs until max_iter, then the final snapshot, display and test as Caffe does. A STOP action
 * ends it early: the snapshot is still written (snapshot_after_train), the final display and
 * test are not, and ct_solver_stopped() turns 1. */
ct_status ct_solver_solve(ct_solver *s, ct_error *err);
/* As ct_solver_solve, but runs up to iteration `stop_iter` instead of max_iter (the CLI's
 * --iterations). A stop_iter below the current iteration is an error. */
ct_status ct_solver_solve_to(ct_solver *s, int stop_iter, ct_error *err);
/* 1 once an action asked the run to stop (it ended early), else 0. */
int ct_solver_stopped(const ct_solver *s);
/* Writes <prefix>_iter_N.caffemodel and .solverstate; *model_path / *state_path (may be NULL)
 * receive malloc'ed paths the caller frees. */
ct_status ct_solver_snapshot(ct_solver *s, char **model_path, char **state_path, ct_error *err);
ct_status ct_solver_restore(ct_solver *s, const char *solverstate, ct_error *err);
/* Runs the test nets now; fills up to n scores of test net `which`, returns count or -1. In a
 * cluster every process calls it (a net partitioned over the ranks gathers its parameters on
 * the root first); the root tests, the other processes return 0. */
int ct_solver_test(ct_solver *s, int which, float *scores, int n, ct_error *err);
/* Caffe's ApplyUpdate alone (pycaffe's apply_update): the update rule applied to the train
 * net's current gradients at the current iteration, whose counter does not move; the gradients
 * are left holding the step taken, as in Caffe. Not available in cluster training. */
ct_status ct_solver_apply_update(ct_solver *s, ct_error *err);
int ct_solver_iter(const ct_solver *s);
/* 1 in a single process and on the cluster rank that logs, tests and snapshots; 0 elsewhere. */
int ct_solver_is_root(const ct_solver *s);
ct_net *ct_solver_net(ct_solver *s);
int ct_solver_num_test_nets(const ct_solver *s);
ct_net *ct_solver_test_net(ct_solver *s, int i);

#ifdef __cplusplus
}
#endif
#endif
