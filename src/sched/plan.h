/* Placement: which drivers a net computes on, and for each layer the plan — a list of
 * partitions, each a driver and a contiguous range of the batch (CcT's per-layer batch
 * proportions). Plans are data, computed here from the prototxt's `partition { device share }`
 * entries, the net-level defaults, or automatically, and layers execute one partition given
 * (driver, range) (layers/layer.h); they no longer decide their own splits.
 *
 * Shares: a plan entry with a share gets that fraction of the batch (largest remainder, so the
 * sizes sum to the batch). Entries without shares get automatic ones: proportional to each
 * driver's throughput for the layer's kind of work (GEMM-bound or memory-bound, from the
 * drivers' calibration), less the time the copies the plan causes would take, and never a plan
 * predicted slower than the best single device (sched/auto.c). */
#ifndef CT_SCHED_PLAN_H
#define CT_SCHED_PLAN_H

#include <stdbool.h>

#include "core/storage.h"
#include "drivers/driver.h"

#define CT_MAX_PARTITIONS 64
/* Drivers one net may use: the CPU and up to this many others. */
#define CT_MAX_DRIVERS 8

/* One partition of a layer's plan. */
typedef struct ct_part {
  const ct_driver *d; /* where it computes */
  int index;          /* its place in the plan */
  int begin, end;     /* its images: [begin, end) of the batch (first axis) */
  bool whole;         /* the layer runs unsplit: every tensor whole, not a range of images */
  int threads;        /* cores it may use (the CPU driver splits GEMMs over them) */
} ct_part;

typedef struct ct_plan {
  int n;
  int N; /* the batch the ranges split (0 for an unsplit layer) */
  ct_part part[CT_MAX_PARTITIONS];
} ct_plan;

/* A user's request for one layer (or the net's default): devices and optional shares. */
typedef struct ct_plan_spec {
  int n;
  int driver[CT_MAX_PARTITIONS]; /* index into the placement's drivers */
  double share[CT_MAX_PARTITIONS];
  bool has_share; /* all entries have shares (else all are automatic) */
} ct_plan_spec;

/* What a layer's work is bound by, for automatic shares. */
typedef enum ct_work_kind { CT_WORK_GEMM, CT_WORK_MEMORY } ct_work_kind;

/* The drivers of one net, its thread pool and its copy counters. Owned by the net; layers point
 * at it. */
typedef struct ct_placement {
  int ndrivers;
  ct_driver *driver[CT_MAX_DRIVERS]; /* driver[0] is the CPU's */
  int master;                        /* where parameters, their update and unsplit layers live */
  struct ct_pool *pool;
  int cpu_parts;    /* CPU partitions for layers that gain from splitting (default: the cores) */
  ct_plan_spec dflt; /* the net-level default; n == 0: the CPU alone */
  ct_copy_stats stats;
  struct ct_ws_pool *ws; /* shared layer workspaces (layers/layer.h; NULL: each layer its own) */
} ct_placement;

/* A placement on the CPU alone with `cpu_parts` partitions (and a pool of that many threads, at
 * most the cores). Free with ct_placement_free. */
ct_status ct_placement_create(int cpu_parts, ct_placement **out, ct_error *err);
void ct_placement_free(ct_placement *pl);
/* The index of the placement's driver for `device` ("cpu", "emu:0", ...), creating the driver
 * the first time; a device the build cannot drive or that is not present is an error naming it. */
ct_status ct_placement_driver(ct_placement *pl, const char *device, int *index, ct_error *err);
/* Sets the default plan from a device list: "cpu", "emu:0", "cpu,emu:0" (automatic shares) or
 * "cpu=0.3,emu:0=0.7"; the first device becomes the master. Errors name the bad entry. */
ct_status ct_placement_set_devices(ct_placement *pl, const char *list, ct_error *err);
/* Changes the CPU partitions (the pool follows). */
ct_status ct_placement_set_cpu_parts(ct_placement *pl, int n, ct_error *err);
/* Makes the pool big enough for `parts` partitions to run at once. */
ct_status ct_placement_fit_pool(ct_placement *pl, int parts, ct_error *err);

/* The plan for a batch of N images. `splits`: the layer can run on ranges of images;
 * `gains`: on one device it is worth splitting over the CPU's cores (convolution, pooling,
 * element-wise) rather than running whole with all cores (a fully-connected GEMM). spec NULL:
 * the placement's default. An unsplit layer runs whole on the spec's device with the largest
 * share (the master when automatic). */
typedef struct ct_plan_request {
  const ct_plan_spec *spec;
  int N;
  bool splits, gains;
  ct_work_kind kind;
  double flops;       /* one forward pass of the whole batch (automatic shares) */
  double bytes;       /* bytes it reads and writes per pass */
  double copy_bytes;  /* bytes of input per image a partition must fetch when its data is elsewhere */
  const ct_plan *prev; /* the plan of the layer that produced its first bottom (may be NULL) */
} ct_plan_request;
ct_status ct_plan_make(const ct_placement *pl, const ct_plan_request *rq, ct_plan *out, ct_error *err);

/* Splits N into n sizes by `share` (largest remainder: the sizes sum to N). */
void ct_plan_split(int N, int n, const double *share, int *size);
/* "cpu: 0.50, emu:0: 0.50" or "emu:0 (whole)" into buf. */
const char *ct_plan_str(const ct_plan *p, char *buf, size_t n);
/* Whether two plans put the same ranges on the same drivers. */
bool ct_plan_same(const ct_plan *a, const ct_plan *b);

#endif
