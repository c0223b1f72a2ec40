/* Issue 19 across processes: the transitions net on 4 workers spread over the ranks of an
 * mpirun job (worker w on rank w mod world; sh_mpi_partition.sh runs it on 2 and 4 ranks).
 * Every rank builds the same net, runs its workers' layers and passes the bridges between
 * ranks as MPI messages; the loss (on rank 0, which runs the loss layer) and every parameter
 * gradient (summed over the ranks) equal the unpartitioned net's, computed on each rank alone.
 * Run outside mpirun it says so and passes: the check needs a job of several processes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
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
  return net;
}

static void fill_inputs(ct_net *net) {
  float *x = ct_net_blob_data(net, "data"), *y = ct_net_blob_data(net, "label");
  for (int k = 0; k < 4 * 3 * 6 * 6; k++) x[k] = (float)cos(0.29 * k) * 1.5f;
  for (int k = 0; k < 4; k++) y[k] = (float)((k * 2 + 1) % 5);
}

#ifdef CT_HAVE_MPI
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
  char ref_text[8192], part_text[8192], path[64];
  transitions_net(ref_text, sizeof ref_text, 4, false);
  transitions_net(part_text, sizeof part_text, 4, true);
  ct_error err;
  ct_net *ref = make(ref_text, &err);
  CHECK(ref, "reference: %s", err.msg);
  ct_net *part = make(part_text, &err);
  CHECK(part, "partitioned: %s", err.msg);
  ct_dist_part *dp = NULL;
  if (!ref || !part) goto done;
  CHECK(ct_dist_part_create(part, &dp, &err) == CT_OK, "%s", err.msg);
  if (!dp) goto done;
  snprintf(path, sizeof path, "/tmp/ct_partmpi_%d_%d.caffemodel", (int)getpid(), rank);
  CHECK(ct_net_save_weights(ref, path, &err) == CT_OK && ct_net_load_weights(part, path, &err) == CT_OK, "%s",
        err.msg);
  unlink(path);
  int local = 0, remote = 0;
  for (int i = 0; i < ct_net_num_layers(part); i++) ct_net_layer_local(part, i) ? local++ : remote++;
  CHECK(local > 0 && remote > 0, "rank %d runs %d layers, the others %d", rank, local, remote);
  fill_inputs(ref);
  fill_inputs(part);
  for (int pass = 0; pass < 2; pass++) { /* a second pass reuses the bridges' buffers */
    float lr = 0, lp = 0;
    ct_net_clear_param_diffs(ref);
    ct_net_clear_param_diffs(part);
    CHECK(ct_net_forward(ref, &lr, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_net_forward(part, &lp, &err) == CT_OK, "rank %d: %s", rank, err.msg);
    if (rank == 0) CHECK(fabs(lr - lp) <= 1e-5 * (1 + fabs(lr)), "loss %.8g vs %.8g", lp, lr);
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
    CHECK(norm > 0 && worst <= 1e-5, "rank %d of %d, pass %d: gradients differ by %g", rank, world, pass, worst);
    if (rank == 0 && pass == 0) printf("%d ranks: loss %.6g, gradients within %.2g\n", world, lp, worst);
  }
done:
  ct_dist_part_free(dp, part);
  ct_net_free(part);
  ct_net_free(ref);
  int rc = ct_check_report();
  ct_dist_mpi_finalize();
  return rc;
#endif
}
