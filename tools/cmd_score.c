/* cortado test and cortado time: Caffe's `caffe test` and `caffe time`. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "cli.h"
#include "cmd_data.h"
#include "cmd_place.h"
#include "net/net.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ------------------------------------------------------------------ test */

/* Element count of a blob, or -1 when the net does not know it. */
static long blob_count(const ct_net *net, const char *name) {
  int shape[8];
  int naxes = ct_net_blob_shape(net, name, shape);
  if (naxes < 0) return -1;
  long count = 1;
  for (int i = 0; i < naxes; i++) count *= shape[i];
  return count;
}

/* Caffe's "Ignoring source layer ..." and the weights warnings, as log lines. */
static void weights_note(void *ctx, const char *line) {
  (void)ctx;
  logf_("%s", line);
}

int run_test(args *a) {
  ct_net *net = NULL;
  ct_error err = {0};
  double *sums = NULL; /* per output element, summed over batches */
  long *counts = NULL; /* per output, its element count at batch 0 */
  int rc = EXIT_OK, nout = 0;
  double loss = 0;
  ct_status s;

  if ((rc = check_readable("model", a->value[F_MODEL]))) return rc;
  if ((rc = check_readable("weights", a->value[F_WEIGHTS]))) return rc;

  s = ct_net_create(a->value[F_MODEL], a->phase, a->level, a->stages, NULL, &net, &err);
  if (s == CT_OK) {
    /* Caffe's "Ignoring source layer ..." lines; NaN or Inf weights refused unless allowed */
    ct_weights_opts wo = {.note = weights_note, .allow_nonfinite = a->given[F_ALLOW_NONFINITE] &&
                                                                   a->value[F_ALLOW_NONFINITE]};
    s = ct_net_load_weights_ex(net, a->value[F_WEIGHTS], &wo, &err);
  }
  if (s == CT_OK) s = ct_net_set_forward_only(net, &err); /* test: no diffs, blobs reused */
  if (s == CT_OK && a->partitions) s = ct_net_set_partitions(net, a->partitions, &err);
  if (s == CT_OK && a->value[F_DEVICE]) s = ct_net_set_devices(net, a->value[F_DEVICE], &err);
  if (s != CT_OK) {
    rc = lib_error(s, &err);
    goto done;
  }
  nout = ct_net_num_outputs(net);
  counts = calloc(nout > 0 ? (size_t)nout : 1, sizeof *counts);
  if (!counts) goto oom;
  long total = 0;
  for (int j = 0; j < nout; j++) {
    const char *name = ct_net_output_name(net, j);
    counts[j] = blob_count(net, name);
    if (counts[j] < 0) {
      fprintf(stderr, "cortado: output blob '%s' has no shape\n", name);
      rc = EXIT_LIB;
      goto done;
    }
    total += counts[j];
  }
  sums = calloc(total > 0 ? (size_t)total : 1, sizeof *sums);
  if (!sums) goto oom;

  logf_("Running for %d iterations.", a->iterations);
  for (int i = 0; i < a->iterations; i++) {
    float iter_loss = 0;
    s = ct_net_forward(net, &iter_loss, &err);
    if (s != CT_OK) {
      rc = lib_error(s, &err);
      goto done;
    }
    loss += iter_loss;
    long idx = 0;
    for (int j = 0; j < nout; j++) {
      const char *name = ct_net_output_name(net, j);
      const float *data = ct_net_blob_data(net, name);
      if (blob_count(net, name) != counts[j] || (counts[j] > 0 && !data)) {
        fprintf(stderr, "cortado: output blob '%s' changed size at batch %d\n", name, i);
        rc = EXIT_LIB;
        goto done;
      }
      for (long k = 0; k < counts[j]; k++, idx++) {
        sums[idx] += data[k];
        ui_verbosef(&a->ui, "Batch %d, %s = %g", i, name, (double)data[k]);
      }
    }
    ui_count(&a->ui, "test: batch", i + 1, a->iterations, NULL);
  }
  ui_finish(&a->ui);
  loss /= a->iterations;
  ui_resultf(&a->ui, "Loss: %g", loss);
  /* Caffe's lines: a loss output carries " (* weight = weighted loss)" */
  long idx = 0, nonfinite = 0;
  for (int j = 0; j < nout; j++) {
    const char *name = ct_net_output_name(net, j);
    const double w = ct_net_output_loss_weight(net, j);
    for (long k = 0; k < counts[j]; k++, idx++) {
      const double mean = sums[idx] / a->iterations;
      nonfinite += !isfinite(mean);
      if (w != 0)
        ui_resultf(&a->ui, "%s = %g (* %g = %g loss)", name, mean, w, w * mean);
      else
        ui_resultf(&a->ui, "%s = %g", name, mean);
    }
  }
  if (nonfinite || !isfinite(loss))
    ui_resultf(&a->ui, "Warning: %ld outputs%s are NaN or Inf: the weights or the data hold non-finite values, and "
               "no score here means anything", nonfinite, isfinite(loss) ? "" : " and the loss");
  goto done;

oom:
  fprintf(stderr, "cortado: out of memory\n");
  rc = EXIT_LIB;
done:
  free(sums);
  free(counts);
  ct_net_free(net);
  return rc;
}

/* ------------------------------------------------------------------ time */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* This process's CPU time (all threads, user + system), ms. */
static double cpu_ms(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* The machine's CPU time so far (the sum of the first eight counters of /proc/stat's "cpu"
 * line, in USER_HZ ticks) and the part of it a hypervisor took for other guests (the eighth,
 * steal); false where there is no such file. */
static bool machine_ticks(unsigned long long *total, unsigned long long *steal) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return false;
  unsigned long long v[8] = {0};
  int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
  fclose(f);
  if (got != 8) return false;
  *total = 0;
  for (int i = 0; i < 8; i++) *total += v[i];
  *steal = v[7];
  return true;
}

/* Peak memory: the blobs' bytes as planned and as the unplanned net would hold them
 * (net/memplan.c), the shared workspaces, and the peak resident set the OS measured. */
static void report_memory(ui *u, const ct_net *net) {
  ct_net_mem m;
  ct_net_memory(net, &m);
  const double MB = 1024.0 * 1024.0;
  const size_t un = m.unplanned_bytes[0] + m.unplanned_bytes[1], pl = m.planned_bytes[0] + m.planned_bytes[1];
  char ws[160];
  if (m.workspace_kept)
    snprintf(ws, sizeof ws, "workspaces %.1f MB, each layer its own (within CT_WORKSPACE_KEEP_MB=%.0f)",
             m.workspace_bytes / MB, m.workspace_budget / MB);
  else
    snprintf(ws, sizeof ws, "workspaces %.1f MB shared (%.1f MB if each layer kept its own)", m.workspace_bytes / MB,
             m.workspace_unshared_bytes / MB);
  if (m.planned)
    ui_resultf(u,
               "Memory plan: blobs %.1f MB planned (data %.1f + diff %.1f), %.1f MB without planning (data %.1f + "
               "diff %.1f)%s; %s.",
               pl / MB, m.planned_bytes[0] / MB, m.planned_bytes[1] / MB, un / MB, m.unplanned_bytes[0] / MB,
               m.unplanned_bytes[1] / MB, m.forward_only ? ", forward only: no diffs" : "", ws);
  else
    ui_resultf(u, "Memory plan: off (CT_MEMPLAN=0): blobs %.1f MB (data %.1f + diff %.1f)%s.", un / MB,
               m.unplanned_bytes[0] / MB, m.unplanned_bytes[1] / MB, m.forward_only ? ", forward only" : "");
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) ui_resultf(u, "Peak RSS: %.1f MB.", ru.ru_maxrss / 1024.0);
}

int run_time(args *a) {
  ct_net *net = NULL;
  ct_error err = {0};
  double *fwd = NULL, *bwd = NULL; /* per layer, summed ms */
  int rc = EXIT_OK;
  ct_status s;

  if ((rc = check_readable("model", a->value[F_MODEL]))) return rc;
  if (a->given[F_WEIGHTS]) /* Caffe's time takes the flag and does not read it */
    logf_("Ignoring --weights=%s: timings do not depend on the weights (as in Caffe's time)", a->value[F_WEIGHTS]);
  s = ct_net_create(a->value[F_MODEL], a->phase, a->level, a->stages, NULL, &net, &err);
  if (s == CT_OK) ct_net_set_layerwise_fusion(net, true); /* every layer in order: whole chains */
  if (s == CT_OK && a->partitions) s = ct_net_set_partitions(net, a->partitions, &err);
  if (s == CT_OK && a->value[F_DEVICE]) s = ct_net_set_devices(net, a->value[F_DEVICE], &err);
  if (s != CT_OK) {
    rc = lib_error(s, &err);
    goto done;
  }
  const int nlayers = ct_net_num_layers(net);
  fwd = calloc(nlayers > 0 ? (size_t)nlayers : 1, sizeof *fwd);
  bwd = calloc(nlayers > 0 ? (size_t)nlayers : 1, sizeof *bwd);
  if (!fwd || !bwd) {
    fprintf(stderr, "cortado: out of memory\n");
    rc = EXIT_LIB;
    goto done;
  }

  /* Warm-up: the first pass pays for page faults and lazily grown buffers. */
  logf_("Performing Forward");
  float initial_loss = 0;
  if ((s = ct_net_forward(net, &initial_loss, &err)) != CT_OK) goto lib_fail;
  logf_("Initial loss: %g", (double)initial_loss);
  logf_("Performing Backward");
  if ((s = ct_net_backward(net, &err)) != CT_OK) goto lib_fail;

  log_blas_core();
  logf_("*** Benchmark begins ***");
  logf_("Testing for %d iterations.", a->iterations);
  double forward_ms = 0, backward_ms = 0;
  cmd_data_wait_reset(net); /* data-layer waits of the timed passes only */
  cmd_placement_reset(net);  /* copies between devices in the timed passes only */
  unsigned long long ticks0 = 0, steal0 = 0, ticks1 = 0, steal1 = 0;
  const bool have_ticks = machine_ticks(&ticks0, &steal0);
  const double cpu_start = cpu_ms();
  const double total_start = now_ms();
  for (int j = 0; j < a->iterations; j++) {
    const double iter_start = now_ms();
    for (int i = 0; i < nlayers; i++) {
      const double t0 = now_ms();
      if ((s = ct_net_forward_layer(net, i, &err)) != CT_OK) goto lib_fail;
      fwd[i] += now_ms() - t0;
    }
    const double mid = now_ms();
    forward_ms += mid - iter_start;
    for (int i = nlayers - 1; i >= 0; i--) {
      const double t0 = now_ms();
      if ((s = ct_net_backward_layer(net, i, &err)) != CT_OK) goto lib_fail;
      bwd[i] += now_ms() - t0;
    }
    const double end = now_ms();
    backward_ms += end - mid;
    ui_verbosef(&a->ui, "Iteration: %d forward-backward time: %g ms.", j + 1, end - iter_start);
    char took[64];
    snprintf(took, sizeof took, "%.2f ms", end - iter_start);
    ui_count(&a->ui, "time: iteration", j + 1, a->iterations, took);
  }
  ui_finish(&a->ui);
  const double total_ms = now_ms() - total_start;
  const double cpu_used_ms = cpu_ms() - cpu_start;
  const bool ticked = have_ticks && machine_ticks(&ticks1, &steal1);

  int wname = 5, wtype = 4;
  for (int i = 0; i < nlayers; i++) {
    int ln = (int)strlen(ct_net_layer_name(net, i)), lt = (int)strlen(ct_net_layer_type(net, i));
    if (ln > wname) wname = ln;
    if (lt > wtype) wtype = lt;
  }
  if (wname > 48) wname = 48;
  if (wtype > 32) wtype = 32;
  const double n = a->iterations;
  /* Caffe's two lines per layer first, as its scripts read them; cortado's table (type,
   * lowering, GFLOP/s) follows under its own heading, worded apart so a grep for "forward:"
   * finds Caffe's lines only. */
  ui_resultf(&a->ui, "Average time per layer: ");
  for (int i = 0; i < nlayers; i++) {
    ui_resultf(&a->ui, "%10s\tforward: %g ms.", ct_net_layer_name(net, i), fwd[i] / n);
    ui_resultf(&a->ui, "%10s\tbackward: %g ms.", ct_net_layer_name(net, i), bwd[i] / n);
  }
  ui_resultf(&a->ui, "Per layer (type, lowering, average ms forward / backward, GFLOP/s forward / backward):");
  double total_flops = 0;
  for (int i = 0; i < nlayers; i++) {
    /* GFLOP/s from the layer's useful FLOPs; backward counts the data gradient only where it
     * propagates (not into the data layer) and the weight gradient only where weights learn */
    double fl = ct_net_layer_flops(net, i), bfl = ct_net_layer_backward_flops(net, i), f_ms = fwd[i] / n,
           b_ms = bwd[i] / n;
    char rate[96] = "";
    if (fl > 0 && f_ms > 0 && bfl > 0 && b_ms > 0)
      snprintf(rate, sizeof rate, "  %6.1f / %6.1f GFLOP/s", fl / (f_ms * 1e6), bfl / (b_ms * 1e6));
    else if (fl > 0 && f_ms > 0) /* no backward: nothing below needs a gradient */
      snprintf(rate, sizeof rate, "  %6.1f /      - GFLOP/s", fl / (f_ms * 1e6));
    total_flops += fl + bfl;
    ui_resultf(&a->ui, "%-*s %-*s %-5s %10.4f / %10.4f ms%s", wname, ct_net_layer_name(net, i), wtype,
               ct_net_layer_type(net, i), ct_net_layer_note(net, i), f_ms, b_ms, rate);
  }
  if (total_flops > 0) {
    ui_resultf(&a->ui, "Partitions: %d. Whole iteration: %.1f GFLOP, %.1f GFLOP/s.", ct_net_partitions(net),
               total_flops / 1e9, total_flops / (total_ms / n * 1e6));
    /* CcT's measure of the engine: the share of the iteration outside the GEMM layers (those
     * reporting FLOPs: convolution, inner product) — pooling, LRN, activations, softmax, data. */
    double gemm_ms = 0, layers_ms = 0;
    for (int i = 0; i < nlayers; i++) {
      layers_ms += (fwd[i] + bwd[i]) / n;
      if (ct_net_layer_flops(net, i) > 0) gemm_ms += (fwd[i] + bwd[i]) / n;
    }
    if (layers_ms > 0)
      ui_resultf(&a->ui, "GEMM layers: %.2f ms (%.1f%%). Other layers: %.2f ms (%.1f%%).", gemm_ms,
                 100 * gemm_ms / layers_ms, layers_ms - gemm_ms, 100 * (layers_ms - gemm_ms) / layers_ms);
  }
  cmd_placement_report(&a->ui, net, a->iterations, wname, wtype);
  if (ct_net_partition_workers(net) > 1) { /* issue 19: what the partitioning moves */
    unsigned long long bf, bb, rep, shard;
    ct_net_partition_bytes(net, &bf, &bb);
    ct_net_partition_param_bytes(net, &rep, &shard);
    ui_resultf(&a->ui, "Partitioning over %d workers: bridges move %llu bytes per iteration (%llu forward, %llu "
               "backward); parameters: %llu bytes replicated, %llu bytes in shards.",
               ct_net_partition_workers(net), bf + bb, bf, bb, rep, shard);
  }
  for (int i = 0; i < nlayers; i++) { /* time the data layers' forward spent waiting for a batch */
    double wait_ms;
    if (cmd_data_wait_ms(net, i, &wait_ms))
      ui_resultf(&a->ui, "%-*s %-*s data wait: %g ms.", wname, ct_net_layer_name(net, i), wtype,
                 ct_net_layer_type(net, i), wait_ms / n);
  }
  /* On a shared virtual machine the wall time includes spells when the hypervisor ran other
   * guests on our cores: the CPU time this process got, and the share the hypervisor took,
   * tell such a run from a slow one. */
  if (total_ms > 0)
    ui_resultf(&a->ui, "CPU time: %.2f ms per iteration (%.2f cores busy).", cpu_used_ms / n, cpu_used_ms / total_ms);
  if (ticked && ticks1 > ticks0)
    ui_resultf(&a->ui, "Steal: the hypervisor took %.1f%% of this machine's CPU time during the timed passes.",
               100.0 * (double)(steal1 - steal0) / (double)(ticks1 - ticks0));
  else if (ticked)
    ui_resultf(&a->ui, "Steal: not measured: the timed passes took less than one tick of /proc/stat.");
  report_memory(&a->ui, net);
  ui_resultf(&a->ui, "Average Forward pass: %g ms.", forward_ms / n);
  ui_resultf(&a->ui, "Average Backward pass: %g ms.", backward_ms / n);
  ui_resultf(&a->ui, "Average Forward-Backward: %g ms.", total_ms / n);
  ui_resultf(&a->ui, "Total Time: %g ms.", total_ms);
  ui_resultf(&a->ui, "*** Benchmark ends ***");
  goto done;

lib_fail:
  rc = lib_error(s, &err);
done:
  free(fwd);
  free(bwd);
  ct_net_free(net);
  return rc;
}
