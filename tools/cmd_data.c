/* cortado convert / compute-mean: Caffe's convert_imageset, convert_mnist_data and
 * compute_image_mean as two commands over src/data/convert.c. */
#include "cmd_data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "data/convert.h"
#include "layers/data_layer.h"
#include "net/net.h"

static int usage(const char *cmd, const char *what, const char *value) {
  fprintf(stderr, "cortado: %s '%s'; see 'cortado %s --help'\n", what, value, cmd);
  return 2;
}

static int fail(const ct_error *err) {
  fprintf(stderr, "cortado: %s\n", err->msg[0] ? err->msg : "failed");
  return 1;
}

static int backend_of(const char *cmd, const char *s, ct_db_backend *b) {
  *b = CT_DB_LMDB;
  if (s && !ct_db_backend_parse(s, b)) return usage(cmd, "--backend must be lmdb or leveldb, got", s);
  return 0;
}

static int size_of(const char *s, int *out) {
  if (!s) return *out = 0, 1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > 65536) return 0;
  *out = (int)v;
  return 1;
}

int cmd_convert(const cmd_data_args *a) {
  ct_convert_opts o = {0};
  int rc;
  if ((rc = backend_of("convert", a->backend, &o.backend))) return rc;
  if (!a->db) {
    fprintf(stderr, "cortado: 'convert' needs --db=OUT (the database to create); see 'cortado convert --help'\n");
    return 2;
  }
  if (!!a->list == !!a->images) {
    fprintf(stderr, "cortado: 'convert' needs --list=FILE (an image list) or --images=FILE (IDX), not both; "
                    "see 'cortado convert --help'\n");
    return 2;
  }
  if (a->labels && !a->images) return usage("convert", "--labels goes with --images, got", a->labels);
  if (!size_of(a->resize_height, &o.resize_h))
    return usage("convert", "--resize_height must be an integer in 0..65536, got", a->resize_height);
  if (!size_of(a->resize_width, &o.resize_w))
    return usage("convert", "--resize_width must be an integer in 0..65536, got", a->resize_width);
  if (a->images && (a->root || a->resize_height || a->resize_width || a->shuffle || a->gray || a->encoded)) {
    fprintf(stderr, "cortado: --root, --resize_*, --shuffle, --gray and --encoded apply to --list, not --images; "
                    "see 'cortado convert --help'\n");
    return 2;
  }
  o.list = a->list;
  o.root = a->root;
  o.images = a->images;
  o.labels = a->labels;
  o.db = a->db;
  o.shuffle = a->shuffle;
  o.gray = a->gray;
  o.encoded = a->encoded;
  o.log = a->log;
  o.log_ctx = a->log_ctx;
  if (o.list && o.shuffle && a->log) a->log(a->log_ctx, "Shuffling data");
  ct_error err = {0};
  int64_t n = 0;
  if (ct_convert(&o, &n, &err)) return fail(&err);
  if (a->log) {
    char line[4200];
    snprintf(line, sizeof line, "Wrote %lld records to %s (%s)", (long long)n, a->db, ct_db_backend_name(o.backend));
    a->log(a->log_ctx, line);
  }
  return 0;
}

int cmd_compute_mean(const cmd_data_args *a) {
  ct_db_backend b;
  int rc;
  if ((rc = backend_of("compute-mean", a->backend, &b))) return rc;
  if (!a->db) {
    fprintf(stderr, "cortado: 'compute-mean' needs --db=DB (or INPUT_DB); see 'cortado compute-mean --help'\n");
    return 2;
  }
  ct_error err = {0};
  /* an output that cannot be written is refused before the database is read (an ImageNet
   * mean takes minutes); the write checks again */
  char *target = NULL;
  if (a->output && ct_file_output_target(a->output, &target, &err)) return fail(&err);
  free(target);
  int64_t n = 0;
  if (ct_compute_mean(a->db, b, a->output, a->log, a->log_ctx, &n, &err)) return fail(&err);
  return 0;
}

int cmd_data_wait_ms(ct_net *net, int layer, double *ms) {
  if (layer < 0 || layer >= ct_net_num_layers(net)) return 0;
  return ct_data_layer_wait_ms(ct_net_layer(net, layer), ms) ? 1 : 0;
}

void cmd_data_wait_reset(ct_net *net) {
  for (int i = 0; i < ct_net_num_layers(net); i++) ct_data_layer_reset_wait(ct_net_layer(net, i));
}
