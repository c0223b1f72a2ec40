/* The data commands of the CLI (convert, compute-mean) and the data-wait report of `time`.
 * tools/cortado.c parses the flags and hands their values over as strings. */
#ifndef CT_CMD_DATA_H
#define CT_CMD_DATA_H

#include "cortado.h"

typedef struct cmd_data_args {
  const char *list, *root, *images, *labels, *db, *backend, *output; /* NULL when not given */
  const char *resize_height, *resize_width;
  int shuffle, gray, encoded;
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
} cmd_data_args;

/* Each returns the process exit status: 0, 1 (the work failed), 2 (a bad flag value). */
int cmd_convert(const cmd_data_args *a);
int cmd_compute_mean(const cmd_data_args *a);

/* Milliseconds data layer `layer` of net has waited for data (see `cortado time`); returns 0
 * when the layer is not a data layer. */
int cmd_data_wait_ms(ct_net *net, int layer, double *ms);
/* Zeroes every data layer's wait time (before the timed passes). */
void cmd_data_wait_reset(ct_net *net);

#endif
