/* `cortado upgrade` (cmd_upgrade.h). The input's kind is recognised by parsing, in this order: a
 * NetParameter prototxt, a SolverParameter prototxt, a binary NetParameter (.caffemodel). The
 * output has the input's form: text for text (fields in the schema's order, Caffe's look),
 * binary for binary, written crash-safely. */
#include "cmd_upgrade.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cortado.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"

#define MAX_UPGRADE_BYTES ((size_t)1 << 31)

static void say(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(void (*log)(void *, const char *), void *ctx, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (log)
    log(ctx, line);
  else
    fprintf(stderr, "%s\n", line);
}

int cmd_upgrade(const char *in, const char *out, void (*log)(void *ctx, const char *line), void *log_ctx) {
  char *data = NULL;
  size_t len = 0;
  ct_error err = {0}, net_err = {0}, solver_err = {0};
  ProtobufCMessage *m = NULL;
  ct_srcmap *map = NULL;
  int rc = 1;
  if (ct_read_file(in, MAX_UPGRADE_BYTES, &data, &len, &err)) {
    fprintf(stderr, "cortado: %s\n", err.msg);
    return 1;
  }
  enum { NET_TEXT, SOLVER_TEXT, NET_BINARY } kind;
  bool changed = false;
  ct_status st;
  if (ct_prototxt_parse_mapped(data, len, in, &caffe__net_parameter__descriptor, &m, &map, &net_err) == CT_OK) {
    kind = NET_TEXT;
    changed = ct_net_needs_upgrade((Caffe__NetParameter *)m);
    st = changed ? ct_upgrade_net((Caffe__NetParameter *)m, in, map, &err) : CT_OK;
  } else if (ct_prototxt_parse_mapped(data, len, in, &caffe__solver_parameter__descriptor, &m, &map, &solver_err) ==
             CT_OK) {
    kind = SOLVER_TEXT;
    changed = ct_solver_needs_upgrade((Caffe__SolverParameter *)m);
    st = changed ? ct_upgrade_solver((Caffe__SolverParameter *)m, in, map, &err) : CT_OK;
  } else if ((m = protobuf_c_message_unpack(&caffe__net_parameter__descriptor, NULL, len, (const uint8_t *)data)) &&
             (((Caffe__NetParameter *)m)->n_layer || ((Caffe__NetParameter *)m)->n_layers)) {
    kind = NET_BINARY;
    changed = ct_net_needs_upgrade((Caffe__NetParameter *)m);
    st = changed ? ct_upgrade_net((Caffe__NetParameter *)m, in, NULL, &err) : CT_OK;
  } else {
    fprintf(stderr,
            "cortado: %s is none of a net prototxt, a solver prototxt or a binary .caffemodel:\n"
            "  as a net: %s\n  as a solver: %s\n  as a .caffemodel: not a NetParameter with layers\n",
            in, net_err.msg, solver_err.msg);
    goto done;
  }
  static const char *const what[] = {"NetParameter text proto", "SolverParameter text proto",
                                      "NetParameter binary proto"};
  if (st) {
    fprintf(stderr, "cortado: %s\n", err.msg);
    goto done;
  }
  if (!changed) say(log, log_ctx, "%s is already in the latest format (%s); writing it unchanged", in, what[kind]);
  st = kind == NET_BINARY ? ct_proto_write_binary(out, m, &err) : ct_prototxt_write_file(out, m, &err);
  if (st) {
    fprintf(stderr, "cortado: %s\n", err.msg);
    goto done;
  }
  say(log, log_ctx, "Wrote upgraded %s to %s", what[kind], out);
  rc = 0;
done:
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  ct_srcmap_free(map);
  free(data);
  return rc;
}
