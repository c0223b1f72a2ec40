/* The start of a cluster job: records, the verdict, data stand-ins (issue 24). See startup.h. */
#include "dist/startup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "layers/data_layer.h"
#include "proto/prototxt.h"

void ct_startup_rec_fill(ct_startup_rec *r, int rank, ct_status st, const ct_error *err, const ct_digest *d) {
  memset(r, 0, sizeof *r);
  r->magic = CT_STARTUP_MAGIC;
  r->size = (uint32_t)sizeof *r;
  r->rank = rank;
  r->status = (int32_t)st;
  if (d)
    r->digest = *d;
  else
    ct_digest_init(&r->digest);
  if (st != CT_OK)
    snprintf(r->msg, sizeof r->msg, "%s", err && err->msg[0] ? err->msg : ct_status_name(st));
}

/* "rank 2" or "ranks 2, 3 and 5" for the ranks flagged in bad[] */
static void rank_list(const bool *bad, int world, char *buf, size_t n) {
  int count = 0;
  for (int r = 0; r < world; r++) count += bad[r];
  size_t len = (size_t)snprintf(buf, n, "rank%s", count > 1 ? "s" : "");
  int done = 0;
  for (int r = 0; r < world && len < n; r++) {
    if (!bad[r]) continue;
    const char *sep = done == 0 ? " " : done == count - 1 ? " and " : ", ";
    len += (size_t)snprintf(buf + len, n - len, "%s%d", sep, r);
    done++;
  }
}

ct_status ct_startup_verdict(const ct_startup_rec *const *recs, int world, double wait_s, char *msg, size_t n) {
  msg[0] = 0;
  bool *flag = calloc((size_t)world + 1, sizeof *flag);
  if (!flag) {
    snprintf(msg, n, "out of memory");
    return CT_ENOMEM;
  }
  char who[256];
  ct_status st = CT_OK;
  /* 1. silence: nothing else can be known about those ranks */
  bool any = false;
  for (int r = 0; r < world; r++) any |= flag[r] = !recs[r];
  if (any) {
    rank_list(flag, world, who, sizeof who);
    snprintf(msg, n, "%s did not reach the start of training within %.0f s: stopped, stuck or much slower to "
             "start (CT_DIST_TIMEOUT sets the limit)", who, wait_s);
    st = CT_EIO;
    goto done;
  }
  /* 2, 3. a different build or a different job; rank 0's is the reference */
  const ct_startup_rec *ref = recs[0];
  char first[512] = "";
  int first_rank = -1;
  for (int r = 1; r < world; r++) {
    char what[512];
    flag[r] = ct_digest_compare(&ref->digest, &recs[r]->digest, what, sizeof what);
    if (flag[r] && first_rank < 0) {
      first_rank = r;
      snprintf(first, sizeof first, "%s", what);
    }
  }
  if (first_rank >= 0) {
    bool version = strncmp(ref->digest.version, recs[first_rank]->digest.version, sizeof ref->digest.version) != 0;
    rank_list(flag, world, who, sizeof who);
    bool several = strchr(who, ',') || strstr(who, " and ");
    if (version)
      snprintf(msg, n, "%s run%s another cortado than rank 0 (rank %d: %s); every process must run the same build",
               who, several ? "" : "s", first_rank, first);
    else if (several)
      snprintf(msg, n, "%s read another job than rank 0 (rank %d differs in %s); every process must read the same "
               "solver and nets", who, first_rank, first);
    else
      snprintf(msg, n, "%s reads another job than rank 0: it differs in %s; every process must read the same "
               "solver and nets", who, first);
    st = CT_EINVAL;
    goto done;
  }
  /* 4. failures: each distinct message once, with the ranks that hit it, lowest rank first
   * (up to three; the first is the likeliest cause) */
  int lowest = -1;
  for (int r = 0; r < world && lowest < 0; r++)
    if (recs[r]->status != CT_OK) lowest = r;
  if (lowest < 0) goto done;
  st = (ct_status)recs[lowest]->status;
  bool *told = calloc((size_t)world + 1, sizeof *told);
  if (!told) {
    snprintf(msg, n, "start-up failed on rank %d: %.*s", lowest, (int)sizeof recs[lowest]->msg, recs[lowest]->msg);
    goto done;
  }
  size_t len = (size_t)snprintf(msg, n, "start-up failed");
  int groups = 0;
  for (int r = lowest; r < world && len < n; r++) {
    if (recs[r]->status == CT_OK || told[r]) continue;
    int count = 0;
    for (int q = 0; q < world; q++) {
      flag[q] = q >= r && recs[q]->status != CT_OK && !told[q] && !strcmp(recs[q]->msg, recs[r]->msg);
      if (flag[q]) told[q] = true, count++;
    }
    if (groups == 3) {
      len += (size_t)snprintf(msg + len, n - len, "; and on other ranks");
      break;
    }
    if (count == world && world > 1)
      snprintf(who, sizeof who, "every rank");
    else
      rank_list(flag, world, who, sizeof who);
    len += (size_t)snprintf(msg + len, n - len, "%s on %s: %.*s", groups ? ";" : "", who,
                            (int)sizeof recs[r]->msg, recs[r]->msg);
    groups++;
  }
  free(told);
done:
  free(flag);
  return st;
}

/* ---- stand-ins for the data layers ---- */

typedef struct text {
  char *s;
  size_t len, cap;
  bool oom;
} text;

static void put(text *t, const char *fmt, const char *s, long v) {
  if (t->oom) return;
  for (;;) {
    size_t room = t->cap - t->len;
    int k = s ? snprintf(t->s + t->len, room, fmt, s) : snprintf(t->s + t->len, room, fmt, v);
    if (k >= 0 && (size_t)k < room) {
      t->len += (size_t)k;
      return;
    }
    size_t cap = t->cap * 2 + (size_t)(k > 0 ? k : 0) + 64;
    char *p = realloc(t->s, cap);
    if (!p || k < 0) {
      t->oom = true;
      if (p) t->s = p;
      return;
    }
    t->s = p;
    t->cap = cap;
  }
}

/* a prototxt string literal's contents: quotes and backslashes escaped */
static void put_name(text *t, const char *name) {
  put(t, "%s", "\"", 0);
  for (const char *c = name; *c; c++) {
    char one[3] = {*c, 0, 0};
    if (*c == '"' || *c == '\\') one[0] = '\\', one[1] = *c;
    put(t, "%s", one, 0);
  }
  put(t, "%s", "\"", 0);
}

char *ct_dist_stand_ins(ct_net *net) {
  text t = {.s = malloc(256), .cap = 256};
  if (!t.s) return NULL;
  t.s[0] = 0;
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    ct_layer *l = ct_net_layer(net, i);
    if (!ct_is_data_layer(l)) continue;
    put(&t, "%s", "layer { name: ", 0);
    put_name(&t, l->name);
    put(&t, "%s", " type: \"Input\"", 0); /* the tops: the server's own layer's names */
    put(&t, "%s", " input_param {", 0);
    for (int k = 0; k < l->ntop; k++) {
      put(&t, "%s", " shape {", 0);
      for (int a = 0; a < l->top[k]->naxes; a++) put(&t, " dim: %ld", NULL, (long)l->top[k]->shape[a]);
      put(&t, "%s", " }", 0);
    }
    put(&t, "%s", " } }\n", 0);
  }
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

ct_status ct_dist_use_stand_ins(Caffe__NetParameter *np, const char *text, int level, const char *const *stages,
                                ct_error *err) {
  ProtobufCMessage *m = NULL;
  CT_TRY(ct_prototxt_parse(text, strlen(text), "rank 0's data stand-ins", &caffe__net_parameter__descriptor, &m, err));
  Caffe__NetParameter *si = (Caffe__NetParameter *)m;
  for (size_t i = 0; i < np->n_layer; i++) {
    Caffe__LayerParameter *l = np->layer[i];
    if (!l->name || !ct_net_layer_in_phase(l, CT_TRAIN, level, stages)) continue;
    for (size_t k = 0; k < si->n_layer; k++) {
      if (!si->layer[k] || strcmp(si->layer[k]->name, l->name) != 0) continue;
      Caffe__LayerParameter *in = si->layer[k];
      size_t nt = in->n_top;
      char **tops = in->top;
      in->n_top = l->n_top, in->top = l->top; /* the names this net's layers refer to */
      l->n_top = nt, l->top = tops;
      np->layer[i] = in; /* swaps: each message still frees what it holds */
      si->layer[k] = l;
      break;
    }
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return CT_OK;
}
