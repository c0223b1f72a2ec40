/* Which of LayerParameter's per-type fields (the *_param messages and `lowering`) each layer
 * type reads. A per-type field given to a layer that does not read it is refused, naming both:
 * Caffe ignores it silently, which hides mistakes such as loss_param { ignore_label } on an
 * Accuracy layer (Accuracy reads accuracy_param's). test_audit holds every type of the registry
 * to having an entry. */
#ifndef CT_LAYERS_PARAMS_H
#define CT_LAYERS_PARAMS_H

#include <stdbool.h>

#include "cortado.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"

/* The entry for `type`: space-separated field names, where "field(a b)" allows only subfields
 * a and b of that message; NULL when the table has no entry. */
const char *ct_layer_param_fields(const char *type);
/* Whether `field` is one of LayerParameter's per-type fields. */
bool ct_layer_param_is_per_type(const char *field);
/* The table's types, for the test: NULL past the end. */
const char *ct_layer_param_type_at(int i);
/* Refuses a per-type field that lp's type does not read (nothing to check for a type without
 * an entry: the net refuses the type itself). */
ct_status ct_layer_check_params(const Caffe__LayerParameter *lp, const ct_srcmap *map, const char *source,
                                ct_error *err);

#endif
