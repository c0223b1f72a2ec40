/* The cluster topology (src/dist/topology.c): presets, process counts, slices, data shards and
 * batch splitting, without MPI. With arguments it is also the weight comparator of the MPI
 * tests:  test_dist cmp NET.prototxt A.caffemodel B.caffemodel RTOL
 * prints the largest per-blob relative difference max|a-b| / max|b| and fails above RTOL. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "data/feed.h"
#include "dist/cluster.h"
#include "dist/digest.h"
#include "dist/startup.h"
#include "dist/topology.h"
#include "net/net.h"
#include "proto/prototxt.h"

static Caffe__SolverParameter *solver(const char *text) {
  ProtobufCMessage *m = NULL;
  ct_error err;
  if (ct_prototxt_parse(text, strlen(text), "test", &caffe__solver_parameter__descriptor, &m, &err) != CT_OK) {
    fprintf(stderr, "parse: %s\n", err.msg);
    return NULL;
  }
  return (Caffe__SolverParameter *)m;
}

static ct_status resolve(const char *text, int world, ct_topology *t, ct_error *err) {
  Caffe__SolverParameter *sp = solver(text);
  if (!sp) return CT_EPARSE;
  ct_status st = ct_topology_resolve(sp, world, t, err);
  protobuf_c_message_free_unpacked(&sp->base, NULL);
  return st;
}

static void test_presets(void) {
  ct_topology t;
  ct_error err;
  CHECK(resolve("framework: ALLREDUCE", 4, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.mode == CT_DIST_ALLREDUCE && t.nworkers_per_group == 4 && t.nworker_groups == 1 && t.nprocs == 4,
        "allreduce: %d x %d on %d", t.nworker_groups, t.nworkers_per_group, t.nprocs);
  CHECK(resolve("framework: SANDBLASTER", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.mode == CT_DIST_SERVERS && t.nworkers_per_group == 2 && t.nservers_per_group == 2 && !t.separate &&
            t.nprocs == 2 && !strcmp(t.name, "SANDBLASTER"),
        "sandblaster: %d workers, %d servers, %d procs", t.nworkers_per_group, t.nservers_per_group, t.nprocs);
  CHECK(resolve("framework: DOWNPOUR", 3, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.mode == CT_DIST_SERVERS && t.nworker_groups == 2 && t.nservers_per_group == 1 && t.separate &&
            t.nprocs == 3 && !strcmp(t.name, "DOWNPOUR"),
        "downpour: %d groups, %d procs", t.nworker_groups, t.nprocs);
  CHECK(ct_topology_server_proc(&t, 0) == 2 && ct_topology_worker_proc(&t, 1) == 1, "downpour placement");
  CHECK(resolve("framework: HOGWILD cluster { sync_freq: 5 }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.mode == CT_DIST_HOGWILD && t.nworker_groups == 2 && t.sync_freq == 5 && t.nprocs == 2, "hogwild");
  /* explicit fields win over the preset and fix the process count */
  CHECK(resolve("framework: SANDBLASTER cluster { nworkers_per_group: 4 nservers_per_group: 2 "
                "server_worker_separate: true }", 1, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nprocs == 6 && t.worker_procs == 4 && t.server_procs == 2 && ct_topology_server_proc(&t, 1) == 5,
        "separate servers: %d procs", t.nprocs);
  /* SINGA's fields alone: the framework follows */
  CHECK(resolve("cluster { nworker_groups: 2 nserver_groups: 1 nservers_per_group: 1 }", 2, &t, &err) == CT_OK,
        "%s", err.msg);
  CHECK(t.mode == CT_DIST_SERVERS && !strcmp(t.name, "DOWNPOUR") && t.nprocs == 2, "cluster alone: %s", t.name);
  CHECK(resolve("cluster { nworker_groups: 2 nserver_groups: 2 }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.mode == CT_DIST_HOGWILD, "two server groups: Hogwild");
  /* a bare mpirun -np 3 is ALLREDUCE */
  CHECK(resolve("base_lr: 0.1", 3, &t, &err) == CT_OK && t.mode == CT_DIST_ALLREDUCE && t.nprocs == 3, "default");
  /* errors name the fields */
  CHECK(resolve("framework: ALLREDUCE cluster { nworker_groups: 2 }", 2, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "nworker_groups"), "%s", err.msg);
  CHECK(resolve("cluster { nworker_groups: 0 }", 2, &t, &err) == CT_EINVAL && strstr(err.msg, "nworker_groups"),
        "%s", err.msg);
  CHECK(resolve("cluster { nservers_per_group: 4 nworkers_per_group: 2 }", 2, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "server_worker_separate"), "%s", err.msg);
  char d[400];
  CHECK(resolve("framework: DOWNPOUR", 3, &t, &err) == CT_OK, "%s", err.msg);
  ct_topology_describe(&t, d, sizeof d);
  CHECK(strstr(d, "DOWNPOUR") && strstr(d, "3 processes"), "%s", d);
}

static void test_slices_and_shards(void) {
  size_t total = 431080, sum = 0, prev = 0;
  for (int k = 0; k < 3; k++) {
    size_t off, len;
    ct_topology_slice(total, 3, k, &off, &len);
    CHECK(off == prev && (len == total / 3 || len == total / 3 + 1), "slice %d: %zu+%zu", k, off, len);
    prev = off + len;
    sum += len;
  }
  CHECK(sum == total, "slices cover %zu of %zu", sum, total);
  ct_topology t;
  ct_error err;
  CHECK(resolve("cluster { nworker_groups: 2 nworkers_per_group: 3 nserver_groups: 1 }", 6, &t, &err) == CT_OK,
        "%s", err.msg);
  /* shards: a permutation of 0..5; group g reads positions p % 2 == g */
  int seen[6] = {0};
  for (int w = 0; w < 6; w++) {
    int s = ct_topology_shard(&t, w);
    CHECK(s >= 0 && s < 6 && s % 2 == w / 3, "worker %d shard %d", w, s);
    if (s >= 0 && s < 6) seen[s]++;
  }
  for (int s = 0; s < 6; s++) CHECK(seen[s] == 1, "shard %d used %d times", s, seen[s]);
  /* the group's members split the TRAIN net's batch; the TEST net's, which only rank 0 runs
   * whole, stays as it is even where it would not split */
  ProtobufCMessage *m = NULL;
  const char *net = "layer { name: \"d\" type: \"Data\" top: \"x\" include { phase: TRAIN } "
                    "idx_data_param { batch_size: 63 } } "
                    "layer { name: \"d\" type: \"Data\" top: \"x\" include { phase: TEST } "
                    "idx_data_param { batch_size: 100 } }";
  CHECK(ct_prototxt_parse(net, strlen(net), "net", &caffe__net_parameter__descriptor, &m, &err) == CT_OK, "%s", err.msg);
  if (m) {
    Caffe__NetParameter *np = (Caffe__NetParameter *)m;
    CHECK(ct_topology_split_batch(&t, np, "n.prototxt", 0, NULL, &err) == CT_OK &&
              np->layer[0]->idx_data_param->batch_size == 21 && np->layer[1]->idx_data_param->batch_size == 100,
          "63 / 3 = %u, TEST 100 kept: %u", np->layer[0]->idx_data_param->batch_size,
          np->layer[1]->idx_data_param->batch_size);
    np->layer[0]->idx_data_param->batch_size = 64;
    CHECK(ct_topology_split_batch(&t, np, "n.prototxt", 0, NULL, &err) == CT_EINVAL && strstr(err.msg, "n.prototxt") &&
              strstr(err.msg, "\"d\"") && strstr(err.msg, "phase TRAIN") && strstr(err.msg, "64"),
          "%s", err.msg);
    protobuf_c_message_free_unpacked(m, NULL);
  }
}

/* several workers per process: threads of one group, or whole groups (issue 5) */
static void test_workers_per_process(void) {
  ct_topology t;
  ct_error err;
  int first;
  /* ALLREDUCE and SANDBLASTER: 2 processes x 2 worker threads = one group of 4 */
  CHECK(resolve("framework: ALLREDUCE cluster { nworkers_per_procs: 2 }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nworkers_per_group == 4 && t.nprocs == 2 && ct_topology_ranks_per_group(&t) == 2 &&
            ct_topology_workers_on(&t, 1, &first) == 2 && first == 2,
        "allreduce 2x2: %d workers, %d procs", t.nworkers_per_group, t.nprocs);
  CHECK(resolve("framework: SANDBLASTER cluster { nworkers_per_procs: 2 }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nworkers_per_group == 4 && t.nservers_per_group == 4 && t.nservers_per_procs == 2 && t.nprocs == 2 &&
            ct_topology_servers_on(&t, 1, &first) == 2 && first == 2 && ct_topology_server_proc(&t, 3) == 1,
        "sandblaster 2x2: %d servers, %d per process, %d procs", t.nservers_per_group, t.nservers_per_procs, t.nprocs);
  /* ... in one process */
  CHECK(resolve("framework: SANDBLASTER cluster { nworkers_per_group: 2 nworkers_per_procs: 2 }", 1, &t, &err) == CT_OK,
        "%s", err.msg);
  CHECK(t.nprocs == 1 && ct_topology_workers_on(&t, 0, &first) == 2, "sandblaster in one process: %d", t.nprocs);
  /* ... with the servers on a process of their own */
  CHECK(resolve("framework: SANDBLASTER cluster { nworkers_per_group: 4 nworkers_per_procs: 2 nservers_per_group: 2 "
                "nservers_per_procs: 2 server_worker_separate: true }", 3, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nprocs == 3 && ct_topology_servers_on(&t, 2, &first) == 2 && ct_topology_servers_on(&t, 0, &first) == 0,
        "separate servers: %d procs", t.nprocs);
  /* DOWNPOUR and HOGWILD: whole groups as threads */
  CHECK(resolve("framework: DOWNPOUR cluster { nworkers_per_procs: 2 }", 3, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nworker_groups == 4 && t.nprocs == 3 && ct_topology_server_proc(&t, 0) == 2 &&
            ct_topology_worker_proc(&t, 3) == 1 && ct_topology_ranks_per_group(&t) == 1,
        "downpour 4 groups on 2 processes: %d groups, %d procs", t.nworker_groups, t.nprocs);
  CHECK(resolve("framework: DOWNPOUR cluster { nworker_groups: 4 nworkers_per_procs: 2 server_worker_separate: false }",
                2, &t, &err) == CT_OK && t.nprocs == 2 && ct_topology_server_proc(&t, 0) == 0,
        "downpour with the server on rank 0: %s", err.msg);
  CHECK(resolve("framework: HOGWILD cluster { nworkers_per_procs: 2 }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nworker_groups == 4 && t.nprocs == 2, "hogwild 4 groups on 2 processes: %d", t.nworker_groups);
  /* two groups of two threads on two processes: shards as in one process per worker */
  CHECK(resolve("framework: DOWNPOUR cluster { nworker_groups: 2 nworkers_per_group: 2 nworkers_per_procs: 2 "
                "server_worker_separate: false }", 2, &t, &err) == CT_OK, "%s", err.msg);
  CHECK(t.nprocs == 2 && ct_topology_workers_on(&t, 1, &first) == 2 && first == 2 &&
            ct_topology_shard(&t, 2) == 1 && ct_topology_shard(&t, 3) == 3,
        "2 groups x 2 threads: %d procs", t.nprocs);
  /* a process hosts whole groups or an equal share of one */
  CHECK(resolve("framework: SANDBLASTER cluster { nworkers_per_group: 2 nworkers_per_procs: 3 }", 1, &t, &err) ==
                CT_EUNSUPPORTED && strstr(err.msg, "nworkers_per_procs 3") && strstr(err.msg, "divide"),
        "%s", err.msg);
  CHECK(resolve("cluster { nworker_groups: 2 nworkers_per_group: 2 nworkers_per_procs: 4 nserver_groups: 2 }", 1, &t,
                &err) == CT_EUNSUPPORTED && strstr(err.msg, "one process"), "%s", err.msg);
  /* the old limit (several groups per process only when one process hosts them all) is gone */
  CHECK(resolve("framework: DOWNPOUR cluster { nworker_groups: 4 nworkers_per_procs: 3 }", 1, &t, &err) == CT_OK &&
            t.nprocs == 3 && t.worker_procs == 2 && ct_topology_workers_on(&t, 1, &first) == 1 && first == 3,
        "4 groups at 3 per process: %d processes", t.nprocs);
}

/* review fixes (issue 5): negative values and the framework a message names */
static void test_bad_values(void) {
  ct_topology t;
  ct_error err;
  static const char *const fields[] = {"nworker_groups", "nworkers_per_group", "nserver_groups",
                                       "nservers_per_group", "nworkers_per_procs", "nservers_per_procs", "sync_freq"};
  for (int i = 0; i < 7; i++) {
    char text[200];
    snprintf(text, sizeof text, "cluster { %s: -2 }", fields[i]);
    ct_status st = resolve(text, 2, &t, &err);
    CHECK(st == CT_EINVAL && strstr(err.msg, fields[i]) && strstr(err.msg, "-2"), "%s: %s", text, err.msg);
  }
  CHECK(resolve("framework: HOGWILD cluster { sync_freq: -1 }", 2, &t, &err) == CT_EINVAL && strstr(err.msg, "sync_freq"),
        "%s", err.msg);
  CHECK(resolve("cluster { nworkers_per_group: 0 }", 1, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "nworkers_per_group must be >= 1 (got 0)"), "%s", err.msg);
  /* the framework asked for is the one named, whatever the group count */
  CHECK(resolve("framework: SANDBLASTER cluster { nworker_groups: 2 nserver_groups: 0 }", 2, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "SANDBLASTER needs one server group") && !strstr(err.msg, "DOWNPOUR"), "%s", err.msg);
  CHECK(resolve("framework: DOWNPOUR cluster { nworker_groups: 1 nserver_groups: 2 }", 2, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "DOWNPOUR needs one server group") && !strstr(err.msg, "SANDBLASTER"), "%s", err.msg);
  CHECK(resolve("framework: DOWNPOUR cluster { nserver_groups: 0 }", 3, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "DOWNPOUR needs"), "%s", err.msg);
  /* without framework: SINGA's name for the groups */
  CHECK(resolve("cluster { nworker_groups: 2 nservers_per_group: 0 }", 2, &t, &err) == CT_EINVAL &&
            strstr(err.msg, "DOWNPOUR needs"), "%s", err.msg);
}

/* A cluster worker's feed reads its own blocks (issue 5): with a skip, batches come from every
 * third block of two records, the same with and without the prefetch thread, and the cursor
 * stays the whole-stream position after each batch. */
static void test_feed_skip(void) {
  enum { N = 40, BATCH = 2, WORKERS = 3 };
  float data[N], labels[N];
  for (int i = 0; i < N; i++) data[i] = labels[i] = (float)i;
  for (int depth = 0; depth <= 3; depth += 3) {
    ct_error err;
    ct_source *src = NULL;
    ct_feed *f = NULL;
    ct_transform tf;
    if (ct_source_open_memory(1, 1, 1, &src, &err) || ct_source_memory_set(src, data, labels, N, &err) ||
        ct_transform_init(&tf, NULL, true, 1, 1, 1, NULL, "feed", &err) ||
        ct_feed_create(src, &tf, BATCH, depth, "feed", &f, &err)) {
      CHECK(0, "feed setup: %s", err.msg);
      return;
    }
    ct_feed_set_skip(f, (WORKERS - 1) * BATCH);
    ct_rng rng;
    ct_rng_seed(&rng, 7);
    uint64_t cursor = 1 * BATCH; /* worker 1 of 3 */
    for (int b = 0; b < 8; b++) {
      float x[BATCH], y[BATCH];
      uint64_t first = (uint64_t)(1 + WORKERS * b) * BATCH;
      CHECK(ct_feed_next(f, x, y, &rng, &cursor, &err) == CT_OK, "%s", err.msg);
      uint64_t want0 = first % N, want1 = (first + 1) % N;
      CHECK(y[0] == (float)want0 && y[1] == (float)want1 && x[1] == (float)want1,
            "depth %d batch %d: records %g %g, want %llu %llu", depth, b, y[0], y[1], (unsigned long long)want0,
            (unsigned long long)want1);
      CHECK(cursor == first + WORKERS * BATCH, "depth %d batch %d: cursor %llu", depth, b, (unsigned long long)cursor);
    }
    ct_feed_free(f);
  }
}


/* The job digest (issue 24): solvers that differ in one field are told apart and the field is
 * named, including a field of the cluster message; a cluster message given empty differs from
 * none (it changes the framework); nets are compared whole; another version is named first. */
static void digest_of(const char *text, ct_digest *d) {
  Caffe__SolverParameter *sp = solver(text);
  ct_digest_init(d);
  if (sp) ct_digest_solver(d, sp);
  if (sp) protobuf_c_message_free_unpacked(&sp->base, NULL);
}

static void test_digest(void) {
  const char *base = "net: \"n.prototxt\" base_lr: 0.01 max_iter: 100 framework: SANDBLASTER "
                     "cluster { nworkers_per_group: 2 }";
  ct_digest a, b;
  char what[512];
  digest_of(base, &a);
  digest_of(base, &b);
  CHECK(a.nfields > 44 && !ct_digest_compare(&a, &b, what, sizeof what) && what[0] == 0,
        "the same solver: %d fields, '%s'", a.nfields, what);
  static const struct {
    const char *text, *field;
  } cases[] = {
      {"net: \"n.prototxt\" base_lr: 0.02 max_iter: 100 framework: SANDBLASTER cluster { nworkers_per_group: 2 }",
       "the solver's base_lr"},
      {"net: \"n.prototxt\" base_lr: 0.01 max_iter: 200 framework: SANDBLASTER cluster { nworkers_per_group: 2 }",
       "the solver's max_iter"},
      {"net: \"n.prototxt\" base_lr: 0.01 max_iter: 100 framework: DOWNPOUR cluster { nworkers_per_group: 2 }",
       "the solver's framework"},
      {"net: \"n.prototxt\" base_lr: 0.01 max_iter: 100 framework: SANDBLASTER cluster { nworkers_per_group: 4 }",
       "the solver's cluster.nworkers_per_group"},
      {"net: \"n.prototxt\" base_lr: 0.01 max_iter: 100 framework: SANDBLASTER", "the solver's cluster,"},
      {"net: \"m.prototxt\" base_lr: 0.01 max_iter: 100 framework: SANDBLASTER cluster { nworkers_per_group: 2 }",
       "the solver's net"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    digest_of(cases[i].text, &b);
    bool differs = ct_digest_compare(&a, &b, what, sizeof what);
    CHECK(differs && strstr(what, cases[i].field) == what, "case %zu: '%s', want it to start with '%s'", i, what,
          cases[i].field);
  }
  /* several fields: all named */
  digest_of("net: \"n.prototxt\" base_lr: 0.5 max_iter: 7 framework: SANDBLASTER cluster { nworkers_per_group: 2 }",
            &b);
  CHECK(ct_digest_compare(&a, &b, what, sizeof what) && strstr(what, "base_lr") && strstr(what, "max_iter"), "%s",
        what);
  /* nets: equal text, equal digest; one layer changed, "the train net" / "test net #0" */
  const char *n1 = "layer { name: \"ip\" type: \"InnerProduct\" inner_product_param { num_output: 10 } }";
  const char *n2 = "layer { name: \"ip\" type: \"InnerProduct\" inner_product_param { num_output: 11 } }";
  ProtobufCMessage *m1 = NULL, *m2 = NULL;
  ct_error err;
  CHECK(ct_prototxt_parse(n1, strlen(n1), "n1", &caffe__net_parameter__descriptor, &m1, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_prototxt_parse(n2, strlen(n2), "n2", &caffe__net_parameter__descriptor, &m2, &err) == CT_OK, "%s", err.msg);
  if (m1 && m2) {
    digest_of(base, &b);
    ct_digest_net(&a, 0, (Caffe__NetParameter *)m1);
    ct_digest_net(&b, 0, (Caffe__NetParameter *)m1);
    ct_digest_net(&a, 1, (Caffe__NetParameter *)m1);
    ct_digest_net(&b, 1, (Caffe__NetParameter *)m2);
    CHECK(ct_digest_compare(&a, &b, what, sizeof what) && !strcmp(what, "test net #0"), "'%s'", what);
    ct_digest_net(&b, 0, (Caffe__NetParameter *)m2);
    CHECK(ct_digest_compare(&a, &b, what, sizeof what) && !strcmp(what, "the train net; test net #0"), "'%s'", what);
    /* a side that could not read a net is not compared on it (its failure is the news) */
    b.net[0] = 0, b.net[1] = 0;
    CHECK(!ct_digest_compare(&a, &b, what, sizeof what), "'%s'", what);
  }
  protobuf_c_message_free_unpacked(m1, NULL);
  protobuf_c_message_free_unpacked(m2, NULL);
  digest_of(base, &b);
  snprintf(b.version, sizeof b.version, "9.9.9 schema 00000000");
  CHECK(ct_digest_compare(&a, &b, what, sizeof what) && strstr(what, "9.9.9") && !strstr(what, "base_lr"), "%s", what);
  char name[96];
  CHECK(!strcmp(ct_digest_field_name(0, name, sizeof name), caffe__solver_parameter__descriptor.fields[0].name),
        "field 0 is '%s'", name);
}

/* The verdict over the start-up records: silence first, then another job, then failures, each
 * naming the ranks; every rank ready for the same job is CT_OK. */
static void test_verdict(void) {
  enum { W = 4 };
  ct_startup_rec rec[W];
  const ct_startup_rec *recs[W];
  ct_digest d;
  digest_of("net: \"n.prototxt\" base_lr: 0.01", &d);
  char msg[1024];
  for (int r = 0; r < W; r++) ct_startup_rec_fill(&rec[r], r, CT_OK, NULL, &d), recs[r] = &rec[r];
  CHECK(ct_startup_verdict(recs, W, 5, msg, sizeof msg) == CT_OK && !msg[0], "all ready: '%s'", msg);
  /* failures: the lowest first, each distinct message once */
  ct_error e1, e2;
  ct_fail(&e1, CT_EIO, "data.idx: cannot open");
  ct_fail(&e2, CT_EINVAL, "bad layer");
  ct_startup_rec_fill(&rec[1], 1, CT_EIO, &e1, &d);
  ct_startup_rec_fill(&rec[3], 3, CT_EIO, &e1, &d);
  ct_startup_rec_fill(&rec[2], 2, CT_EINVAL, &e2, &d);
  CHECK(ct_startup_verdict(recs, W, 5, msg, sizeof msg) == CT_EIO &&
            !strcmp(msg, "start-up failed on ranks 1 and 3: data.idx: cannot open; on rank 2: bad layer"),
        "'%s'", msg);
  for (int r = 0; r < W; r++) ct_startup_rec_fill(&rec[r], r, CT_EINVAL, &e2, &d);
  CHECK(ct_startup_verdict(recs, W, 5, msg, sizeof msg) == CT_EINVAL &&
            !strcmp(msg, "start-up failed on every rank: bad layer"), "'%s'", msg);
  /* another job wins over the failures it causes */
  ct_digest other;
  digest_of("net: \"n.prototxt\" base_lr: 0.02", &other);
  for (int r = 0; r < W; r++) ct_startup_rec_fill(&rec[r], r, CT_OK, NULL, &d);
  ct_startup_rec_fill(&rec[2], 2, CT_EINVAL, &e2, &other);
  CHECK(ct_startup_verdict(recs, W, 5, msg, sizeof msg) == CT_EINVAL && strstr(msg, "rank 2 reads another job") &&
            strstr(msg, "base_lr"), "'%s'", msg);
  ct_startup_rec_fill(&rec[3], 3, CT_OK, NULL, &other);
  CHECK(ct_startup_verdict(recs, W, 5, msg, sizeof msg) == CT_EINVAL && strstr(msg, "ranks 2 and 3 read another job"),
        "'%s'", msg);
  /* silence wins over everything: nothing else is known about a silent rank */
  recs[1] = NULL;
  recs[3] = NULL;
  CHECK(ct_startup_verdict(recs, W, 7, msg, sizeof msg) == CT_EIO &&
            strstr(msg, "ranks 1 and 3 did not reach the start of training within 7 s"), "'%s'", msg);
}

/* A server-only process's train net (issue 24): rank 0's data layers described as Input layers
 * give a net without data whose learnable parameters have the same layout; TEST-phase layers
 * of the same name are left alone. */
static void test_stand_ins(void) {
  const char *text =
      "layer { name: \"d\" type: \"MemoryData\" top: \"x\" top: \"y\" include { phase: TRAIN } "
      "  memory_data_param { batch_size: 4 channels: 2 height: 3 width: 3 } }\n"
      "layer { name: \"d\" type: \"MemoryData\" top: \"x\" top: \"y\" include { phase: TEST } "
      "  memory_data_param { batch_size: 5 channels: 2 height: 3 width: 3 } }\n"
      "layer { name: \"c\" type: \"Convolution\" bottom: \"x\" top: \"c\" "
      "  convolution_param { num_output: 3 kernel_size: 2 weight_filler { type: \"xavier\" } } }\n"
      "layer { name: \"ip\" type: \"InnerProduct\" bottom: \"c\" top: \"ip\" "
      "  inner_product_param { num_output: 5 weight_filler { type: \"xavier\" } } }\n"
      "layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"ip\" bottom: \"y\" top: \"loss\" }\n";
  ct_net *with_data = NULL, *without = NULL;
  ct_error err;
  ProtobufCMessage *m = NULL;
  CHECK(ct_net_create_from_text(text, "net", "", CT_TRAIN, &with_data, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_prototxt_parse(text, strlen(text), "net", &caffe__net_parameter__descriptor, &m, &err) == CT_OK, "%s",
        err.msg);
  if (!with_data || !m) return;
  char *si = ct_dist_stand_ins(with_data);
  CHECK(si && strstr(si, "type: \"Input\"") && strstr(si, "dim: 4 dim: 2 dim: 3 dim: 3") && strstr(si, "dim: 4 }"),
        "stand-ins: %s", si ? si : "(null)");
  Caffe__NetParameter *np = (Caffe__NetParameter *)m;
  CHECK(si && ct_dist_use_stand_ins(np, si, 0, NULL, &err) == CT_OK, "%s", err.msg);
  CHECK(!strcmp(np->layer[0]->type, "Input") && np->layer[0]->n_top == 2 && !strcmp(np->layer[0]->top[1], "y") &&
            !strcmp(np->layer[1]->type, "MemoryData"),
        "layer 0 %s with %zu tops, layer 1 %s", np->layer[0]->type, np->layer[0]->n_top, np->layer[1]->type);
  CHECK(ct_net_create_from_param(np, "net", "", CT_TRAIN, 0, NULL, 1701, &without, &err) == CT_OK, "%s", err.msg);
  if (without) {
    int n = ct_net_num_learnable(with_data);
    bool same = n == ct_net_num_learnable(without) && ct_net_param_total(with_data) == ct_net_param_total(without);
    size_t counted = 0;
    for (int i = 0; same && i < n; i++) {
      same = ct_net_learnable(with_data)[i].offset == ct_net_learnable(without)[i].offset &&
             ct_net_learnable(with_data)[i].count == ct_net_learnable(without)[i].count;
      counted += ct_net_learnable(without)[i].count;
    }
    /* conv 3x2x2x2 + 3, ip 5x(3x2x2) + 5: the shapes follow the stand-in's 2x3x3 input */
    CHECK(same && n == 4 && counted == 3 * 2 * 2 * 2 + 3 + 5 * 3 * 2 * 2 + 5, "layouts: %d params, %zu floats", n,
          counted);
    bool has_data = false;
    for (int i = 0; i < ct_net_num_layers(without); i++) has_data |= !strcmp(ct_net_layer_type(without, i), "MemoryData");
    CHECK(!has_data, "the server's net still has a data layer");
  }
  free(si);
  ct_net_free(with_data);
  ct_net_free(without);
  protobuf_c_message_free_unpacked(m, NULL);
}


/* What the log calls a cluster (issue 24): groups that are threads of one process share one copy
 * of the parameters, so they are HOGWILD whatever was asked (and the log says what was); explicit
 * server fields under ALLREDUCE, which has no servers, are named as ignored. */
static void test_labels(void) {
  static const struct {
    const char *text, *want, *not;
  } cases[] = {
      {"framework: HOGWILD cluster { nworkers_per_procs: 2 }", "HOGWILD in one process: 2 worker groups", "DOWNPOUR"},
      {"cluster { nworker_groups: 2 nworkers_per_procs: 2 }", "HOGWILD in one process: 2 worker groups", "DOWNPOUR:"},
      {"framework: DOWNPOUR cluster { nworker_groups: 2 nworkers_per_procs: 2 server_worker_separate: false }",
       "(DOWNPOUR runs so when its groups share a process)", "DOWNPOUR:"},
      {"framework: ALLREDUCE cluster { nservers_per_group: 2 server_worker_separate: true }",
       "ALLREDUCE has no servers and ignores nservers_per_group, server_worker_separate", NULL},
      {"framework: ALLREDUCE cluster { nworkers_per_group: 2 nworkers_per_procs: 2 }", "ALLREDUCE: 1 worker group",
       "ignores"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Caffe__SolverParameter *sp = solver(cases[i].text);
    ct_cluster *c = NULL;
    ct_error err;
    CHECK(sp && ct_cluster_create(sp, "s.prototxt", &c, &err) == CT_OK && c, "case %zu: %s", i, err.msg);
    if (c) {
      const char *d = ct_cluster_describe(c);
      CHECK(strstr(d, cases[i].want) && (!cases[i].not || !strstr(d, cases[i].not)), "case %zu: '%s'", i, d);
      /* several workers in the process: OpenBLAS single-threaded, the cores split among them */
      long cores = sysconf(_SC_NPROCESSORS_ONLN);
      int workers = i == 3 ? 1 : 2, share = (int)(cores / workers) > 1 ? (int)(cores / workers) : 1;
      CHECK(ct_cluster_local_partitions(c) == (share > 64 ? 64 : share) &&
                ct_cluster_blas_threads(c) == (workers > 1 ? 1 : ct_cluster_local_partitions(c)),
            "case %zu: %d partitions, %d OpenBLAS threads on %ld cores", i, ct_cluster_local_partitions(c),
            ct_cluster_blas_threads(c), cores);
    }
    ct_cluster_free(c);
    if (sp) protobuf_c_message_free_unpacked(&sp->base, NULL);
  }
}

static int compare(const char *model, const char *a, const char *b, double rtol) {
  ct_net *na = NULL, *nb = NULL;
  ct_error err;
  if (ct_net_create(model, CT_TEST, 0, NULL, a, &na, &err) || ct_net_create(model, CT_TEST, 0, NULL, b, &nb, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 2;
  }
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < ct_net_num_layers(na); i++) {
    const char *name = ct_net_layer_name(na, i);
    for (int k = 0; k < ct_net_param_count(na, name); k++) {
      int shape[8], n = ct_net_param_shape(na, name, k, shape);
      size_t c = 1;
      for (int d = 0; d < n; d++) c *= (size_t)shape[d];
      const float *x = ct_net_param_data(na, name, k), *y = ct_net_param_data(nb, name, k);
      double dmax = 0, ymax = 1e-12;
      for (size_t e = 0; e < c; e++) {
        double dd = fabs((double)x[e] - y[e]);
        if (dd > dmax || dd != dd) dmax = dd != dd ? INFINITY : dd;
        if (fabs(y[e]) > ymax) ymax = fabs(y[e]);
      }
      if (dmax / ymax > worst || dmax != dmax) worst = dmax / ymax, worst_name = name;
    }
  }
  printf("largest relative difference: %.3g (layer %s); tolerance %.3g\n", worst, worst_name, rtol);
  ct_net_free(na);
  ct_net_free(nb);
  return worst <= rtol ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "cmp")) return compare(argv[2], argv[3], argv[4], atof(argv[5]));
  test_presets();
  test_slices_and_shards();
  test_workers_per_process();
  test_bad_values();
  test_feed_skip();
  test_digest();
  test_verdict();
  test_stand_ins();
  test_labels();
  return ct_check_report();
}
