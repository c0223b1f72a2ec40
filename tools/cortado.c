/*
 * cortado — the command-line tool, mirroring Caffe's `caffe` binary:
 *
 *   cortado train --solver=S [--weights=W | --snapshot=S] [--iterations=N] [--quiet]
 *   cortado test  --model=M --weights=W [--iterations=N] [--phase=TEST|TRAIN]
 *   cortado time  --model=M [--iterations=N] [--phase=TRAIN|TEST]
 *   cortado help [command] | --help | --version
 *
 * Flags take gflags' spellings (--flag=value, --flag value, -flag=value, -flag value, and
 * --flagfile=FILE) and may stand before or after the command. Log lines go to stderr behind
 * glog's full prefix ("I1206 18:25:29.105800 12345 solver.c:218] "), so that Caffe's log tools
 * (parse_log.sh, extract_seconds.py, parse_log.py, plot_training_log.py) read them.
 *
 * Exit status: 0 success, 1 the library failed (its message is printed), 2 a usage error, 3
 * training stopped early by a signal, after its snapshot. The commands run in tools/cmd_*.c.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "cli.h"
#include "cmd_data.h"
#include "cmd_upgrade.h"
#include "core/files.h"
#include "plot.h"

#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CORTADO_VERSION
#define CORTADO_VERSION "0.1.0"
#endif

typedef struct flag_spec {
  const char *name;
  const char *alias; /* a second spelling (or NULL) */
  int takes_value;   /* 0: boolean (--flag, --noflag, --flag=true|false) */
} flag_spec;

static const flag_spec FLAGS[F_COUNT] = {
    [F_SOLVER] = {"solver", NULL, 1},
    [F_MODEL] = {"model", NULL, 1},
    [F_WEIGHTS] = {"weights", NULL, 1},
    [F_SNAPSHOT] = {"snapshot", NULL, 1},
    [F_ITERATIONS] = {"iterations", NULL, 1},
    [F_PHASE] = {"phase", NULL, 1},
    [F_LEVEL] = {"level", NULL, 1},
    [F_STAGE] = {"stage", NULL, 1},
    [F_PARTITIONS] = {"partitions", NULL, 1},
    [F_DEVICE] = {"device", NULL, 1},
    [F_QUIET] = {"quiet", NULL, 0},
    [F_GPU] = {"gpu", NULL, 1},
    [F_OUTPUT] = {"output", "o", 1},
    [F_LOG_FORMAT] = {"log-format", "log_format", 1},
    [F_LIST] = {"list", NULL, 1},
    [F_ROOT] = {"root", NULL, 1},
    [F_IMAGES] = {"images", NULL, 1},
    [F_LABELS] = {"labels", NULL, 1},
    [F_DB] = {"db", NULL, 1},
    [F_BACKEND] = {"backend", NULL, 1},
    [F_RESIZE_HEIGHT] = {"resize_height", "resize-height", 1},
    [F_RESIZE_WIDTH] = {"resize_width", "resize-width", 1},
    [F_SHUFFLE] = {"shuffle", NULL, 0},
    [F_GRAY] = {"gray", NULL, 0},
    [F_ENCODED] = {"encoded", NULL, 0},
    [F_SIGINT_EFFECT] = {"sigint_effect", "sigint-effect", 1},
    [F_SIGHUP_EFFECT] = {"sighup_effect", "sighup-effect", 1},
    [F_ALLOW_NONFINITE] = {"allow-nonfinite", "allow_nonfinite", 0},
    [F_LR_MULT] = {"lr-mult", "lr_mult", 0},
    [F_FLAGFILE] = {"flagfile", NULL, 1},
    [F_HELP] = {"help", "h", 0},
    [F_VERSION] = {"version", NULL, 0},
};


typedef struct command {
  const char *name;
  const char *summary;
  const char *synopsis;
  const char *details;
  const cmd_flag *flags;
  int nflags;
  int (*run)(args *a);
  int npositional; /* positional arguments taken after the command's name */
} command;

/* ------------------------------------------------------------------ logging */

/* The running command's display (progress.h); NULL before the flags are read. */
static ui *cli_ui;

void cli_log_at(const char *file, int line, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (cli_ui) {
    ui_log_at(cli_ui, file, line, buf);
    return;
  }
  char prefix[160];
  glog_prefix(prefix, sizeof prefix, file, line);
  fprintf(stderr, "%s%s\n", prefix, buf);
}

/* Log lines on the BLAS kernels in use and the calibration, for train and time. */
void log_blas_core(void) {
  const char *detected = getenv("CT_BLAS_CORE_DETECTED");
  const char *advice = ct_blas_core_advice();
  if (detected)
    logf_("OpenBLAS core: %s (set by cortado: OpenBLAS detected %s on this CPU; CT_BLAS_CORE=keep keeps it)",
          ct_blas_core_name(), detected);
  else if (advice)
    logf_("OpenBLAS core: %s, generic kernels; OPENBLAS_CORETYPE=%s would run about 10x faster GEMM",
          ct_blas_core_name(), advice);
  else
    logf_("OpenBLAS core: %s", ct_blas_core_name());
  double gflops, gbytes;
  const char *file;
  if (ct_cpu_calibration_taken(&gflops, &gbytes, &file)) /* a net with no lowering to pick took none */
    logf_("CPU calibration for the cost model: %.0f GFLOP/s (one thread), %.1f GB/s; %s%s", gflops, gbytes,
          file ? "kept in " : "measured, not kept", file ? file : "");
}

/* ------------------------------------------------------------------ errors */

int usage_error(const char *cmd, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (cmd)
    fprintf(stderr, "cortado: %s; see 'cortado %s --help'\n", buf, cmd);
  else
    fprintf(stderr, "cortado: %s; see 'cortado --help'\n", buf);
  return EXIT_USAGE;
}

int lib_error(ct_status s, const ct_error *err) {
  if (cli_ui) ui_finish(cli_ui); /* the message goes below a live progress line, not onto it */
  const char *msg = err->msg[0] ? err->msg : ct_status_name(s);
  fprintf(stderr, "cortado: %s\n", msg);
  return EXIT_LIB;
}

/* Whether mpirun started this process as one of several (Open MPI's, then MPICH's variable). */
bool launched_with_others(void) {
  const char *n = getenv("OMPI_COMM_WORLD_SIZE");
  if (!n) n = getenv("PMI_SIZE");
  return n && atoi(n) > 1;
}

/* A friendlier message than the library's for the commonest mistake: a path that is not there. */
int check_readable(const char *flag, const char *path) {
  /* opened without blocking and refused unless a regular file: a FIFO would hang open() */
  int fd = -1;
  ct_error err = {0};
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "cortado: cannot open --%s '%s': %s\n", flag, path, strerror(errno));
    return EXIT_LIB;
  }
  if (ct_file_kind(st.st_mode)) {
    fprintf(stderr, "cortado: cannot open --%s '%s': it is %s, not a regular file\n", flag, path,
            ct_file_kind(st.st_mode));
    return EXIT_LIB;
  }
  if (ct_file_open_input(path, NULL, &fd, NULL, &err) != CT_OK) {
    fprintf(stderr, "cortado: cannot open --%s '%s': %s\n", flag, path, strerror(errno));
    return EXIT_LIB;
  }
  close(fd);
  return EXIT_OK;
}

int split_commas(char *s, const char **out, int max) {
  int n = 0;
  for (char *tok = s; tok && n < max;) {
    char *comma = strchr(tok, ',');
    if (comma) *comma = '\0';
    if (*tok) out[n++] = tok;
    tok = comma ? comma + 1 : NULL;
  }
  return n;
}

/* ------------------------------------------------------------------ commands and usage */

static const cmd_flag TRAIN_FLAGS[] = {
    {F_SOLVER, 1, "FILE",
     "(required) the SolverParameter prototxt: nets, learning rate, max_iter, display, "
     "test and snapshot settings."},
    {F_WEIGHTS, 0, "FILE[,FILE...]",
     "fine-tune: copy these .caffemodel weights into the train and test nets by "
     "layer name before training (later files win). Not with --snapshot."},
    {F_SNAPSHOT, 0, "FILE",
     "resume training from this .solverstate (it names its .caffemodel). Not with "
     "--weights."},
    {F_ITERATIONS, 0, "N",
     "run only N iterations from the start (or resumed) iteration instead of up to "
     "max_iter, then write a snapshot. Default: run to max_iter as Caffe does."},
    {F_PARTITIONS, 0, "N", "split each layer's batch into N partitions run in parallel (CcT). Default: one per core."},
    {F_DEVICE, 0, "LIST",
     "the devices every layer's batch is split over (CcT's hybrid): cpu, emu:N, cuda:N, comma-separated, each "
     "with an optional share (cpu=0.3,emu:0=0.7); without shares they are automatic. A layer's own partition "
     "entries win. Default: the CPU."},
    {F_QUIET, 0, NULL, "no progress lines (display, test scores, snapshots); errors still print."},
    {F_LEVEL, 0, "N", "the train net's NetState level for include/exclude rules (replaces train_state's level)."},
    {F_STAGE, 0, "S[,S...]", "stages added to the train net's NetState (train_state), comma-separated."},
    {F_SIGINT_EFFECT, 0, "stop|snapshot|none",
     "what SIGINT (and SIGTERM) does at the next iteration boundary. Default: stop (after the "
     "snapshot; exit status 3)."},
    {F_SIGHUP_EFFECT, 0, "stop|snapshot|none", "what SIGHUP does. Default: snapshot, and training goes on."},
    {F_ALLOW_NONFINITE, 0, NULL, "load --weights holding NaN or Inf values with a warning instead of refusing them."},
    {F_LOG_FORMAT, 0, "text|json",
     "text (default): on a terminal a live progress line, otherwise Caffe's log lines on stderr; "
     "json: one JSON object per event and line on stdout ({\"event\":\"train\",\"iter\":100,...})."},
    {F_GPU, 0, "N[,N...]|all",
     "Caffe's GPU selection: --gpu=0 is --device=cuda:0; several (or all) split every batch between them, "
     "which gives the one-device result (Caffe instead trains one batch per GPU). Refused, before anything "
     "loads, where no GPU is usable."},
};

static const cmd_flag TEST_FLAGS[] = {
    {F_MODEL, 1, "FILE", "(required) the NetParameter prototxt to score."},
    {F_WEIGHTS, 1, "FILE", "(required) the .caffemodel whose weights are copied in by layer name."},
    {F_ITERATIONS, 0, "N", "number of forward passes (batches) to average over. Default: 50."},
    {F_PHASE, 0, "TEST|TRAIN", "which phase's layers to build (include/exclude rules). Default: TEST."},
    {F_LEVEL, 0, "N", "the NetState level for include/exclude rules. Default: 0."},
    {F_STAGE, 0, "S[,S...]", "NetState stages for include/exclude rules, comma-separated."},
    {F_PARTITIONS, 0, "N", "split each layer's batch into N partitions run in parallel (CcT). Default: one per core."},
    {F_DEVICE, 0, "LIST",
     "the devices every layer's batch is split over (CcT's hybrid): cpu, emu:N, cuda:N, comma-separated, each "
     "with an optional share (cpu=0.3,emu:0=0.7); without shares they are automatic. A layer's own partition "
     "entries win. Default: the CPU."},
    {F_QUIET, 0, NULL, "print only the results, no per-batch lines or progress."},
    {F_ALLOW_NONFINITE, 0, NULL, "score weights holding NaN or Inf values (with a warning) instead of refusing them."},
    {F_LOG_FORMAT, 0, "text|json", "json: one JSON object per line on stdout instead of log lines."},
    {F_GPU, 0, "N[,N...]|all",
     "Caffe's GPU selection: --gpu=0 is --device=cuda:0; several (or all) split every batch between them, "
     "which gives the one-device result (Caffe instead trains one batch per GPU). Refused, before anything "
     "loads, where no GPU is usable."},
};

static const cmd_flag TIME_FLAGS[] = {
    {F_MODEL, 1, "FILE", "(required) the NetParameter prototxt to time."},
    {F_ITERATIONS, 0, "N",
     "number of timed forward+backward passes, after one untimed warm-up. Default: 50."},
    {F_PHASE, 0, "TRAIN|TEST", "which phase's layers to build. Default: TRAIN."},
    {F_LEVEL, 0, "N", "the NetState level for include/exclude rules. Default: 0."},
    {F_STAGE, 0, "S[,S...]", "NetState stages for include/exclude rules, comma-separated."},
    {F_PARTITIONS, 0, "N", "split each layer's batch into N partitions run in parallel (CcT). Default: one per core."},
    {F_DEVICE, 0, "LIST",
     "the devices every layer's batch is split over (CcT's hybrid): cpu, emu:N, cuda:N, comma-separated, each "
     "with an optional share (cpu=0.3,emu:0=0.7); without shares they are automatic. A layer's own partition "
     "entries win. Default: the CPU."},
    {F_QUIET, 0, NULL, "print only the results, no per-batch lines or progress."},
    {F_LOG_FORMAT, 0, "text|json", "json: one JSON object per line on stdout instead of log lines."},
    {F_WEIGHTS, 0, "FILE", "accepted and ignored, as Caffe does: timings do not depend on the weights."},
    {F_GPU, 0, "N[,N...]|all",
     "Caffe's GPU selection: --gpu=0 is --device=cuda:0; several (or all) split every batch between them, "
     "which gives the one-device result (Caffe instead trains one batch per GPU). Refused, before anything "
     "loads, where no GPU is usable."},
};

static const cmd_flag DEVICE_FLAGS[] = {
    {F_GPU, 0, "N", "the device to describe. Default: all of them."},
};

static const cmd_flag PLOT_FLAGS[] = {
    {F_OUTPUT, 1, "FILE.svg|FILE.png", "(required, also -o) the image to write; the extension picks the format."},
};

static const cmd_flag DRAW_FLAGS[] = {
    {F_OUTPUT, 1, "FILE.svg|.png|.pdf|.dot",
     "(required, also -o) the drawing; .dot writes Graphviz's source, the others run Graphviz's dot."},
    {F_PHASE, 0, "TRAIN|TEST", "which phase's layers to draw and build for the shapes. Default: TRAIN."},
    {F_LEVEL, 0, "N", "the NetState level for include/exclude rules. Default: 0."},
    {F_STAGE, 0, "S[,S...]", "NetState stages for include/exclude rules, comma-separated."},
    {F_LR_MULT, 0, NULL, "label each layer with its params' lr_mult and decay_mult (pycaffe's display_lrm)."},
};

static int run_plot(args *a) {
  if (!a->input) return usage_error("plot", "give the metrics file or log to plot: cortado plot FILE -o out.svg");
  return plot_command(a->input, a->value[F_OUTPUT]);
}

static int run_draw(args *a) {
  if (!a->input) return usage_error("draw", "give the net to draw: cortado draw net.prototxt -o net.svg");
  return draw_command(a->input, a->value[F_OUTPUT], a->phase, a->given[F_PHASE], a->level, a->stages,
                      a->value[F_LR_MULT] != NULL);
}

/* convert and compute-mean live in tools/cmd_data.c; these hand them the flags. */
static const cmd_flag CONVERT_FLAGS[] = {
    {F_LIST, 0, "FILE", "an image list: lines '<path> <label>' (Caffe's convert_imageset input)."},
    {F_ROOT, 0, "DIR/", "prefix for the list's paths, joined as written (end it with '/')."},
    {F_IMAGES, 0, "FILE", "instead of --list: IDX images (MNIST-style, gzipped or plain; convert_mnist_data)."},
    {F_LABELS, 0, "FILE", "the IDX labels that go with --images."},
    {F_DB, 0, "DIR", "(required, or the third positional) the database to create; it must not exist. Keys are "
                     "'%08d_<path>' for a list, '%08d' for IDX."},
    {F_BACKEND, 0, "lmdb|leveldb", "the database kind. Default: lmdb."},
    {F_RESIZE_HEIGHT, 0, "N", "resize every image to N rows (with --resize_width; bilinear)."},
    {F_RESIZE_WIDTH, 0, "N", "resize every image to N columns (with --resize_height)."},
    {F_SHUFFLE, 0, NULL, "shuffle the list's lines first (a fixed seed, so reruns agree)."},
    {F_GRAY, 0, NULL, "decode images as 1-channel gray (default: 3-channel, B G R as Caffe stores them)."},
    {F_ENCODED, 0, NULL, "store the JPEG/PNG bytes (encoded: true) instead of raw pixels; resized or recoloured "
                         "images are stored as PNG."},
};

static const cmd_flag MEAN_FLAGS[] = {
    {F_DB, 0, "DIR", "(required, or the first positional) the database of Datum records to average."},
    {F_BACKEND, 0, "lmdb|leveldb", "the database kind. Default: lmdb."},
    {F_OUTPUT, 0, "FILE", "(also -o, or the second positional) the mean image to write, a .binaryproto BlobProto; "
                          "without it only the channel means are printed, as compute_image_mean does."},
};

static const cmd_flag UPGRADE_FLAGS[] = {
    {F_OUTPUT, 1, "FILE", "(required, also -o) where the upgraded file goes (text for text, binary for binary)."},
};

static void upgrade_log(void *ctx, const char *line) {
  (void)ctx;
  logf_("%s", line);
}

static int run_upgrade(args *a) {
  if (!a->input) return usage_error("upgrade", "give the file to upgrade: cortado upgrade old.prototxt -o new.prototxt");
  return cmd_upgrade(a->input, a->value[F_OUTPUT], upgrade_log, NULL);
}

static void data_log(void *ctx, const char *line) {
  (void)ctx;
  logf_("%s", line);
}

static cmd_data_args data_args(const args *a) {
  cmd_data_args d = {0};
  d.list = a->value[F_LIST];
  d.root = a->value[F_ROOT];
  d.images = a->value[F_IMAGES];
  d.labels = a->value[F_LABELS];
  d.db = a->value[F_DB];
  d.backend = a->value[F_BACKEND];
  d.output = a->value[F_OUTPUT];
  d.resize_height = a->value[F_RESIZE_HEIGHT];
  d.resize_width = a->value[F_RESIZE_WIDTH];
  d.shuffle = a->value[F_SHUFFLE] != NULL;
  d.gray = a->value[F_GRAY] != NULL;
  d.encoded = a->value[F_ENCODED] != NULL;
  d.log = data_log;
  return d;
}

/* Caffe's convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME */
static int run_convert(args *a) {
  cmd_data_args d = data_args(a);
  if (a->npositional) {
    if (a->npositional != 3)
      return usage_error("convert", "positional arguments are ROOTFOLDER/ LISTFILE DB_NAME (convert_imageset's), "
                                    "got %d of them", a->npositional);
    if (d.list || d.root || d.db || d.images)
      return usage_error("convert", "give ROOTFOLDER/ LISTFILE DB_NAME or --root/--list/--db, not both");
    d.root = a->positional[0];
    d.list = a->positional[1];
    d.db = a->positional[2];
  }
  return cmd_convert(&d);
}

/* Caffe's compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE] */
static int run_compute_mean(args *a) {
  cmd_data_args d = data_args(a);
  if (a->npositional) {
    if (d.db || (d.output && a->npositional > 1))
      return usage_error("compute-mean", "give INPUT_DB [OUTPUT_FILE] or --db/-o, not both");
    d.db = a->positional[0];
    if (a->npositional > 1) d.output = a->positional[1];
  }
  return cmd_compute_mean(&d);
}

#define NELEMS(x) ((int)(sizeof(x) / sizeof((x)[0])))

static const command COMMANDS[] = {
    {"train", "train or fine-tune a model",
     "cortado train --solver=FILE [--weights=FILE | --snapshot=FILE] "
     "[--iterations=N] [--sigint_effect=stop|snapshot|none] [--sighup_effect=...] [--quiet]",
     "Builds the solver's train and test nets and trains them, printing Caffe's log lines\n"
     "(\"Iteration 100, loss = 0.3\", \"Test net output #0: accuracy = 0.9\", ...) to stderr.\n"
     "Snapshots go to <snapshot_prefix>_iter_N.caffemodel and .solverstate. SIGINT and SIGTERM\n"
     "snapshot and stop at the next iteration boundary (exit status 3), SIGHUP snapshots and goes on.",
     TRAIN_FLAGS, NELEMS(TRAIN_FLAGS), run_train, 0},
    {"test", "score a trained model",
     "cortado test --model=FILE --weights=FILE [--iterations=N] [--phase=TEST|TRAIN]",
     "Runs N forward passes and prints every output blob per batch (\"Batch 0, accuracy = 0.9\"),\n"
     "then the loss and each output averaged element-wise over the N batches (\"accuracy = 0.91\").",
     TEST_FLAGS, NELEMS(TEST_FLAGS), run_test, 0},
    {"time", "benchmark a model layer by layer",
     "cortado time --model=FILE [--iterations=N] [--phase=TRAIN|TEST]",
     "Runs one untimed forward+backward, then N timed ones (forward layer by layer, backward in\n"
     "reverse order) and prints each layer's average forward and backward time, then Caffe's\n"
     "summary: Average Forward pass, Average Backward pass, Average Forward-Backward, Total Time,\n"
     "and the memory: blobs planned and unplanned, shared workspaces, peak RSS (CT_MEMPLAN=0 in the\n"
     "environment times the unplanned net). A net that reaches no loss (a deploy net) runs no\n"
     "backward, as in Caffe.",
     TIME_FLAGS, NELEMS(TIME_FLAGS), run_time, 0},
    {"convert", "make an LMDB/LevelDB of Datum records from an image list or IDX files",
     "cortado convert (--list=FILE [--root=DIR/] | --images=FILE [--labels=FILE]) --db=OUT "
     "[--backend=lmdb|leveldb] [--resize_height=N --resize_width=N] [--shuffle] [--gray] [--encoded]\n"
     "       cortado convert [flags] ROOTFOLDER/ LISTFILE DB_NAME   (convert_imageset's form)",
     "What Caffe's convert_imageset and convert_mnist_data do. The database is written under a\n"
     "temporary name and renamed into place, so a failure (a missing or unreadable image is\n"
     "named in the message) leaves nothing at OUT.",
     CONVERT_FLAGS, NELEMS(CONVERT_FLAGS), run_convert, 3},
    {"compute-mean", "average a database's images into a mean .binaryproto",
     "cortado compute-mean --db=DB [--backend=lmdb|leveldb] -o mean.binaryproto\n"
     "       cortado compute-mean [flags] INPUT_DB [OUTPUT_FILE]   (compute_image_mean's form)",
     "What Caffe's compute_image_mean does: the per-pixel mean of every record (raw, float or\n"
     "encoded), for transform_param { mean_file }. Also prints the mean of each channel.",
     MEAN_FLAGS, NELEMS(MEAN_FLAGS), run_compute_mean, 2},
    {"device_query", "show the GPU devices", "cortado device_query [--gpu=N]",
     "Caffe's device_query: one line per CUDA device (name, compute capability, memory). Without a usable GPU "
     "(or in a build without the CUDA driver) it says why and exits with status 1.", DEVICE_FLAGS,
     NELEMS(DEVICE_FLAGS), run_device_query, 0},
    {"plot", "draw training curves from a metrics file or log",
     "cortado plot FILE -o OUT.svg|OUT.png",
     "Reads FILE, a <snapshot_prefix>_metrics.jsonl written by 'cortado train' or a Caffe-format log\n"
     "(cortado's or Caffe's), and draws the train loss (left axis) and the test outputs such as\n"
     "accuracy (right axis) against iteration. 'cortado train' draws <snapshot_prefix>_curves.svg\n"
     "and .png by itself at the end of each run.",
     PLOT_FLAGS, NELEMS(PLOT_FLAGS), run_plot, 1},
    {"draw", "draw a net's layer graph with Graphviz",
     "cortado draw NET.prototxt -o OUT.svg|OUT.png|OUT.pdf|OUT.dot [--phase=TRAIN|TEST]",
     "Draws every layer (name, type, main settings) and every blob with its shape, as built for the\n"
     "phase. When the net cannot be built (its data files are missing, say) the layers are drawn\n"
     "without shapes. Needs Graphviz's dot for images (apt-get install graphviz); without it the\n"
     "DOT source is written next to OUT.",
     DRAW_FLAGS, NELEMS(DRAW_FLAGS), run_draw, 1},
    {"upgrade", "rewrite an old Caffe net, solver or .caffemodel in the current format",
     "cortado upgrade IN -o OUT",
     "What Caffe's upgrade_net_proto_text, upgrade_net_proto_binary and upgrade_solver_proto_text do:\n"
     "V0 and V1 layers (`layers { type: CONVOLUTION }`), the old data-layer transform fields, net-level\n"
     "inputs and the solver_type enum become the current form. IN is recognised as a net prototxt, a\n"
     "solver prototxt or a binary .caffemodel; OUT has the same form. cortado reads old files directly\n"
     "too (upgrading them on the way in); this writes the upgrade down.",
     UPGRADE_FLAGS, NELEMS(UPGRADE_FLAGS), run_upgrade, 1},
};

static const command *find_command(const char *name) {
  for (int i = 0; i < NELEMS(COMMANDS); i++)
    if (strcmp(COMMANDS[i].name, name) == 0) return &COMMANDS[i];
  return NULL;
}

static void print_general_usage(FILE *f) {
  fprintf(f, "cortado %s — a Caffe-compatible CNN training system\n\n", CORTADO_VERSION);
  fprintf(f, "usage: cortado <command> [flags]\n\ncommands:\n");
  for (int i = 0; i < NELEMS(COMMANDS); i++) fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(f, "  %-12s %s\n", "help", "show this text, or a command's flags: cortado help <command>");
  fprintf(f,
          "\nglobal flags:\n"
          "  --help      show usage (after a command: that command's flags)\n"
          "  --version   print the version\n"
          "  --flagfile=FILE  read more flags from FILE, one --flag=value per line (gflags')\n"
          "\nFlags may be written --flag=value, --flag value, -flag=value or -flag value.\n"
          "Exit status: 0 success, 1 a run failed (bad file, prototxt, weights, ...), 2 a usage error,\n"
          "3 training stopped early by a signal (SIGINT, SIGTERM), after writing its snapshot.\n"
          "Run 'cortado <command> --help' for a command's flags.\n");
}

/* "  --flag=ARG   help text", the text wrapped to 100 columns under its own indent. */
static void print_wrapped(FILE *f, const char *left, const char *text) {
  enum { INDENT = 31, WIDTH = 100 };
  int col = fprintf(f, "  %-28s", left);
  while (*text) {
    size_t word = strcspn(text, " ");
    if (col > INDENT - 1 && col + 1 + (int)word > WIDTH) col = fprintf(f, "\n%*s", INDENT - 1, "") - 1;
    col += fprintf(f, " %.*s", (int)word, text);
    text += word;
    while (*text == ' ') text++;
  }
  fputc('\n', f);
}

static void print_command_usage(FILE *f, const command *c) {
  fprintf(f, "usage: %s\n\n%s\n\nflags:\n", c->synopsis, c->details);
  for (int i = 0; i < c->nflags; i++) {
    const cmd_flag *cf = &c->flags[i];
    char left[64];
    if (cf->arg)
      snprintf(left, sizeof left, "--%s=%s", FLAGS[cf->id].name, cf->arg);
    else
      snprintf(left, sizeof left, "--%s", FLAGS[cf->id].name);
    print_wrapped(f, left, cf->help);
  }
  print_wrapped(f, "--help", "show this text");
  fprintf(f, "\nFlags may be written --flag=value, --flag value, -flag=value or -flag value.\n");
}

/* ------------------------------------------------------------------ parsing */

static int lookup_flag(const char *name, size_t len) {
  for (int i = 0; i < F_COUNT; i++) {
    if (strlen(FLAGS[i].name) == len && strncmp(FLAGS[i].name, name, len) == 0) return i;
    if (FLAGS[i].alias && strlen(FLAGS[i].alias) == len && strncmp(FLAGS[i].alias, name, len) == 0) return i;
  }
  return -1;
}

/* Looks like a flag rather than a value: "-x..." or "--...", but not "-5" or "-". */
static int is_flag_token(const char *s) {
  return s[0] == '-' && (s[1] == '-' || (s[1] >= 'a' && s[1] <= 'z') || (s[1] >= 'A' && s[1] <= 'Z'));
}

static int parse_bool(const char *v, int *out) {
  static const char *const yes[] = {"true", "1", "yes", "y", "t"}, *const no[] = {"false", "0", "no", "n",
                                                                                  "f"};
  for (int i = 0; i < NELEMS(yes); i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = 1, 1;
    if (strcasecmp(v, no[i]) == 0) return *out = 0, 1;
  }
  return 0;
}

static int parse_int(const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end != '\0' || x < lo || x > hi) return 0;
  *out = (int)x;
  return 1;
}

/* Records the first problem found while still scanning, so the message can name the command
 * even when the command comes after the offending flag. */
typedef struct parse_state {
  char problem[512];
  const char *positional[8];
  int npositional;
  int extra_positional; /* beyond the array */
} parse_state;

static void note_problem(parse_state *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_problem(parse_state *ps, const char *fmt, ...) {
  if (ps->problem[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ps->problem, sizeof ps->problem, fmt, ap);
  va_end(ap);
}

static void parse_argv(int argc, char **argv, args *a, parse_state *ps) {
  int only_positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *tok = argv[i];
    if (only_positional || !is_flag_token(tok)) {
      if (ps->npositional < NELEMS(ps->positional))
        ps->positional[ps->npositional++] = tok;
      else
        ps->extra_positional++;
      continue;
    }
    if (strcmp(tok, "--") == 0) {
      only_positional = 1;
      continue;
    }
    const char *name = tok + (tok[1] == '-' ? 2 : 1);
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    int id = lookup_flag(name, len);
    int negated = 0;
    if (id < 0 && len > 2 && strncmp(name, "no", 2) == 0) {
      int b = lookup_flag(name + 2, len - 2);
      if (b >= 0 && !FLAGS[b].takes_value && !eq) id = b, negated = 1;
    }
    if (id < 0) {
      note_problem(ps, "unknown flag '%.*s'", (int)(name - tok + len), tok);
      continue;
    }
    if (!FLAGS[id].takes_value) {
      int on = !negated;
      if (eq && !parse_bool(eq + 1, &on)) {
        note_problem(ps, "flag '--%s' is a switch; it takes no value (got '%s')", FLAGS[id].name, eq + 1);
        continue;
      }
      a->given[id] = 1;
      a->value[id] = on ? "true" : NULL;
      continue;
    }
    const char *val = NULL;
    if (eq)
      val = eq + 1;
    else if (i + 1 < argc && !is_flag_token(argv[i + 1]))
      val = argv[++i];
    if (!val || !*val) {
      note_problem(ps, "flag '--%s' needs a value", FLAGS[id].name);
      continue;
    }
    a->given[id] = 1;
    a->value[id] = val;
  }
}

static int command_accepts(const command *c, flag_id id) {
  if (id == F_HELP || id == F_VERSION) return 1;
  for (int i = 0; i < c->nflags; i++)
    if (c->flags[i].id == id) return 1;
  return 0;
}

/* Validates the flags for command c and fills the derived fields of a. */
static int check_args(const command *c, args *a) {
  const char *cn = c->name;
  for (int id = 0; id < F_COUNT; id++)
    if (a->given[id] && !command_accepts(c, (flag_id)id))
      return usage_error(cn, "flag '--%s' does not apply to '%s'", FLAGS[id].name, cn);
  if (a->given[F_GPU] && strcmp(cn, "device_query") != 0) {
    int rc = cli_gpu_devices(cn, a);
    if (rc) return rc;
  }
  for (int i = 0; i < c->nflags; i++) {
    const cmd_flag *cf = &c->flags[i];
    if (cf->required && !a->given[cf->id]) return usage_error(cn, "'%s' needs --%s", cn, FLAGS[cf->id].name);
  }
  if (a->given[F_WEIGHTS] && a->given[F_SNAPSHOT])
    return usage_error(cn, "give --snapshot to resume training or --weights to fine-tune, not both");
  a->iterations = 50;
  if (a->given[F_ITERATIONS] && !parse_int(a->value[F_ITERATIONS], 1, INT_MAX, &a->iterations)) {
    int digits = a->value[F_ITERATIONS][strspn(a->value[F_ITERATIONS], "0123456789")] == 0;
    if (digits && parse_int(a->value[F_ITERATIONS], 0, INT_MAX, &a->iterations) == 0 && a->value[F_ITERATIONS][0] != '0')
      return usage_error(cn, "--iterations=%s is too large: iteration numbers are ints, at most %d",
                         a->value[F_ITERATIONS], INT_MAX);
    return usage_error(cn, "--iterations must be a positive integer, got '%s'", a->value[F_ITERATIONS]);
  }
  a->level = 0;
  if (a->given[F_PARTITIONS] && !parse_int(a->value[F_PARTITIONS], 1, 64, &a->partitions))
    return usage_error(cn, "--partitions must be an integer from 1 to 64, got '%s'", a->value[F_PARTITIONS]);
  if (a->given[F_LEVEL] && !parse_int(a->value[F_LEVEL], INT_MIN, INT_MAX, &a->level))
    return usage_error(cn, "--level must be an integer, got '%s'", a->value[F_LEVEL]);
  a->phase = strcmp(cn, "time") == 0 ? CT_TRAIN : CT_TEST;
  if (a->given[F_PHASE]) {
    if (strcasecmp(a->value[F_PHASE], "TRAIN") == 0)
      a->phase = CT_TRAIN;
    else if (strcasecmp(a->value[F_PHASE], "TEST") == 0)
      a->phase = CT_TEST;
    else
      return usage_error(cn, "--phase must be TRAIN or TEST, got '%s'", a->value[F_PHASE]);
  }
  if (a->given[F_STAGE]) {
    size_t n = 2;
    for (const char *p = a->value[F_STAGE]; *p; p++) n += *p == ',';
    a->stage_buf = strdup(a->value[F_STAGE]);
    a->stages = calloc(n, sizeof *a->stages);
    if (!a->stage_buf || !a->stages) {
      fprintf(stderr, "cortado: out of memory\n");
      return EXIT_LIB;
    }
    split_commas(a->stage_buf, a->stages, (int)n - 1);
  }
  return EXIT_OK;
}

/* OpenBLAS picks its kernels when it loads, from OPENBLAS_CORETYPE or by detecting the CPU; on
 * CPUs newer than it knows, detection falls back to the generic Prescott kernels (13.7 instead
 * of ~140 GFLOP/s per core on this project's Sapphire Rapids machines). When the environment
 * leaves OPENBLAS_CORETYPE unset and OpenBLAS fell back although the CPU has AVX2 or AVX-512,
 * cortado runs itself again, same pid and arguments, with the core that serves those units.
 * A core set in the environment always wins; CT_BLAS_CORE=keep keeps OpenBLAS's own pick.
 * Under valgrind (which does not emulate AVX-512) nothing is changed. */
static void choose_blas_core(char **argv) {
  const char *keep = getenv("CT_BLAS_CORE");
  if (getenv("OPENBLAS_CORETYPE") || (keep && strcmp(keep, "keep") == 0)) return;
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload")) return;
  const char *core = ct_blas_core_advice();
  if (!core) return;
  char detected[64];
  snprintf(detected, sizeof detected, "%s", ct_blas_core_name());
  if (setenv("OPENBLAS_CORETYPE", core, 1) != 0 || setenv("CT_BLAS_CORE_DETECTED", detected, 1) != 0) return;
  execv("/proc/self/exe", argv);
  /* exec failed (no /proc?): go on with the slow kernels, saying so once */
  fprintf(stderr, "cortado: note: OpenBLAS runs its generic %s kernels on this CPU; start cortado with "
          "OPENBLAS_CORETYPE=%s for about 10x faster GEMM\n", detected, core);
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("CT_BLAS_CORE_DETECTED");
}

static int run_main(int argc, char **argv) {
  args a;
  parse_state ps;
  memset(&a, 0, sizeof a);
  memset(&ps, 0, sizeof ps);
  parse_argv(argc, argv, &a, &ps);

  if (a.given[F_VERSION] && a.value[F_VERSION]) {
    printf("cortado version %s (CPU build)\n", CORTADO_VERSION);
    return EXIT_OK;
  }

  /* "help [command]" is a command of its own; otherwise the first positional is the command. */
  const char *cmd_name = ps.npositional > 0 ? ps.positional[0] : NULL;
  int help_cmd = cmd_name && strcmp(cmd_name, "help") == 0;
  int first_arg = 1;
  if (help_cmd) {
    cmd_name = ps.npositional > 1 ? ps.positional[1] : NULL;
    first_arg = 2;
  }
  const command *c = cmd_name ? find_command(cmd_name) : NULL;
  if (cmd_name && !c) return usage_error(NULL, "unknown command '%s'", cmd_name);

  if (help_cmd || (a.given[F_HELP] && a.value[F_HELP])) {
    if (ps.npositional > first_arg || ps.extra_positional)
      return usage_error(c ? c->name : NULL, "unexpected argument '%s'", ps.positional[first_arg]);
    if (c)
      print_command_usage(stdout, c);
    else
      print_general_usage(stdout);
    return EXIT_OK;
  }
  if (ps.problem[0]) return usage_error(c ? c->name : NULL, "%s", ps.problem);
  if (!c) return usage_error(NULL, "no command given");
  if (ps.npositional > 1 + c->npositional || ps.extra_positional)
    return usage_error(c->name, "unexpected argument '%s'", ps.positional[1 + c->npositional]);
  if (c->npositional > 0 && ps.npositional > 1) a.input = ps.positional[1];
  for (int i = 1; i < ps.npositional && a.npositional < NELEMS(a.positional); i++)
    a.positional[a.npositional++] = ps.positional[i];

  int rc = check_args(c, &a);
  if (rc == EXIT_OK && a.given[F_LOG_FORMAT] && strcmp(a.value[F_LOG_FORMAT], "json") != 0 &&
      strcmp(a.value[F_LOG_FORMAT], "text") != 0)
    rc = usage_error(c->name, "--log-format must be text or json, got '%s'", a.value[F_LOG_FORMAT]);
  ui_init(&a.ui, ui_pick_mode(a.given[F_QUIET] && a.value[F_QUIET], a.given[F_LOG_FORMAT] &&
                                                                          strcmp(a.value[F_LOG_FORMAT], "json") == 0));
  cli_ui = &a.ui;
  if (rc == EXIT_OK) rc = c->run(&a);
  free(a.stages);
  free(a.stage_buf);
  return rc;
}

#ifdef CT_HAVE_PYTHON
void ctpy_install(int embedded); /* python/pylayer.c: Python layers, in an interpreter of our own */
#endif

int main(int argc, char **argv) {
  choose_blas_core(argv);
#ifdef CT_HAVE_PYTHON
  ctpy_install(1);
#endif
  /* A file that reaches the size limit (ulimit -f) is then a write error (EFBIG) that names the
   * file, like a full disk, instead of SIGXFSZ killing the process mid-write. */
  signal(SIGXFSZ, SIG_IGN);
  argv_list ex;
  char problem[512];
  if (expand_flagfiles(argc, argv, &ex, problem, sizeof problem) != 0) {
    argv_list_free(&ex);
    return usage_error(NULL, "%s", problem);
  }
  int rc = run_main(ex.n, ex.v);
  argv_list_free(&ex);
  return rc;
}
