#include "sched/plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/status.h"
#include "drivers/cpu.h"
#include "sched/auto.h"

/* ---------------------------------------------------------------- placement */

static int pool_threads(int cpu_parts) {
  const int cores = ct_cpu_count();
  /* more partitions than cores share the cores' threads, each claiming the next partition when
   * it finishes one; a thread per partition would only make the cores take turns */
  return cpu_parts < cores ? cpu_parts : cores;
}

ct_status ct_placement_create(int cpu_parts, ct_placement **out, ct_error *err) {
  *out = NULL;
  if (cpu_parts < 1 || cpu_parts > CT_MAX_PARTITIONS)
    return ct_fail(err, CT_EINVAL, "partitions must be 1 to %d, got %d", CT_MAX_PARTITIONS, cpu_parts);
  ct_placement *pl = calloc(1, sizeof *pl);
  if (!pl) return ct_fail(err, CT_ENOMEM, "out of memory");
  pl->cpu_parts = cpu_parts;
  ct_status st = ct_pool_create(pool_threads(cpu_parts), &pl->pool, err);
  if (!st) st = ct_driver_create("cpu", pl->pool, &pl->driver[0], err);
  if (st) {
    ct_placement_free(pl);
    return st;
  }
  pl->ndrivers = 1;
  *out = pl;
  return CT_OK;
}

void ct_placement_free(ct_placement *pl) {
  if (!pl) return;
  for (int i = 0; i < pl->ndrivers; i++) ct_driver_free(pl->driver[i]);
  ct_pool_free(pl->pool);
  free(pl);
}

ct_status ct_placement_driver(ct_placement *pl, const char *device, int *index, ct_error *err) {
  char canon[24];
  if (!ct_driver_parse_name(device, canon, sizeof canon))
    return ct_fail(err, CT_EINVAL, "unknown device \"%s\"; expected \"cpu\", \"emu:N\" or \"cuda:N\"", device);
  for (int i = 0; i < pl->ndrivers; i++)
    if (!strcmp(pl->driver[i]->name, canon)) {
      *index = i;
      return CT_OK;
    }
  if (pl->ndrivers == CT_MAX_DRIVERS)
    return ct_fail(err, CT_EINVAL, "device \"%s\": a net can use at most %d devices", device, CT_MAX_DRIVERS);
  ct_driver *d;
  CT_TRY(ct_driver_create(canon, pl->pool, &d, err));
  pl->driver[pl->ndrivers] = d;
  *index = pl->ndrivers++;
  return CT_OK;
}

static ct_status replace_pool(ct_placement *pl, int threads, ct_error *err) {
  if (threads == ct_pool_size(pl->pool)) return CT_OK;
  ct_pool *pool;
  CT_TRY(ct_pool_create(threads, &pool, err));
  ct_pool_free(pl->pool);
  pl->pool = pool;
  ct_cpu_driver_set_pool(pl->driver[0], pool);
  return CT_OK;
}

ct_status ct_placement_set_cpu_parts(ct_placement *pl, int n, ct_error *err) {
  if (n < 1 || n > CT_MAX_PARTITIONS)
    return ct_fail(err, CT_EINVAL, "partitions must be 1 to %d, got %d", CT_MAX_PARTITIONS, n);
  CT_TRY(replace_pool(pl, pool_threads(n), err));
  pl->cpu_parts = n;
  return CT_OK;
}

ct_status ct_placement_fit_pool(ct_placement *pl, int parts, ct_error *err) {
  /* the CPU's threads plus one per partition on another device (its host-side thread waits
   * for, or here emulates, the device) */
  if (parts <= ct_pool_size(pl->pool)) return CT_OK;
  return replace_pool(pl, parts > CT_MAX_PARTITIONS ? CT_MAX_PARTITIONS : parts, err);
}

ct_status ct_placement_set_devices(ct_placement *pl, const char *list, ct_error *err) {
  if (!list) return ct_fail(err, CT_EINVAL, "no device list");
  ct_plan_spec spec = {0};
  char buf[1024];
  if (strlen(list) >= sizeof buf) return ct_fail(err, CT_EINVAL, "device list \"%.40s...\" is too long", list);
  snprintf(buf, sizeof buf, "%s", list);
  int with_share = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (spec.n == CT_MAX_PARTITIONS)
      return ct_fail(err, CT_EINVAL, "device list \"%s\": at most %d entries", list, CT_MAX_PARTITIONS);
    char *eq = strchr(tok, '=');
    double share = 0;
    if (eq) {
      *eq = 0;
      char *end;
      share = strtod(eq + 1, &end);
      if (end == eq + 1 || *end || !isfinite(share) || !(share > 0))
        return ct_fail(err, CT_EINVAL, "device list \"%s\": share \"%s\" of %s is not a positive number", list,
                       eq + 1, tok);
      with_share++;
    }
    int idx;
    CT_TRY(ct_placement_driver(pl, tok, &idx, err));
    spec.driver[spec.n] = idx;
    spec.share[spec.n++] = share;
  }
  if (!spec.n) return ct_fail(err, CT_EINVAL, "device list \"%s\" names no device", list);
  if (with_share && with_share != spec.n)
    return ct_fail(err, CT_EINVAL,
                   "device list \"%s\": give every device a share (cpu=0.3,emu:0=0.7) or none (automatic shares)",
                   list);
  spec.has_share = with_share > 0;
  pl->dflt = spec;
  pl->master = spec.driver[0];
  return CT_OK;
}

/* ---------------------------------------------------------------- plans */

void ct_plan_split(int N, int n, const double *share, int *size) {
  double rem[CT_MAX_PARTITIONS], total = 0;
  for (int i = 0; i < n; i++) total += share[i];
  int given = 0;
  for (int i = 0; i < n; i++) {
    double want = total > 0 ? share[i] / total * N : (double)N / n;
    size[i] = (int)floor(want);
    rem[i] = want - size[i];
    given += size[i];
  }
  /* largest remainder: the sizes sum to N exactly (ties to the earlier partition) */
  while (given < N) {
    int best = 0;
    for (int i = 1; i < n; i++)
      if (rem[i] > rem[best]) best = i;
    size[best]++;
    rem[best] = -1;
    given++;
  }
}

static void one_part(const ct_placement *pl, int driver, const ct_plan_request *rq, ct_plan *out) {
  out->n = 1;
  out->N = rq->splits ? rq->N : 0;
  ct_part *p = &out->part[0];
  p->d = pl->driver[driver];
  p->index = 0;
  p->begin = 0;
  p->end = rq->N > 0 ? rq->N : 0;
  p->whole = !rq->splits;
  p->threads = p->d->mem == &ct_mem_host ? ct_pool_size(pl->pool) : 1;
}

ct_status ct_plan_make(const ct_placement *pl, const ct_plan_request *rq, ct_plan *out, ct_error *err) {
  memset(out, 0, sizeof *out);
  const ct_plan_spec *spec = rq->spec && rq->spec->n ? rq->spec : pl->dflt.n ? &pl->dflt : NULL;
  if (!spec) { /* the CPU alone: its cores as partitions when splitting gains */
    if (!(rq->splits && rq->gains && pl->cpu_parts > 1 && rq->N > 1)) {
      one_part(pl, 0, rq, out);
      return CT_OK;
    }
    ct_plan_spec cpu = {.n = pl->cpu_parts < rq->N ? pl->cpu_parts : rq->N, .has_share = false};
    for (int i = 0; i < cpu.n; i++) cpu.driver[i] = 0, cpu.share[i] = 1.0;
    cpu.has_share = true;
    return ct_plan_make(pl, &(ct_plan_request){.spec = &cpu, .N = rq->N, .splits = true, .gains = true}, out, err);
  }
  const bool own = spec == rq->spec; /* the layer's own entries, not the net's default */
  if ((!rq->splits || rq->N <= 0) && !own) { /* unsplit: whole, where the parameters live */
    one_part(pl, pl->master, rq, out);
    return CT_OK;
  }
  double share[CT_MAX_PARTITIONS];
  if (spec->has_share)
    for (int i = 0; i < spec->n; i++) share[i] = spec->share[i];
  else
    ct_auto_shares(pl, rq, spec, share);
  if (!rq->splits || rq->N <= 0) { /* unsplit, with entries of its own: the largest share's device */
    int best = 0;
    for (int i = 1; i < spec->n; i++)
      if (share[i] > share[best]) best = i;
    one_part(pl, spec->driver[best], rq, out);
    return CT_OK;
  }
  int size[CT_MAX_PARTITIONS];
  ct_plan_split(rq->N, spec->n, share, size);
  int nonempty = 0;
  for (int i = 0; i < spec->n; i++) nonempty += size[i] > 0;
  out->N = rq->N;
  for (int i = 0, start = 0; i < spec->n; i++) {
    if (size[i] == 0) continue; /* a share too small for one image, or fewer images than partitions */
    ct_part *p = &out->part[out->n];
    p->d = pl->driver[spec->driver[i]];
    p->index = out->n++;
    p->begin = start;
    p->end = start + size[i];
    p->whole = false;
    p->threads = nonempty == 1 && p->d->mem == &ct_mem_host ? ct_pool_size(pl->pool) : 1;
    start += size[i];
  }
  (void)err;
  return CT_OK;
}

const char *ct_plan_str(const ct_plan *p, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = 0;
  if (p->n == 1 && p->part[0].whole) {
    snprintf(buf, n, "%s (whole)", p->part[0].d->name);
    return buf;
  }
  /* each device once, with its share of the batch */
  const ct_driver *seen[CT_MAX_PARTITIONS];
  int nseen = 0;
  for (int i = 0; i < p->n && used < n; i++) {
    const ct_driver *d = p->part[i].d;
    bool dup = false;
    for (int k = 0; k < nseen; k++) dup |= seen[k] == d;
    if (dup) continue;
    seen[nseen++] = d;
    int imgs = 0, parts = 0;
    for (int k = 0; k < p->n; k++)
      if (p->part[k].d == d) imgs += p->part[k].end - p->part[k].begin, parts++;
    double share = p->N > 0 ? (double)imgs / p->N : 1.0;
    if (parts > 1)
      used += (size_t)snprintf(buf + used, n - used, "%s%s: %.2f in %d", used ? ", " : "", d->name, share, parts);
    else
      used += (size_t)snprintf(buf + used, n - used, "%s%s: %.2f", used ? ", " : "", d->name, share);
  }
  return buf;
}

bool ct_plan_same(const ct_plan *a, const ct_plan *b) {
  if (a->n != b->n || a->N != b->N) return false;
  for (int i = 0; i < a->n; i++)
    if (a->part[i].d != b->part[i].d || a->part[i].begin != b->part[i].begin || a->part[i].end != b->part[i].end ||
        a->part[i].whole != b->part[i].whole)
      return false;
  return true;
}
