/* No field silently ignored: what cortado does with every field of its schema, and the check
 * that holds a parsed file to it.
 *
 * fields.c classifies every field of every message (test_audit walks the schema's descriptors
 * and fails on a field without a class, so a field added to cortado.proto must be classified
 * before the suite passes):
 *   USED       read and acted on (possibly refused for some values, by the code that reads it:
 *              solver_mode: GPU, lowering: WINOGRAD on a 5x5 kernel, ...);
 *   INERT      accepted and without effect on any result, for the reason given (Caffe's engine
 *              choice between its own kernels, the gradients stored beside weights);
 *   REFUSED    not implemented: a file setting it to anything but its default is refused with a
 *              message naming the field and the reason;
 *   UPGRADED   an old spelling that upgrade.c rewrites before anything else reads the message
 *              (V0 / V1 layers, solver_type, ceil_mode, net-level inputs): still set afterwards
 *              is a bug;
 *   UNREACHED  in a message only layer types this build does not have read (the layer's type is
 *              refused first, as unknown). test_audit fails when a layer type of the registry
 *              reads a message with UNREACHED fields, so adding a layer means classifying its
 *              parameters.
 * Which of LayerParameter's per-type fields (the *_param messages, lowering) each layer type
 * reads is layers/params.c's table. */
#ifndef CT_PROTO_AUDIT_H
#define CT_PROTO_AUDIT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "cortado.h"
#include "proto/prototxt.h"

typedef enum ct_field_use {
  CT_FIELD_USED,
  CT_FIELD_INERT,
  CT_FIELD_REFUSED,
  CT_FIELD_UPGRADED,
  CT_FIELD_UNREACHED,
} ct_field_use;

/* The class of field `field` of message `msg` (the schema's names, without the package), and
 * the reason given for it (NULL for USED). False when the table does not know the field. */
bool ct_field_class(const char *msg, const char *field, ct_field_use *use, const char **why);
/* The table's entries one by one, for the test: i from 0 while it returns true. `fields` is a
 * space-separated list of the message's field names. */
bool ct_field_rule_at(int i, const char **msg, const char **fields, ct_field_use *use, const char **why);
const char *ct_field_use_name(ct_field_use u);

/* Whether field f of m holds a value (a non-default scalar, a string or message that is there,
 * a non-empty repeated field). */
bool ct_field_is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);

/* Checks every set field of m (but m's fields named in `skip`, a space-separated list or NULL)
 * and of the messages under it against the table. A REFUSED
 * field, or an UPGRADED or UNREACHED one that is still there, fails with
 * "<file:line:col>: <context>: <message>.<field> ...: <reason>". `context` (may be NULL) names
 * the owner ("layer \"conv1\" (Convolution)"); map (may be NULL) gives positions. */
ct_status ct_audit_message(const ProtobufCMessage *m, const ct_srcmap *map, const char *source, const char *context,
                           const char *skip, ct_error *err);

/* "file:line:col" of field `field` of m (or of m itself, or `source`), for messages. */
void ct_audit_where(const ct_srcmap *map, const ProtobufCMessage *m, const char *field, const char *source,
                    char *buf, size_t n);

#endif
