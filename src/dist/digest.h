/* What the processes of a cluster job must agree on before they train (issue 24): the cortado
 * version and schema, every field of the solver as parsed, and every net it names as parsed.
 * No MPI here: the digest is a fixed-size value that src/dist/mpi_startup.c exchanges, and
 * ct_digest_compare says in words what differs, naming solver fields ("base_lr",
 * "cluster.nworkers_per_group") so that a user can find the line to fix.
 *
 * Values are hashed, not the packed bytes: a field counts as set exactly when protobuf-c says so
 * (has_ flag, non-NULL message), which is also what the topology and the solver read. */
#ifndef CT_DIST_DIGEST_H
#define CT_DIST_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cortado.pb-c.h"

enum {
  CT_DIGEST_FIELDS = 128, /* solver fields and the fields of its singular sub-messages, flattened */
  CT_DIGEST_NETS = 9,     /* the train net and up to 8 test nets */
  CT_DIGEST_VERSION = 64
};

typedef struct ct_digest {
  char version[CT_DIGEST_VERSION]; /* "0.1.0 schema 1a2b3c4d" */
  int32_t nfields;                 /* 0: this process could not read its solver */
  int32_t nnets;
  uint64_t field[CT_DIGEST_FIELDS];
  uint64_t net[CT_DIGEST_NETS]; /* 0: not read; [0] the train net, [1 + k] test net k */
} ct_digest;

/* The version (this build's) and no solver or net yet. */
void ct_digest_init(ct_digest *d);
void ct_digest_solver(ct_digest *d, const Caffe__SolverParameter *sp);
/* Net `which` (0 train, 1 + k test net k) as parsed, before any per-worker batch split. */
void ct_digest_net(ct_digest *d, int which, const Caffe__NetParameter *np);

/* Hash of a whole message's values (exposed for the tests). */
uint64_t ct_digest_message(const ProtobufCMessage *m);
/* The name of digest field i ("base_lr", "cluster.sync_freq"), "" past the end. */
const char *ct_digest_field_name(int i, char *buf, size_t n);

/* Describes in buf how `b` differs from `a` ("the solver's base_lr, max_iter", "the train net",
 * "cortado 0.1.0 schema ... against ..."), the version first: when versions differ nothing
 * else is comparable. Returns false (and buf "") when they agree. A side that could not read
 * its solver or a net is not compared on it: its failure is reported instead. */
bool ct_digest_compare(const ct_digest *a, const ct_digest *b, char *buf, size_t n);

#endif
