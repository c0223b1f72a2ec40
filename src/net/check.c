/* What is checked before any layer is built, so that a mistake anywhere in a large net is
 * reported at once with its file:line:col instead of after minutes of building the layers before
 * it: every layer's type is one cortado has, every per-type parameter is one its type reads
 * (layers/params.c), and no field is set that cortado would ignore (proto/audit.c). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "layers/params.h"
#include "net/net_impl.h"
#include "proto/audit.h"

/* Edit distance, case-insensitive, between short names. */
static size_t distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b), row[65];
  if (na > 64 || nb > 64) return (size_t)-1;
  for (size_t j = 0; j <= nb; j++) row[j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t up = row[j];
      size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[nb];
}

static ct_status unknown_type(const Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, const ct_srcmap *map,
                              const char *source, ct_error *err) {
  char at[512];
  ct_audit_where(map, src ? &src->base : NULL, "type", source, at, sizeof at);
  const char *name = lp->name ? lp->name : "";
  if (!lp->type || !lp->type[0]) return ct_fail(err, CT_EINVAL, "%s: layer \"%s\" has no type", at, name);
  const char *best = NULL;
  size_t best_d = 4;
  for (int i = 0; i < ct_layer_registry_size(); i++) {
    const char *t = ct_layer_registry_at(i)->type;
    size_t d = distance(lp->type, t);
    if (d < best_d && d < strlen(lp->type)) best_d = d, best = t;
  }
  if (best)
    return ct_fail(err, CT_EUNSUPPORTED, "%s: layer \"%s\" has unknown type \"%s\" (did you mean \"%s\"?)", at, name,
                   lp->type, best);
  return ct_fail(err, CT_EUNSUPPORTED,
                 "%s: layer \"%s\" has type \"%s\", which cortado does not have (its layer types are listed in the "
                 "README)",
                 at, name, lp->type);
}

ct_status ct_net_check(const Caffe__NetParameter *param, const ct_spec_list *filtered, const struct ct_srcmap *map,
                       const char *source, ct_error *err) {
  for (int i = 0; i < filtered->n; i++)
    if (!filtered->v[i]->type || !ct_layer_find(filtered->v[i]->type))
      return unknown_type(filtered->v[i], filtered->src[i], map, source, err);
  for (size_t i = 0; i < param->n_layer; i++) {
    const Caffe__LayerParameter *lp = param->layer[i];
    char who[300];
    snprintf(who, sizeof who, "layer \"%s\" (%s)", lp->name ? lp->name : "", lp->type ? lp->type : "no type");
    CT_TRY(ct_layer_check_params(lp, map, source, err));
    CT_TRY(ct_audit_message(&lp->base, map, source, who, NULL, err));
  }
  return ct_audit_message(&param->base, map, source, NULL, "layer", err);
}
