/* The .caffemodel loader through ct_net_load_weights: ct_proto_read_binary (size checks, wire
 * walk, protobuf-c unpack) and ct_net_copy_from_proto into a small net built once, whose layers
 * have 1, 2 and 3 blobs of several ranks. The net's shapes never change, whatever the file says. */
#include <stdint.h>
#include <stdlib.h>

#include "cortado.h"
#include "fuzz_nets.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ct_net *net;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_error err;
  if (!net && ct_net_create_from_text(FUZZ_NET, "fuzz_net", NULL, CT_TEST, &net, &err) != CT_OK) {
    fprintf(stderr, "fuzz_caffemodel: cannot build the net: %s\n", err.msg);
    abort();
  }
  const char *path = fuzz_write("input.caffemodel", data, size);
  if (ct_net_load_weights(net, path, &err) != CT_OK && !err.msg[0]) abort();
  return 0;
}
