/* `cortado plot` and `cortado draw`: training curves and net drawings. */
#ifndef CT_TOOLS_PLOT_H
#define CT_TOOLS_PLOT_H

#include <stddef.h>

#include "cortado.h"

/* Draws the training curves of `input` (a <prefix>_metrics.jsonl written by `cortado train`, or a
 * Caffe-format log, cortado's or Caffe's own) into `output` (.svg written as text, .png through
 * cairo): train loss (and test losses) on the left axis, the other test outputs (accuracy) on the
 * right axis, against iteration. Returns 0, or -1 with a message naming the file in msg. */
int plot_metrics_file(const char *input, const char *output, char *msg, size_t msglen);

/* The commands, as the CLI dispatches them; they return the CLI's exit status (0, 1, 2). */
int plot_command(const char *input, const char *output);
/* multipliers: label each layer with its params' lr_mult and decay_mult (pycaffe's display_lrm). */
int draw_command(const char *prototxt, const char *output, ct_phase phase, int phase_given, int level,
                 const char *const *stages, int multipliers);

#endif
