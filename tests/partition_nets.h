/* The small net of issue 19's transitions, shared by test_partition.c (threads) and
 * test_partition_mpi.c (processes): a whole conv, conv2 on dim 1 (0 -> 1, unequal shards),
 * ip1 on dim 1 (1 -> 1), ip2 with 2 outputs on dim 1 (1 -> 1 over fewer workers), a TanH
 * pinned to the last worker, ip3 on dim 1 and a whole loss (1 -> 0). Inputs: data 4x3x6x6, label 4. */
#ifndef CT_TESTS_PARTITION_NETS_H
#define CT_TESTS_PARTITION_NETS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Fills %s with the partition fields (empty for the reference net). */
static inline void transitions_net(char *buf, size_t n, int workers, bool parted) {
  const char *d1 = parted ? "partition_dim: 1" : "";
  char pin[64] = "";
  if (parted) snprintf(pin, sizeof pin, "location: %d", workers - 1);
  snprintf(buf, n,
           "name: 't'\n%s\n"
           "layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape { dim: 4 dim: 3 dim: 6 "
           "dim: 6 } shape { dim: 4 } } }\n"
           /* whole (dim 0) */
           "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' %s convolution_param { num_output: "
           "4 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.1 } "
           "} }\n"
           "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
           /* 0 -> 1 on output channels, unequal shards (7 over 2, 3, 4) */
           "layer { name: 'conv2' type: 'Convolution' bottom: 'conv1' top: 'conv2' %s convolution_param { "
           "num_output: 7 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: "
           "'gaussian' std: 0.1 } } }\n"
           "layer { name: 'relu2' type: 'ReLU' bottom: 'conv2' top: 'conv2' %s }\n"
           /* 1 -> 1 over the same workers */
           "layer { name: 'ip1' type: 'InnerProduct' bottom: 'conv2' top: 'ip1' %s inner_product_param { "
           "num_output: 9 weight_filler { type: 'gaussian' std: 0.2 } bias_filler { type: 'gaussian' std: 0.1 } } "
           "}\n"
           "layer { name: 'sig1' type: 'Sigmoid' bottom: 'ip1' top: 's1' %s }\n"
           /* 1 -> 1 over fewer workers (2 outputs: at most 2) */
           "layer { name: 'ip2' type: 'InnerProduct' bottom: 's1' top: 'ip2' %s inner_product_param { num_output: 2 "
           "weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           /* a pinned layer between partitioned ones */
           "layer { name: 'pin' type: 'TanH' bottom: 'ip2' top: 'pin' %s }\n"
           "layer { name: 'ip3' type: 'InnerProduct' bottom: 'pin' top: 'ip3' %s inner_product_param { num_output: 5 "
           "weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           /* 1 -> 0 (whole) */
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip3' bottom: 'label' top: 'loss' }\n",
           parted ? "" : "", parted ? "partition_dim: 0" : "", d1, d1, d1, d1, d1, pin, d1);
  if (parted) {
    char head[64];
    snprintf(head, sizeof head, "partition_workers: %d", workers);
    char *p = strstr(buf, "\n\n");
    if (p) { /* the blank line after the name takes the net-level field */
      size_t hl = strlen(head), tail = strlen(p + 1) + 1;
      if (strlen(buf) + hl + 1 < n) {
        memmove(p + 1 + hl, p + 1, tail);
        memcpy(p + 1, head, hl);
      }
    }
  }
}

#endif
