#include "data/feed.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"

typedef struct slot {
  float *data, *labels;
  ct_rng rng_after;
  uint64_t cursor_after;
  bool ready; /* filled by the producer, not yet taken */
  ct_status st;
  ct_error err;
} slot;

struct ct_feed {
  ct_source *src;
  ct_transform tf;
  int batch, depth;
  uint64_t skip; /* records skipped after each batch (ct_feed_set_skip) */
  size_t img_out; /* floats per transformed image */
  char who[300];
  double wait_ms;
  /* the prefetch queue (depth > 0) */
  slot *slots;
  int head, tail;
  bool running, stop;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv_ready, cv_free;
  ct_rng prod_rng; /* the producer's private state */
  uint64_t prod_cursor;
  ct_rng expect_rng; /* the consumer state the next queued batch starts from */
  uint64_t expect_cursor;
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One batch from stream position `cursor` with random state *rng (advanced). */
static ct_status produce(ct_feed *f, uint64_t cursor, ct_rng *rng, float *data, float *labels, ct_error *err) {
  ct_source *s = f->src;
  if (s->pos != cursor) CT_TRY(ct_source_seek(s, cursor, err));
  const ct_transform *t = &f->tf;
  for (int b = 0; b < f->batch; b++) {
    ct_record r;
    CT_TRY(ct_source_next(s, &r, err));
    if (r.C != t->C || r.H != t->H || r.W != t->W)
      return ct_fail(err, CT_ESHAPE, "%s is %dx%dx%d (channels x height x width) but this layer's images are %dx%dx%d",
                     r.what, r.C, r.H, r.W, t->C, t->H, t->W);
    ct_transform_apply(t, r.u8, r.f32, data + (size_t)b * f->img_out, rng);
    if (labels) labels[b] = r.label;
  }
  return CT_OK;
}

static void *producer(void *arg) {
  ct_feed *f = arg;
  pthread_mutex_lock(&f->mu);
  while (!f->stop) {
    slot *s = &f->slots[f->tail];
    if (s->ready) {
      pthread_cond_wait(&f->cv_free, &f->mu);
      continue;
    }
    pthread_mutex_unlock(&f->mu);
    s->err.msg[0] = 0;
    s->st = produce(f, f->prod_cursor, &f->prod_rng, s->data, s->labels, &s->err);
    f->prod_cursor = f->src->pos + f->skip;
    s->rng_after = f->prod_rng;
    s->cursor_after = f->prod_cursor;
    pthread_mutex_lock(&f->mu);
    s->ready = true;
    f->tail = (f->tail + 1) % f->depth;
    pthread_cond_signal(&f->cv_ready);
    if (s->st) break; /* the consumer reports it when it reaches this batch */
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

void ct_feed_stop(ct_feed *f) {
  if (!f || !f->running) return;
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_broadcast(&f->cv_free);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thread, NULL);
  f->running = false;
}

static ct_status restart(ct_feed *f, const ct_rng *rng, uint64_t cursor, ct_error *err) {
  ct_feed_stop(f);
  for (int i = 0; i < f->depth; i++) f->slots[i].ready = false;
  f->head = f->tail = 0;
  f->stop = false;
  f->prod_rng = f->expect_rng = *rng;
  f->prod_cursor = f->expect_cursor = cursor;
  int rc = pthread_create(&f->thread, NULL, producer, f);
  if (rc) return ct_fail(err, CT_EINTERNAL, "%s: cannot start the prefetch thread: %s", f->who, strerror(rc));
  f->running = true;
  return CT_OK;
}

ct_status ct_feed_next(ct_feed *f, float *data, float *labels, ct_rng *rng, uint64_t *cursor, ct_error *err) {
  size_t n = (size_t)f->batch * f->img_out;
  if (f->depth == 0) {
    double t0 = now_ms();
    ct_rng r = *rng;
    ct_status st = produce(f, *cursor, &r, data, labels, err);
    f->wait_ms += now_ms() - t0;
    if (st) return ct_error_prefix(err, "%s", f->who);
    *rng = r;
    *cursor = f->src->pos + f->skip;
    return CT_OK;
  }
  if (!f->running || *cursor != f->expect_cursor || memcmp(rng, &f->expect_rng, sizeof *rng))
    CT_TRY(restart(f, rng, *cursor, err));
  slot *s = &f->slots[f->head];
  double t0 = now_ms();
  pthread_mutex_lock(&f->mu);
  while (!s->ready) pthread_cond_wait(&f->cv_ready, &f->mu);
  pthread_mutex_unlock(&f->mu);
  f->wait_ms += now_ms() - t0;
  if (s->st) { /* left in place: asking again gives the same error */
    if (err) *err = s->err;
    return ct_error_prefix(err, "%s", f->who);
  }
  memcpy(data, s->data, n * sizeof *data);
  if (labels) memcpy(labels, s->labels, (size_t)f->batch * sizeof *labels);
  *rng = f->expect_rng = s->rng_after;
  *cursor = f->expect_cursor = s->cursor_after;
  pthread_mutex_lock(&f->mu);
  s->ready = false;
  f->head = (f->head + 1) % f->depth;
  pthread_cond_signal(&f->cv_free);
  pthread_mutex_unlock(&f->mu);
  return CT_OK;
}

void ct_feed_free(ct_feed *f) {
  if (!f) return;
  ct_feed_stop(f);
  if (f->slots) {
    for (int i = 0; i < f->depth; i++) {
      free(f->slots[i].data);
      free(f->slots[i].labels);
    }
    free(f->slots);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv_ready);
    pthread_cond_destroy(&f->cv_free);
  }
  ct_source_close(f->src);
  ct_transform_free(&f->tf);
  free(f);
}

ct_status ct_feed_create(ct_source *src, ct_transform *tf, int batch, int depth, const char *who, ct_feed **out,
                         ct_error *err) {
  *out = NULL;
  ct_feed *f = calloc(1, sizeof *f);
  if (!f) {
    ct_source_close(src);
    ct_transform_free(tf);
    return ct_fail(err, CT_ENOMEM, "%s: out of memory", who);
  }
  f->src = src;
  f->tf = *tf;
  memset(tf, 0, sizeof *tf);
  f->batch = batch;
  f->depth = depth < 0 ? 0 : depth;
  snprintf(f->who, sizeof f->who, "%s", who);
  f->img_out = (size_t)f->tf.C * ct_transform_out_height(&f->tf) * ct_transform_out_width(&f->tf);
  if (f->depth) {
    f->slots = calloc((size_t)f->depth, sizeof *f->slots);
    if (!f->slots) goto oom;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv_ready, NULL);
    pthread_cond_init(&f->cv_free, NULL);
    for (int i = 0; i < f->depth; i++) {
      f->slots[i].data = malloc((size_t)batch * f->img_out * sizeof(float));
      f->slots[i].labels = malloc((size_t)batch * sizeof(float));
      if (!f->slots[i].data || !f->slots[i].labels) goto oom;
    }
  }
  *out = f;
  return CT_OK;
oom:
  ct_feed_free(f);
  return ct_fail(err, CT_ENOMEM, "%s: out of memory for %d prefetch buffers of %d images", who, depth, batch);
}

void ct_feed_set_skip(ct_feed *f, uint64_t records) {
  if (!f || f->skip == records) return;
  ct_feed_stop(f); /* its queue was made with the old skip; the next ct_feed_next restarts it */
  f->skip = records;
}

ct_source *ct_feed_source(ct_feed *f) { return f->src; }
const ct_transform *ct_feed_transform(const ct_feed *f) { return &f->tf; }
double ct_feed_wait_ms(const ct_feed *f) { return f->wait_ms; }
void ct_feed_reset_wait(ct_feed *f) { f->wait_ms = 0; }
