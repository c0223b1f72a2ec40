/* Float images held in memory (the MemoryData layer's source). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/source.h"

typedef struct mem_source {
  ct_source base;
  int C, H, W;
  float *data, *labels;
  char what[64];
} mem_source;

static ct_status mem_next(ct_source *s, ct_record *r, ct_error *err) {
  mem_source *m = (mem_source *)s;
  if (!m->data)
    return ct_fail(err, CT_EINVAL, "no data yet: call ct_net_set_memory_data before running the net forward");
  size_t i = (size_t)(s->pos % (uint64_t)s->count);
  size_t img = (size_t)m->C * m->H * m->W;
  r->C = m->C;
  r->H = m->H;
  r->W = m->W;
  r->u8 = NULL;
  r->f32 = m->data + i * img;
  r->label = m->labels[i];
  snprintf(m->what, sizeof m->what, "memory item %zu", i);
  r->what = m->what;
  s->pos++;
  return CT_OK;
}

static ct_status mem_seek(ct_source *s, uint64_t pos, ct_error *err) {
  (void)err;
  s->pos = pos;
  return CT_OK;
}

static void mem_close(ct_source *s) {
  mem_source *m = (mem_source *)s;
  free(m->data);
  free(m->labels);
  free(m);
}

static const ct_source_ops mem_ops = {mem_next, mem_seek, mem_close};

ct_status ct_source_open_memory(int C, int H, int W, ct_source **out, ct_error *err) {
  mem_source *m = calloc(1, sizeof *m);
  if (!m) return ct_fail(err, CT_ENOMEM, "out of memory");
  m->base.ops = &mem_ops;
  m->base.count = 0;
  m->C = C;
  m->H = H;
  m->W = W;
  *out = &m->base;
  return CT_OK;
}

ct_status ct_source_memory_set(ct_source *s, const float *data, const float *labels, int n, ct_error *err) {
  mem_source *m = (mem_source *)s;
  if (n <= 0 || !data) return ct_fail(err, CT_EINVAL, "needs n > 0 images and a data pointer (got n = %d)", n);
  size_t img = (size_t)m->C * m->H * m->W;
  if ((size_t)n > ((size_t)1 << 40) / (img * sizeof(float)))
    return ct_fail(err, CT_ENOMEM, "%d images of %zu floats is implausibly large", n, img);
  float *d = malloc((size_t)n * img * sizeof *d), *l = malloc((size_t)n * sizeof *l);
  if (!d || !l) {
    free(d);
    free(l);
    return ct_fail(err, CT_ENOMEM, "out of memory for %d images", n);
  }
  memcpy(d, data, (size_t)n * img * sizeof *d);
  if (labels)
    memcpy(l, labels, (size_t)n * sizeof *l);
  else
    memset(l, 0, (size_t)n * sizeof *l);
  free(m->data);
  free(m->labels);
  m->data = d;
  m->labels = l;
  s->count = n;
  s->pos = 0;
  return CT_OK;
}
