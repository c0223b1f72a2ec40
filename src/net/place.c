/* Where a net computes: its placement (drivers, pool, copy counters: sched/plan.h), the
 * net-level default plan (the NetParameter's `partition` entries, or ct_net_set_devices: the
 * CLI's --device), and each layer's own `partition { device share }` entries, checked before
 * anything runs: an unknown device, a device this build or machine does not have, a share that
 * is not a positive number, or shares given for some entries and not others are errors naming
 * the layer and, when the net came from a file, its file:line:col. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "net/net_impl.h"
#include "proto/prototxt.h"

/* "file:line:col: " for a submessage of the parsed file, "source: " when unknown. */
static void where(const ct_srcmap *map, const void *msg, const char *source, char *buf, size_t n) {
  int line, col;
  if (ct_srcmap_find(map, msg, &line, &col))
    snprintf(buf, n, "%s:%d:%d: ", ct_srcmap_file(map), line, col);
  else
    snprintf(buf, n, "%s: ", source);
}

/* Turns partition entries into a spec over the placement's drivers. `whose` names the owner in
 * messages ("layer \"conv1\"", "the net"). */
static ct_status spec_from(ct_placement *pl, Caffe__PartitionSpec *const *parts, size_t n, const void *owner,
                           const ct_srcmap *map, const char *source, const char *whose, ct_plan_spec *out,
                           ct_error *err) {
  memset(out, 0, sizeof *out);
  char at[512];
  if (n > CT_MAX_PARTITIONS) {
    where(map, owner, source, at, sizeof at);
    return ct_fail(err, CT_EINVAL, "%s%s has %zu partitions; at most %d are supported", at, whose, n,
                   CT_MAX_PARTITIONS);
  }
  size_t with_share = 0;
  for (size_t k = 0; k < n; k++) with_share += parts[k]->has_share != 0;
  for (size_t k = 0; k < n; k++) {
    const Caffe__PartitionSpec *ps = parts[k];
    where(map, ps, source, at, sizeof at);
    const char *dev = ps->device ? ps->device : "cpu";
    ct_error e = {0};
    int idx;
    if (ct_placement_driver(pl, dev, &idx, &e))
      return ct_fail(err, e.status, "%s%s, partition %zu: %s", at, whose, k, e.msg);
    if (with_share && !ps->has_share)
      return ct_fail(err, CT_EINVAL,
                     "%s%s, partition %zu (%s) has no share while others have one; give every partition a share, "
                     "or none for automatic shares",
                     at, whose, k, dev);
    if (ps->has_share && !(isfinite(ps->share) && ps->share > 0))
      return ct_fail(err, CT_EINVAL, "%s%s, partition %zu (%s) has share %g; expected a positive number", at, whose,
                     k, dev, (double)ps->share);
    out->driver[k] = idx;
    out->share[k] = ps->has_share ? ps->share : 0;
  }
  out->n = (int)n;
  out->has_share = with_share > 0;
  return CT_OK;
}

ct_status ct_net_place_layer(ct_net *net, int i, const Caffe__LayerParameter *src, const ct_srcmap *map,
                             ct_error *err) {
  net_layer *nl = &net->layers[i];
  char whose[300];
  snprintf(whose, sizeof whose, "layer \"%s\" (%s)", nl->l.name, nl->lp->type ? nl->lp->type : "?");
  const Caffe__LayerParameter *lp = src ? src : nl->lp;
  return spec_from(net->place, lp->partition, lp->n_partition, lp, map, net->source, whose, &nl->l.spec, err);
}

ct_status ct_net_place_default(ct_net *net, const Caffe__NetParameter *param, const ct_srcmap *map,
                               ct_error *err) {
  ct_plan_spec spec;
  CT_TRY(spec_from(net->place, param->partition, param->n_partition, param, map, net->source, "the net", &spec,
                   err));
  net->place->dflt = spec;
  net->place->master = spec.n ? spec.driver[0] : 0;
  return CT_OK;
}

ct_status ct_net_set_devices(ct_net *net, const char *list, ct_error *err) {
  CT_TRY(ct_placement_set_devices(net->place, list, err));
  /* issue 19: a partitioned net's shards leave their workers' CPU placements for the devices */
  CT_TRY(ct_part_exec_devices(net->exec, err));
  for (int i = 0; i < net->nlayers; i++) net->layers[i].l.plan.n = 0; /* planned again at the next reshape */
  return ct_net_reshape(net, err);
}
