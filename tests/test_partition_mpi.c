/* Issue 19 across processes: the transitions net on 4 workers spread over the ranks of an
 * mpirun job (worker w on rank w mod world; sh_mpi_partition.sh runs it on 2, 3 and 4 ranks).
 * Every rank builds the same net, runs its workers' layers, runs the dim-0 layers over its
 * slice of the batch, and passes the bridges between ranks as MPI messages; the loss (on rank
 * 0, which runs the loss layer), every blob this rank wrote last (its rows of a batch-sliced
 * layer's, the whole of its whole layers') and every parameter gradient (summed over the
 * ranks) equal the unpartitioned net's, computed on each rank alone. A second net has a batch
 * of 7 (unequal slices on 2, 3 and 4 ranks) and a dim-1 -> dim-0 transition into a sliced
 * InnerProduct. Run outside mpirun it says so and passes: the check needs several processes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "core/tensor.h"
#include "layers/layer.h"
#include "net/net.h"
#include "partition_nets.h"
#ifdef CT_HAVE_MPI
#include "dist/cluster.h"
#include "dist/part.h"
#endif

static ct_net *make(const char *text, ct_error *err) {
  ct_net *net = NULL;
  memset(err, 0, sizeof *err);
  ct_net_create_from_text(text, "p.prototxt", NULL, CT_TRAIN, &net, err);
  /* every blob stays readable after a pass (planning would give the reference's p0 and cat2 of
   * the wide net one storage) */
  if (net && ct_net_set_memplan(net, false, err)) {
    ct_net_free(net);
    return NULL;
  }
  return net;
}

static void fill_inputs(ct_net *net) {
  float *x = ct_net_blob_data(net, "data"), *y = ct_net_blob_data(net, "label");
  int shape[8];
  ct_net_blob_shape(net, "data", shape);
  const int n = shape[0], inner = shape[1] * shape[2] * shape[3];
  for (int k = 0; k < n * inner; k++) x[k] = (float)cos(0.29 * k) * 1.5f;
  for (int k = 0; k < n; k++) y[k] = (float)((k * 2 + 1) % 5);
}

/* Batch 7 (slices 3, 4 on 2 ranks; 2, 2, 3 on 3; 1, 2, 2, 2 on 4): a sliced conv, ReLU and
 * pooling, conv2 on dim 1 over the 4 workers, joined for ip1, a whole dim-0 InnerProduct that
 * runs sliced too, then the loss on rank 0. */
static void unequal_net(char *buf, size_t n, bool parted) {
  const char *d1 = parted ? "partition_dim: 1" : "";
  snprintf(buf, n,
           "name: 'u'\n%s\n"
           "layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape { dim: 7 dim: 2 dim: 7 "
           "dim: 7 } shape { dim: 7 } } }\n"
           "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 5 "
           "kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
           "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX "
           "kernel_size: 2 stride: 2 } }\n"
           "layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2' %s convolution_param { "
           "num_output: 6 kernel_size: 2 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: "
           "'gaussian' std: 0.1 } } }\n"
           "layer { name: 'relu2' type: 'ReLU' bottom: 'conv2' top: 'conv2' %s }\n"
           "layer { name: 'ip1' type: 'InnerProduct' bottom: 'conv2' top: 'ip1' inner_product_param { num_output: 5 "
           "weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip1' bottom: 'label' top: 'loss' }\n",
           parted ? "partition_workers: 4" : "", d1, d1);
}

#ifdef CT_HAVE_MPI
/* Bridge tags: q and then p0 .. p39 (InnerProducts of 3 outputs) on worker 1, the Concat of
 * the p's on worker 0, right after it a Concat of q and that one, then the loss. Tags of the
 * form layer x 32 + bottom gave the first Concat's bottom 32 and the next layer's bottom 0 one
 * tag; worker 1 sends q first, so the first Concat took q's values for p32's: a silent wrong
 * result (equal sizes). Returns a malloc'ed text. */
static char *wide_net(bool parted) {
  const size_t cap = 64 * 1024;
  char *buf = malloc(cap), *at = buf;
  if (!buf) return NULL;
  const char *w1 = parted ? "location: 1" : "", *ip = "type: 'InnerProduct' bottom: 'data'",
             *fill = "inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.5 } bias_filler { "
                     "type: 'gaussian' std: 0.2 } }";
  at += sprintf(at, "name: 'wide'\n%s\nlayer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape "
                "{ dim: 4 dim: 6 dim: 1 dim: 1 } shape { dim: 4 } } }\nlayer { name: 'q' %s top: 'q' %s %s }\n",
                parted ? "partition_workers: 2" : "", ip, w1, fill);
  for (int j = 0; j < 40; j++) at += sprintf(at, "layer { name: 'p%d' %s top: 'p%d' %s %s }\n", j, ip, j, w1, fill);
  at += sprintf(at, "layer { name: 'cat' type: 'Concat' ");
  for (int j = 0; j < 40; j++) at += sprintf(at, "bottom: 'p%d' ", j);
  sprintf(at, "top: 'cat' }\nlayer { name: 'cat2' type: 'Concat' bottom: 'q' bottom: 'cat' top: 'cat2' }\n"
          "layer { name: 'out' type: 'InnerProduct' bottom: 'cat2' top: 'out' inner_product_param { num_output: 5 "
          "weight_filler { type: 'gaussian' std: 0.3 } } }\n"
          "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'out' bottom: 'label' top: 'loss' }\n");
  return buf;
}

/* More than 1024 layers alternating between workers 0 and 1, every edge a bridge: tags of the
 * form layer x 32 + bottom pass 32767, the least MPI_TAG_UB the MPI standard allows (Open
 * MPI's is larger, so here this checks only that a long net runs right). */
static char *long_net(bool parted) {
  const int L = 1100;
  const size_t cap = (size_t)L * 160 + 4096;
  char *buf = malloc(cap), *at = buf;
  if (!buf) return NULL;
  at += sprintf(at, "name: 'long'\n%s\nlayer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape "
                "{ dim: 4 dim: 6 dim: 1 dim: 1 } shape { dim: 4 } } }\nlayer { name: 'ip0' type: 'InnerProduct' bottom: 'data' top: "
                "'h0' inner_product_param { num_output: 5 weight_filler { type: 'gaussian' std: 0.5 } } }\n",
                parted ? "partition_workers: 2" : "");
  for (int j = 1; j <= L; j++)
    at += sprintf(at, "layer { name: 'pw%d' type: 'Power' bottom: 'h%d' top: 'h%d' %s power_param { scale: 0.999 "
                  "shift: 0.001 } }\n", j, j - 1, j, parted ? (j % 2 ? "location: 1" : "location: 0") : "");
  sprintf(at, "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'h%d' bottom: 'label' top: 'loss' }\n", L);
  return buf;
}

/* Servers' slices of a partitioned net end where a shard ends (no MPI needed). The boundaries:
 * a conv's 900 weights and 12 biases, an InnerProduct's 30x3072 weights in shards of 8, 8, 7, 7
 * rows and its 30 biases in the same shards, a pinned layer's 300 + 10. */
static void test_cuts(void) {
  const size_t want_b[] = {0, 900, 912, 25488, 50064, 71568, 93072, 93080, 93088, 93095, 93102, 93402, 93412};
  const size_t nb = sizeof want_b / sizeof *want_b;
  size_t b[2 * sizeof want_b / sizeof *want_b], cut[4];
  /* given shuffled and twice over, as a net's ranges come (each end is the next one's start) */
  for (size_t i = 0; i < nb; i++) b[i] = want_b[nb - 1 - i], b[nb + i] = want_b[i];
  CHECK(ct_dist_cuts_at(b, 2 * nb, 93412, 2, cut), "2 servers");
  /* half is 46706: the shard boundary nearest to it is 50064 (shards 0, 1 | 2, 3) */
  CHECK(cut[0] == 0 && cut[1] == 50064 && cut[2] == 93412, "2 servers: %zu %zu %zu", cut[0], cut[1], cut[2]);
  for (size_t i = 0; i < nb; i++) b[i] = want_b[i];
  CHECK(ct_dist_cuts_at(b, nb, 93412, 3, cut), "3 servers");
  /* thirds 31137, 62275: nearest boundaries 25488 and 71568 */
  CHECK(cut[1] == 25488 && cut[2] == 71568 && cut[3] == 93412, "3 servers: %zu %zu", cut[1], cut[2]);
  size_t few[] = {0, 10, 20};
  CHECK(!ct_dist_cuts_at(few, 3, 20, 3, cut), "2 units cannot feed 3 servers");
}
#endif

#ifdef CT_HAVE_MPI
/* Every blob of ref that part has in the same shape and whose last writer runs here: its rows
 * (a batch-sliced writer) or all of it (a whole one) against ref's. Returns the values compared
 * and the worst relative difference through *worst. */
static size_t compare_blobs(ct_net *ref, ct_net *part, int rank, int world, double *worst) {
  size_t compared = 0;
  const char *name;
  for (int b = 0; (name = ct_net_blob_name(ref, b)); b++) {
    ct_tensor *t = ct_net_blob_tensor(part, name), *u = ct_net_blob_tensor(ref, name);
    if (!t || !u || t->count != u->count || !t->naxes) continue;
    int w = -1;
    for (int i = 0; i < ct_net_num_layers(part); i++)
      for (int k = 0; k < ct_net_layer(part, i)->ntop; k++)
        if (ct_net_layer(part, i)->top[k] == t) w = i;
    if (w < 0) continue;
    size_t n0 = 0, n1 = (size_t)t->shape[0];
    if (ct_net_layer_batch(part, w)) { /* rows N r / W .. N (r + 1) / W, written out here */
      n0 = (size_t)t->shape[0] * (size_t)rank / (size_t)world;
      n1 = (size_t)t->shape[0] * (size_t)(rank + 1) / (size_t)world;
    } else if (!ct_net_layer_local(part, w)) {
      continue;
    }
    const float *a = ct_net_blob_data(part, name), *e = ct_net_blob_data(ref, name);
    const size_t inner = t->count / (size_t)t->shape[0];
    for (size_t k = n0 * inner; k < n1 * inner; k++) {
      double d = fabs((double)a[k] - e[k]) / (1 + fabs((double)e[k]));
      if (d > *worst) *worst = d;
      compared++;
    }
  }
  return compared;
}

/* strict: every rank runs layers of its own and at least 3 over batch slices (the transitions
 * nets); else only ranks 0 and 1 need to compare anything (nets pinned to workers 0 and 1). */
static void check_net(const char *what, const char *ref_text, const char *part_text, int rank, int world,
                      bool strict) {
  char path[64];
  ct_error err;
  ct_net *ref = make(ref_text, &err);
  CHECK(ref, "%s reference: %s", what, err.msg);
  ct_net *part = make(part_text, &err);
  CHECK(part, "%s partitioned: %s", what, err.msg);
  ct_dist_part *dp = NULL;
  if (!ref || !part) goto done;
  CHECK(ct_dist_part_create(part, &dp, &err) == CT_OK, "%s", err.msg);
  if (!dp) goto done;
  snprintf(path, sizeof path, "/tmp/ct_partmpi_%d_%d.caffemodel", (int)getpid(), rank);
  CHECK(ct_net_save_weights(ref, path, &err) == CT_OK && ct_net_load_weights(part, path, &err) == CT_OK, "%s",
        err.msg);
  unlink(path);
  int local = 0, remote = 0, batch = 0;
  for (int i = 0; i < ct_net_num_layers(part); i++) {
    ct_net_layer_local(part, i) ? local++ : remote++;
    batch += ct_net_layer_batch(part, i);
  }
  CHECK(!strict || (local > 0 && remote > 0), "%s: rank %d runs %d layers, the others %d", what, rank, local, remote);
  /* conv1, relu1 and the connections next to them at least run over the ranks' slices */
  CHECK(!strict || batch >= 3, "%s: only %d layers run over batch slices", what, batch);
  fill_inputs(ref);
  fill_inputs(part);
  for (int pass = 0; pass < 2; pass++) { /* a second pass reuses the bridges' buffers */
    float lr = 0, lp = 0;
    ct_net_clear_param_diffs(ref);
    ct_net_clear_param_diffs(part);
    CHECK(ct_net_forward(ref, &lr, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_net_forward(part, &lp, &err) == CT_OK, "rank %d: %s", rank, err.msg);
    if (rank == 0) CHECK(fabs(lr - lp) <= 1e-5 * (1 + fabs(lr)), "%s: loss %.8g vs %.8g", what, lp, lr);
    double fworst = 0;
    size_t compared = compare_blobs(ref, part, rank, world, &fworst);
    CHECK((compared > 0 || (!strict && rank > 1)) && fworst <= 1e-5, "%s: rank %d of %d, pass %d: %zu forward values, within %g", what, rank,
          world, pass, compared, fworst);
    CHECK(ct_net_backward(ref, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_net_backward(part, &err) == CT_OK, "rank %d: %s", rank, err.msg);
    CHECK(ct_dist_part_reduce(dp, part, &err) == CT_OK, "%s", err.msg);
    const float *a = ct_net_diff_buffer(part), *b = ct_net_diff_buffer(ref);
    double worst = 0, norm = 0;
    for (size_t k = 0; k < ct_net_param_total(ref); k++) {
      double d = fabs((double)a[k] - b[k]) / (1 + fabs((double)b[k]));
      if (d > worst) worst = d;
      norm += fabs((double)b[k]);
    }
    CHECK(norm > 0 && worst <= 1e-5, "%s: rank %d of %d, pass %d: gradients differ by %g", what, rank, world, pass,
          worst);
    if (rank == 0 && pass == 0)
      printf("%s, %d ranks: loss %.6g, %d layers over batch slices, forward within %.2g, gradients within %.2g\n", what,
             world, lp, batch, fworst, worst);
  }
done:
  ct_dist_part_free(dp, part);
  ct_net_free(part);
  ct_net_free(ref);
}
#endif

int main(void) {
#ifdef CT_HAVE_MPI
  test_cuts();
#endif
#ifndef CT_HAVE_MPI
  printf("SKIPPED: built without MPI\n");
  return 0;
#else
  int world = 1, rank = 0;
  if (!ct_dist_launched(&world, &rank) || world < 2) {
    printf("SKIPPED (the ranks part): run by sh_mpi_partition.sh under mpirun with several processes\n");
    return ct_check_report();
  }
  char ref_text[8192], part_text[8192];
  transitions_net(ref_text, sizeof ref_text, 4, false);
  transitions_net(part_text, sizeof part_text, 4, true);
  check_net("transitions", ref_text, part_text, rank, world, true);
  unequal_net(ref_text, sizeof ref_text, false);
  unequal_net(part_text, sizeof part_text, true);
  check_net("batch 7", ref_text, part_text, rank, world, true);
  char *(*const gen[2])(bool) = {wide_net, long_net};
  const char *names[2] = {"40 bottoms", "1100 layers"};
  for (int k = 0; k < 2; k++) {
    char *r = gen[k](false), *p = gen[k](true);
    CHECK(r && p, "out of memory");
    if (r && p) check_net(names[k], r, p, rank, world, false);
    free(r), free(p);
  }
  int rc = ct_check_report();
  ct_dist_mpi_finalize();
  return rc;
#endif
}
