/* Mini-batches from a source through the transform, optionally prefetched by a background
 * thread into a bounded queue.
 *
 * Determinism: a batch depends only on the stream position it starts at and the random-stream
 * state it starts with (the transform draws its crops and mirrors per image, in order, from that
 * stream). The producer works from a private copy of both and each queued batch carries the
 * state before and after it; the consumer adopts the "after" state when it takes a batch. So the
 * caller's cursor and rng always describe the consumer's position (what a snapshot must save),
 * the batches are the same with and without prefetch, and if the caller's state no longer
 * matches what the queue was built from (a resumed snapshot, a reseed), the queue is dropped and
 * the producer restarts from the caller's state. */
#ifndef CT_FEED_H
#define CT_FEED_H

#include <stdint.h>

#include "core/rng.h"
#include "cortado.h"
#include "data/source.h"
#include "data/transform.h"

typedef struct ct_feed ct_feed;

/* Takes ownership of src and tf (both freed by ct_feed_free, also on failure). depth 0: no
 * thread, batches are made when asked for. `who` prefixes error messages ("layer \"x\" (Data)"). */
ct_status ct_feed_create(ct_source *src, ct_transform *tf, int batch, int depth, const char *who, ct_feed **out,
                         ct_error *err);
void ct_feed_free(ct_feed *f);

/* Fills data (batch x C x outH x outW) and labels (batch; may be NULL) with the batch that
 * starts at *cursor with random state *rng, and advances both past it. */
ct_status ct_feed_next(ct_feed *f, float *data, float *labels, ct_rng *rng, uint64_t *cursor, ct_error *err);

/* Reading every n-th block (cluster workers, src/dist): after each batch the stream position
 * moves on by `records` more records, in the caller's cursor and in the prefetch thread alike,
 * so the thread prefetches exactly the batches the caller will ask for. The random state is not
 * advanced over the skipped records. 0 (the default) reads the stream contiguously. */
void ct_feed_set_skip(ct_feed *f, uint64_t records);

/* Stops the producer thread (it restarts on the next ct_feed_next); call before changing the
 * source from outside. */
void ct_feed_stop(ct_feed *f);
ct_source *ct_feed_source(ct_feed *f);
const ct_transform *ct_feed_transform(const ct_feed *f);

/* Milliseconds the consumer spent waiting for batches (with depth 0: making them). */
double ct_feed_wait_ms(const ct_feed *f);
void ct_feed_reset_wait(ct_feed *f);

#endif
