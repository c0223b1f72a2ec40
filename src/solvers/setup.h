/* Reading a SolverParameter as Caffe's solver would, before any net is built: parse with
 * positions, upgrade (proto/upgrade.h), refuse what cortado would otherwise ignore
 * (proto/audit.h) and the settings this build cannot honour (solver_mode: GPU). */
#ifndef CT_SOLVERS_SETUP_H
#define CT_SOLVERS_SETUP_H

#include "cortado.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"

/* On success *out and *map are the caller's (protobuf_c_message_free_unpacked, ct_srcmap_free);
 * on failure both are NULL. */
ct_status ct_solver_param_read(const char *path, Caffe__SolverParameter **out, ct_srcmap **map, ct_error *err);

/* The phase and level a solver builds a net with, merged as Caffe's solver merges NetStates: the
 * default phase (TRAIN for the train net, TEST for test nets), then the net's own `state`, then
 * the solver's train_state / test_state (may be NULL), each field where it is given. */
void ct_solver_net_state(const Caffe__NetParameter *net, const Caffe__NetState *state, ct_phase dflt, ct_phase *phase,
                         int *level);

#endif
