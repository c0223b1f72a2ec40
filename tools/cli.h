/* What the CLI's files share: the flags, the parsed arguments, logging and error exits.
 * tools/cortado.c parses the command line; tools/cmd_*.c run the commands. */
#ifndef CT_TOOLS_CLI_H
#define CT_TOOLS_CLI_H

#include <stdbool.h>

#include "cortado.h"
#include "progress.h"

/* Exit status: 0 success, 1 the library failed (its message is printed), 2 a usage error,
 * 3 training stopped early by a signal (SIGINT, SIGTERM or SIGHUP with the effect "stop"), after
 * writing its snapshot. */
enum { EXIT_OK = 0, EXIT_LIB = 1, EXIT_USAGE = 2, EXIT_STOPPED = 3 };

typedef enum flag_id {
  F_SOLVER,
  F_MODEL,
  F_WEIGHTS,
  F_SNAPSHOT,
  F_ITERATIONS,
  F_PHASE,
  F_LEVEL,
  F_STAGE,
  F_PARTITIONS,
  F_DEVICE,
  F_QUIET,
  F_GPU,
  F_OUTPUT,
  F_LOG_FORMAT,
  F_LIST, /* convert / compute-mean (tools/cmd_data.c) */
  F_ROOT,
  F_IMAGES,
  F_LABELS,
  F_DB,
  F_BACKEND,
  F_RESIZE_HEIGHT,
  F_RESIZE_WIDTH,
  F_SHUFFLE,
  F_GRAY,
  F_ENCODED,
  F_SIGINT_EFFECT, /* train: Caffe's signal flags */
  F_SIGHUP_EFFECT,
  F_ALLOW_NONFINITE,
  F_LR_MULT, /* draw */
  F_FLAGFILE, /* gflags' --flagfile, expanded while parsing */
  F_HELP,
  F_VERSION,
  F_COUNT
} flag_id;

/* One flag as a command documents it. */
typedef struct cmd_flag {
  flag_id id;
  int required;
  const char *arg; /* placeholder shown in usage, NULL for booleans */
  const char *help;
} cmd_flag;

typedef struct args {
  const char *value[F_COUNT];
  int given[F_COUNT];
  int iterations;
  int partitions; /* 0: the library's default (one per core) */
  int level;
  ct_phase phase;
  char *stage_buf;     /* owned: --stage split in place */
  const char **stages; /* owned: NULL-terminated, or NULL when no --stage */
  const char *input;   /* the positional argument after the command (plot, draw), or NULL */
  const char *positional[3]; /* convert's ROOT/ LIST DB and compute-mean's DB [OUT], as Caffe's
                                convert_imageset and compute_image_mean take them */
  int npositional;
  ui ui;               /* how the run is shown: plain log lines, a live line, JSON, quiet */
} args;

/* Log lines behind glog's full prefix ("I1206 18:25:29.105800 12345 cortado.c:123] "), through
 * the running command's display once the flags are read. */
void cli_log_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define logf_(...) cli_log_at(__FILE__, __LINE__, __VA_ARGS__)
/* One log line on the BLAS kernels in use, for train and time. */
void log_blas_core(void);

/* Prints "cortado: <message>; see 'cortado <cmd> --help'" and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --gpu=N[,N...]|all (cmd_device.c): sets --device to the CUDA devices it names; 0, or the exit
 * status after printing why (a usage error, or no GPU to run on). */
int cli_gpu_devices(const char *cmd, args *a);
/* Prints the library's message and returns EXIT_LIB. */
int lib_error(ct_status s, const ct_error *err);
/* A friendlier message than the library's for a path that is not there or not readable;
 * EXIT_OK or EXIT_LIB. */
int check_readable(const char *flag, const char *path);
/* Whether mpirun started this process as one of several. */
bool launched_with_others(void);
/* Splits a comma-separated list in place (Caffe's --weights=a,b). Returns the count. */
int split_commas(char *s, const char **out, int max);

/* argv with every --flagfile=FILE replaced by the flags the file holds (tools/flagfile.c). */
typedef struct argv_list {
  char **v; /* NULL-terminated; entries point into argv or into owned */
  int n, cap;
  char **owned; /* the flagfiles' texts */
  int nowned;
} argv_list;
/* 0, or -1 with the reason in problem (a missing file, a line that is not a flag, ...). */
int expand_flagfiles(int argc, char **argv, argv_list *out, char *problem, size_t psize);
void argv_list_free(argv_list *l);

int run_train(args *a);
int run_test(args *a);
int run_time(args *a);
int run_device_query(args *a);

#endif
