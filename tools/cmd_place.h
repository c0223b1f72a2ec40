/* The placement report of `cortado time`: per layer its plan (devices and shares of the batch),
 * how it runs (the lowering), and the bytes copied between devices per iteration. */
#ifndef CT_CMD_PLACE_H
#define CT_CMD_PLACE_H

#include "cortado.h"
#include "progress.h"

/* Zeroes the net's copy counters (before the timed passes). */
void cmd_placement_reset(ct_net *net);
/* Prints the report for `iterations` timed passes; wname/wtype: column widths. */
void cmd_placement_report(ui *u, ct_net *net, int iterations, int wname, int wtype);

#endif
