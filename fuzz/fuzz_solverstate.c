/* The .solverstate loader through ct_solver_restore on a small Adam solver (two history sets):
 * ct_proto_read_binary, the history count and size checks, the learned_net weights (a valid
 * w.caffemodel sits beside the input, so seeds that name it reach ct_net_copy_from_proto), the
 * loss window and each layer's rng and data cursor. */
#include <stdint.h>
#include <stdlib.h>

#include "cortado.h"
#include "fuzz_nets.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ct_solver *solver;

static void setup(void) {
  const char *sp = fuzz_write("solver.prototxt", (const uint8_t *)FUZZ_SOLVER, sizeof FUZZ_SOLVER - 1);
  ct_solver_options opt = {.quiet = 1};
  ct_error err;
  if (ct_solver_create(sp, &opt, &solver, &err) != CT_OK) {
    fprintf(stderr, "fuzz_solverstate: cannot build the solver: %s\n", err.msg);
    abort();
  }
  if (ct_net_save_weights(ct_solver_net(solver), fuzz_path("w.caffemodel"), &err) != CT_OK) {
    fprintf(stderr, "fuzz_solverstate: cannot write w.caffemodel: %s\n", err.msg);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!solver) setup();
  const char *path = fuzz_write("input.solverstate", data, size);
  ct_error err;
  if (ct_solver_restore(solver, path, &err) != CT_OK) {
    if (!err.msg[0]) abort();
    return 0;
  }
  /* the restored state must be usable: one more iteration (it may fail on non-finite weights
   * from the file, with a message, but must not crash) */
  if (ct_solver_step(solver, 1, &err) != CT_OK && !err.msg[0]) abort();
  return 0;
}
