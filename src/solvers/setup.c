/* Reading a SolverParameter (setup.h). */
#include "solvers/setup.h"

#include <stdio.h>

#include "core/status.h"
#include "drivers/driver.h"
#include "proto/audit.h"
#include "proto/upgrade.h"

ct_status ct_solver_param_read(const char *path, Caffe__SolverParameter **out, ct_srcmap **map, ct_error *err) {
  *out = NULL;
  ProtobufCMessage *m = NULL;
  CT_TRY(ct_prototxt_read_file_mapped(path, &caffe__solver_parameter__descriptor, &m, map, err));
  Caffe__SolverParameter *sp = (Caffe__SolverParameter *)m;
  ct_status st = ct_solver_needs_upgrade(sp) ? ct_upgrade_solver(sp, path, *map, err) : CT_OK;
  /* inline nets are checked when they are built, layer by layer */
  if (st == CT_OK) st = ct_audit_message(m, *map, path, NULL, "net_param train_net_param test_net_param", err);
  /* solver_mode: GPU trains on cuda:device_id (solvers/create.c), as Caffe's tool does; a
   * machine that cannot is told so here, before anything is built */
  if (st == CT_OK && sp->has_solver_mode && sp->solver_mode == CAFFE__SOLVER_PARAMETER__SOLVER_MODE__GPU) {
    char at[512], why[300] = "";
    const int count = ct_driver_cuda_devices(why, sizeof why);
    const int id = sp->has_device_id ? sp->device_id : 0;
    ct_audit_where(*map, m, "solver_mode", path, at, sizeof at);
    if (count == 0)
      st = ct_fail(err, CT_EUNSUPPORTED,
                   "%s: solver_mode: GPU, but there is no GPU to run on: %s; write solver_mode: CPU (or leave it "
                   "out: without it Caffe's tool trains on the CPU too)",
                   at, why);
    else if (id < 0 || id >= count) {
      ct_audit_where(*map, m, "device_id", path, at, sizeof at);
      st = ct_fail(err, CT_EINVAL, "%s: device_id: %d, but this machine has %d GPU%s (0 to %d)", at, id, count,
                   count == 1 ? "" : "s", count - 1);
    }
  }
  if (st) {
    protobuf_c_message_free_unpacked(m, NULL);
    ct_srcmap_free(*map);
    *map = NULL;
    return st;
  }
  *out = sp;
  return CT_OK;
}

void ct_solver_net_state(const Caffe__NetParameter *net, const Caffe__NetState *state, ct_phase dflt, ct_phase *phase,
                         int *level) {
  *phase = dflt;
  *level = 0;
  const Caffe__NetState *v[2] = {net ? net->state : NULL, state};
  for (int i = 0; i < 2; i++) {
    if (!v[i]) continue;
    if (v[i]->has_phase) *phase = v[i]->phase == CAFFE__PHASE__TRAIN ? CT_TRAIN : CT_TEST;
    if (v[i]->has_level) *level = v[i]->level;
  }
}
