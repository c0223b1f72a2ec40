/* What the memory planner (net/memplan.c) needs to know of a Concat layer. */
#ifndef CT_CONCAT_H
#define CT_CONCAT_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layer.h"

/* Whether bottom k of Concat layer l fills one contiguous run of the top (joined along the
 * first axis, or every axis before the joined one has size 1), and where that run starts, in
 * elements. A bottom that views its run of the top (on one side) is neither copied in forward
 * nor in backward. False for a layer of another type. */
bool ct_concat_region(const ct_layer *l, int k, size_t *offset);

#endif
