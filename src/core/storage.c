#include "core/storage.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* ---------------------------------------------------------------- places */

static void *host_alloc(const ct_mem *m, size_t bytes) {
  (void)m;
  bytes = (bytes + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, bytes ? bytes : 64);
  return p;
}
static void host_free(const ct_mem *m, void *p) {
  (void)m;
  free(p);
}
static ct_status host_copy(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  (void)m, (void)err;
  memcpy(dst, src, bytes);
  return CT_OK;
}
static ct_status host_zero(const ct_mem *m, void *dst, size_t bytes, ct_error *err) {
  (void)m, (void)err;
  memset(dst, 0, bytes);
  return CT_OK;
}

const ct_mem ct_mem_host = {.id = CT_MEM_HOST,
                            .name = "cpu",
                            .alloc = host_alloc,
                            .free = host_free,
                            .upload = host_copy,
                            .download = host_copy,
                            .zero = host_zero};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *registry_names[CT_MAX_MEMS] = {"cpu"};
static int registry_n = 1;

bool ct_mem_register(ct_mem *m) {
  pthread_mutex_lock(&registry_mu);
  bool ok = registry_n < CT_MAX_MEMS;
  if (ok) {
    m->id = registry_n;
    registry_names[registry_n++] = m->name;
  }
  pthread_mutex_unlock(&registry_mu);
  return ok;
}

const char *ct_mem_name(int id) {
  pthread_mutex_lock(&registry_mu);
  const char *n = id >= 0 && id < registry_n ? registry_names[id] : "?";
  pthread_mutex_unlock(&registry_mu);
  return n;
}

/* ---------------------------------------------------------------- copy counters */

static ct_copy_stats global_stats;

ct_copy_stats *ct_copy_stats_global(void) { return &global_stats; }

void ct_copy_stats_reset(ct_copy_stats *s) {
  for (int i = 0; i < CT_MAX_MEMS; i++)
    for (int j = 0; j < CT_MAX_MEMS; j++) {
      atomic_store(&s->copies[i][j], 0);
      atomic_store(&s->bytes[i][j], 0);
    }
}

unsigned long long ct_copy_stats_bytes(const ct_copy_stats *s) {
  unsigned long long t = 0;
  for (int i = 0; i < CT_MAX_MEMS; i++)
    for (int j = 0; j < CT_MAX_MEMS; j++) t += atomic_load(&((ct_copy_stats *)s)->bytes[i][j]);
  return t;
}

unsigned long long ct_copy_stats_copies(const ct_copy_stats *s) {
  unsigned long long t = 0;
  for (int i = 0; i < CT_MAX_MEMS; i++)
    for (int j = 0; j < CT_MAX_MEMS; j++) t += atomic_load(&((ct_copy_stats *)s)->copies[i][j]);
  return t;
}

void ct_copy_stats_add(ct_copy_stats *dst, const ct_copy_stats *src) {
  for (int i = 0; i < CT_MAX_MEMS; i++)
    for (int j = 0; j < CT_MAX_MEMS; j++) {
      atomic_fetch_add(&dst->copies[i][j], atomic_load(&((ct_copy_stats *)src)->copies[i][j]));
      atomic_fetch_add(&dst->bytes[i][j], atomic_load(&((ct_copy_stats *)src)->bytes[i][j]));
    }
}

static void count(ct_copy_stats *stats, int from, int to, size_t bytes) {
  atomic_fetch_add_explicit(&global_stats.copies[from][to], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&global_stats.bytes[from][to], bytes, memory_order_relaxed);
  if (stats && stats != &global_stats) {
    atomic_fetch_add_explicit(&stats->copies[from][to], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats->bytes[from][to], bytes, memory_order_relaxed);
  }
}

/* ---------------------------------------------------------------- sets of ranges */

/* Sorted, disjoint, non-adjacent half-open ranges [iv[2k], iv[2k+1]). */
typedef struct ivset {
  size_t n, cap;
  size_t *iv;
} ivset;

static bool ivset_reserve(ivset *s, size_t n) {
  if (n <= s->cap) return true;
  size_t cap = s->cap ? s->cap * 2 : 4;
  while (cap < n) cap *= 2;
  size_t *v = realloc(s->iv, cap * 2 * sizeof *v);
  if (!v) return false;
  s->iv = v;
  s->cap = cap;
  return true;
}

/* s minus [b, e) */
static bool ivset_sub(ivset *s, size_t b, size_t e) {
  if (b >= e) return true;
  size_t *v = s->iv, n = s->n, out = 0;
  for (size_t k = 0; k < n; k++)
    if (v[2 * k] < b && v[2 * k + 1] > e) {
      /* the one range that strictly contains [b, e) (no other range meets it) splits in two */
      if (!ivset_reserve(s, n + 1)) return false;
      v = s->iv;
      memmove(v + 2 * (k + 1), v + 2 * k, (n - k) * 2 * sizeof *v);
      v[2 * k + 1] = b;
      v[2 * (k + 1)] = e;
      s->n = n + 1;
      return true;
    }
  for (size_t k = 0; k < n; k++) {
    size_t lo = v[2 * k], hi = v[2 * k + 1];
    if (hi <= b || lo >= e) v[2 * out] = lo, v[2 * out + 1] = hi, out++;
    else if (lo < b) v[2 * out] = lo, v[2 * out + 1] = b, out++;
    else if (hi > e) v[2 * out] = e, v[2 * out + 1] = hi, out++;
  }
  s->n = out;
  return true;
}

/* s plus [b, e) */
static bool ivset_add(ivset *s, size_t b, size_t e) {
  if (b >= e) return true;
  if (!ivset_reserve(s, s->n + 1)) return false;
  size_t *v = s->iv, n = s->n, k = 0;
  while (k < n && v[2 * k + 1] < b) k++; /* ranges ending before b (not touching) stay */
  size_t j = k;
  while (j < n && v[2 * j] <= e) { /* ranges overlapping or touching [b, e) merge into it */
    if (v[2 * j] < b) b = v[2 * j];
    if (v[2 * j + 1] > e) e = v[2 * j + 1];
    j++;
  }
  /* replace v[k..j) by [b, e) */
  size_t tail = n - j;
  memmove(v + 2 * (k + 1), v + 2 * j, tail * 2 * sizeof *v);
  v[2 * k] = b;
  v[2 * k + 1] = e;
  s->n = k + 1 + tail;
  return true;
}

static bool ivset_covers(const ivset *s, size_t b, size_t e) {
  if (b >= e) return true;
  for (size_t k = 0; k < s->n; k++)
    if (s->iv[2 * k] <= b && s->iv[2 * k + 1] >= e) return true;
  return false;
}

/* ---------------------------------------------------------------- storage */

typedef struct copy {
  const ct_mem *m; /* NULL: no copy in this place */
  float *p;
  ivset valid;
} copy;

struct ct_storage {
  pthread_mutex_t mu;
  atomic_int refs;
  size_t size;
  copy c[CT_MAX_MEMS]; /* by place id */
};

ct_storage *ct_storage_create(void) {
  ct_storage *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->refs, 1);
  return s;
}

void ct_storage_retain(ct_storage *s) { atomic_fetch_add(&s->refs, 1); }

static void drop_copies(ct_storage *s) {
  for (int i = 0; i < CT_MAX_MEMS; i++) {
    copy *c = &s->c[i];
    if (c->m) c->m->free(c->m, c->p);
    free(c->valid.iv);
    memset(c, 0, sizeof *c);
  }
}

void ct_storage_release(ct_storage *s) {
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  drop_copies(s);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int ct_storage_refs(const ct_storage *s) { return atomic_load(&((ct_storage *)s)->refs); }
size_t ct_storage_size(const ct_storage *s) { return s->size; }

ct_status ct_storage_reserve(ct_storage *s, size_t n, ct_error *err) {
  (void)err;
  if (n <= s->size) return CT_OK;
  pthread_mutex_lock(&s->mu);
  drop_copies(s);
  s->size = n;
  pthread_mutex_unlock(&s->mu);
  return CT_OK;
}

static ct_status get_copy(ct_storage *s, const ct_mem *m, copy **out, ct_error *err) {
  copy *c = &s->c[m->id];
  if (!c->m) {
    size_t bytes = (s->size ? s->size : 1) * sizeof(float);
    float *p = s->size <= SIZE_MAX / sizeof(float) ? m->alloc(m, bytes) : NULL;
    if (!p) return ct_fail(err, CT_ENOMEM, "%s: out of memory (a buffer of %zu bytes)", m->name, bytes);
    c->m = m;
    c->p = p;
  }
  *out = c;
  return CT_OK;
}

static ct_status oom(const ct_mem *m, ct_error *err) {
  return ct_fail(err, CT_ENOMEM, "%s: out of memory tracking valid ranges", m->name);
}

/* One copy to make: [x, y) from place `src` (NULL: nobody holds it; zero it) into the target,
 * through the host copy `via` when both are devices that are not peers (else NULL). */
typedef struct piece {
  copy *src, *via;
  size_t x, y;
} piece;

#define MAX_PIECES 32

/* Whether device place `to` copies straight from device place `from`. */
static bool peers(const ct_mem *to, const ct_mem *from) {
  return to->reaches && to->copy_from && to->reaches(to, from);
}

/* Plans up to MAX_PIECES copies that bring [b, e) of copy t up to date (under s->mu): each stale
 * piece from the first place holding it (the host first), zero where no place holds it. */
static ct_status plan(ct_storage *s, copy *t, size_t b, size_t e, piece *out, int *n, ct_error *err) {
  *n = 0;
  while (b < e && *n < MAX_PIECES) {
    /* the next stale piece [x, y) of [b, e) in t */
    size_t x = b, y = e;
    for (size_t k = 0; k < t->valid.n; k++) {
      size_t lo = t->valid.iv[2 * k], hi = t->valid.iv[2 * k + 1];
      if (lo <= x && hi > x) x = hi; /* x lies in a valid range: skip past it */
    }
    if (x >= e) return CT_OK;
    for (size_t k = 0; k < t->valid.n; k++)
      if (t->valid.iv[2 * k] > x && t->valid.iv[2 * k] < y) y = t->valid.iv[2 * k];
    /* [x, y) is stale in t: piece by piece from the other places */
    while (x < y && *n < MAX_PIECES) {
      size_t next = y; /* where this piece ends */
      copy *src = NULL;
      for (int order = 0; order < CT_MAX_MEMS && !src; order++) {
        copy *o = &s->c[order];
        if (o == t || !o->m) continue;
        for (size_t k = 0; k < o->valid.n; k++) {
          size_t lo = o->valid.iv[2 * k], hi = o->valid.iv[2 * k + 1];
          if (lo <= x && hi > x) {
            src = o;
            if (hi < next) next = hi;
            break;
          }
        }
      }
      /* the piece ends where a place before src in that order (or any, when none holds x: the
       * zeros end there) starts holding the elements: each element comes from the first place
       * that holds it, the host first, so a device-to-device copy is made only when needed */
      for (int i = 0; i < CT_MAX_MEMS && &s->c[i] != src; i++) {
        copy *o = &s->c[i];
        if (o == t || !o->m) continue;
        for (size_t k = 0; k < o->valid.n; k++)
          if (o->valid.iv[2 * k] > x && o->valid.iv[2 * k] < next) next = o->valid.iv[2 * k];
      }
      copy *via = NULL;
      if (src && src->m->id != CT_MEM_HOST && t->m->id != CT_MEM_HOST && !peers(t->m, src->m))
        CT_TRY(get_copy(s, &ct_mem_host, &via, err));
      out[(*n)++] = (piece){src, via, x, next};
      x = next;
    }
    b = y;
  }
  return CT_OK;
}

/* Makes one planned copy (without s->mu: the places' buffers stay put, and partitions work on
 * disjoint ranges), counting it. */
static ct_status make(copy *t, const piece *p, ct_copy_stats *stats, ct_error *err) {
  const size_t x = p->x, bytes = (p->y - p->x) * sizeof(float);
  if (!p->src) return t->m->zero(t->m, t->p + x, bytes, err);
  const copy *from = p->src;
  const int fi = from->m->id, ti = t->m->id;
  if (ti == CT_MEM_HOST) {
    CT_TRY(from->m->download(from->m, t->p + x, from->p + x, bytes, err));
  } else if (fi == CT_MEM_HOST) {
    CT_TRY(t->m->upload(t->m, t->p + x, from->p + x, bytes, err));
  } else if (!p->via) { /* device to device, straight (peers) */
    CT_TRY(t->m->copy_from(t->m, t->p + x, from->m, from->p + x, bytes, err));
  } else { /* device to device, through the host's copy */
    CT_TRY(from->m->download(from->m, p->via->p + x, from->p + x, bytes, err));
    count(stats, fi, CT_MEM_HOST, bytes);
    CT_TRY(t->m->upload(t->m, t->p + x, p->via->p + x, bytes, err));
    count(stats, CT_MEM_HOST, ti, bytes);
    return CT_OK;
  }
  count(stats, fi, ti, bytes);
  return CT_OK;
}

/* Brings [b, e) of copy t up to date. Called and returning with s->mu held; the copies
 * themselves run without it, so partitions on other devices are not held up by this one's. */
static ct_status refresh(ct_storage *s, copy *t, size_t b, size_t e, ct_copy_stats *stats, ct_error *err) {
  piece pieces[MAX_PIECES];
  for (;;) {
    int n;
    CT_TRY(plan(s, t, b, e, pieces, &n, err));
    if (!n) return CT_OK;
    pthread_mutex_unlock(&s->mu);
    ct_status st = CT_OK;
    int done = 0;
    for (; done < n && !st; done++) st = make(t, &pieces[done], stats, err);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < done - (st ? 1 : 0); i++) {
      const piece *p = &pieces[i];
      if (!ivset_add(&t->valid, p->x, p->y)) return oom(t->m, err);
      if (p->via && !ivset_add(&p->via->valid, p->x, p->y)) return oom(&ct_mem_host, err);
    }
    if (st) return st;
  }
}

ct_status ct_storage_deref(ct_storage *s, const ct_mem *m, ct_access mode, size_t begin, size_t end,
                           ct_copy_stats *stats, float **out, ct_error *err) {
  if (end > s->size || begin > end)
    return ct_fail(err, CT_EINTERNAL, "deref of elements [%zu, %zu) of a storage of %zu", begin, end, s->size);
  pthread_mutex_lock(&s->mu);
  copy *c = NULL;
  ct_status st = get_copy(s, m, &c, err);
  if (!st && (mode & CT_READ) && !ivset_covers(&c->valid, begin, end)) st = refresh(s, c, begin, end, stats, err);
  if (!st && (mode & CT_WRITE)) {
    if (!ivset_add(&c->valid, begin, end)) st = oom(m, err);
    for (int i = 0; !st && i < CT_MAX_MEMS; i++)
      if (&s->c[i] != c && s->c[i].m && !ivset_sub(&s->c[i].valid, begin, end)) st = oom(s->c[i].m, err);
  }
  pthread_mutex_unlock(&s->mu);
  *out = st ? NULL : c->p;
  return st;
}

bool ct_storage_valid_in(ct_storage *s, const ct_mem *m, size_t begin, size_t end) {
  pthread_mutex_lock(&s->mu);
  bool v = s->c[m->id].m && ivset_covers(&s->c[m->id].valid, begin, end);
  pthread_mutex_unlock(&s->mu);
  return v;
}

bool ct_storage_has_copy(ct_storage *s, const ct_mem *m) {
  pthread_mutex_lock(&s->mu);
  bool v = s->c[m->id].m != NULL;
  pthread_mutex_unlock(&s->mu);
  return v;
}
