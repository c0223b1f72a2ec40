/* Old Caffe formats read as Caffe reads them: the one place where a NetParameter or a
 * SolverParameter from any Caffe era becomes the current form, before anything else looks at it
 * (Caffe's UpgradeNetAsNeeded and UpgradeSolverAsNeeded, the code behind its
 * upgrade_net_proto_text, upgrade_net_proto_binary and upgrade_solver_proto_text tools).
 *
 * A net is upgraded in Caffe's order:
 *   V0 (`layers { layer { type: "conv" ... } }`, with "padding" layers folded into the
 *      convolution or pooling that reads them) -> V1,
 *   V1's data layers' transform fields (data_param { scale mean_file crop_size mirror }, the same
 *      in image_data_param and window_data_param) -> transform_param,
 *   V1 (`layers { type: CONVOLUTION blobs_lr: 1 }`) -> `layer { type: "Convolution" param {
 *      lr_mult: 1 } }`,
 *   the net-level input / input_shape / input_dim -> an Input layer named "input" in front,
 *   BatchNorm layers declaring three `param`s -> their lr_mult and decay_mult set to 0,
 * and, cortado's addition, the forks' pooling_param { ceil_mode } -> round_mode.
 * Where Caffe logs "had one or more problems upgrading" and goes on without the field, cortado
 * stops with an error naming the layer and the field: nothing is dropped silently.
 *
 * Submessages move from the old layer into the new one (they are not copied), so a source map
 * of the parse (prototxt.h) still places them; the new layers are given their old layers'
 * positions (ct_srcmap_alias). */
#ifndef CT_PROTO_UPGRADE_H
#define CT_PROTO_UPGRADE_H

#include <stdbool.h>

#include "cortado.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"

/* Whether p holds anything ct_upgrade_net would change. */
bool ct_net_needs_upgrade(const Caffe__NetParameter *p);
/* Upgrades p in place. `source` names the file in messages; map (may be NULL) is the parse's
 * source map, kept valid for the upgraded layers. On failure p may be half-upgraded: the
 * caller frees it. */
ct_status ct_upgrade_net(Caffe__NetParameter *p, const char *source, ct_srcmap *map, ct_error *err);

/* Whether sp uses the deprecated solver_type enum (or holds inline nets that need upgrading). */
bool ct_solver_needs_upgrade(const Caffe__SolverParameter *sp);
/* solver_type (the enum) -> type (the string), as upgrade_solver_proto_text does; a file giving
 * both is refused unless they name the same rule. The inline nets (net_param, train_net_param,
 * test_net_param) are upgraded too. */
ct_status ct_upgrade_solver(Caffe__SolverParameter *sp, const char *source, ct_srcmap *map, ct_error *err);

/* V1's type enum as the type string that replaced it ("" for NONE), or NULL when unknown. */
const char *ct_v1_type_name(int v1_type);

#endif
