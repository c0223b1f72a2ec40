/* The prototxt parser on NetParameter text: parse; on success print the message and parse the
 * printed text again, which must succeed (the printer's output is always valid input); then
 * upgrade the old formats in it (proto/upgrade.c), which must fail cleanly or leave nothing to
 * upgrade. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cortado.pb-c.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const ProtobufCMessageDescriptor *desc = &caffe__net_parameter__descriptor;
  ProtobufCMessage *m = NULL;
  ct_error err;
  if (ct_prototxt_parse((const char *)data, size, "fuzz.prototxt", desc, &m, &err) != CT_OK) {
    if (m || !err.msg[0]) abort(); /* a failure returns no message and says why */
    return 0;
  }
  char *text = ct_prototxt_print(m);
  if (text) {
    ProtobufCMessage *again = NULL;
    if (ct_prototxt_parse(text, strlen(text), "printed.prototxt", desc, &again, &err) != CT_OK) abort();
    protobuf_c_message_free_unpacked(again, NULL);
    free(text);
  }
  if (ct_net_needs_upgrade((Caffe__NetParameter *)m)) {
    ct_status st = ct_upgrade_net((Caffe__NetParameter *)m, "fuzz.prototxt", NULL, &err);
    if (st == CT_OK && ct_net_needs_upgrade((Caffe__NetParameter *)m)) abort(); /* an upgrade is complete */
    if (st != CT_OK && !err.msg[0]) abort();
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
