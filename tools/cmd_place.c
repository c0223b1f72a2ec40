#include "cmd_place.h"

#include <stdio.h>

#include "core/storage.h"
#include "net/net.h"

void cmd_placement_reset(ct_net *net) { ct_net_reset_copy_stats(net); }

/* "1.50 MB", "0 B" */
static const char *bytes_str(double b, char *buf, size_t n) {
  if (b >= 1e6)
    snprintf(buf, n, "%.2f MB", b / 1e6);
  else if (b >= 1e3)
    snprintf(buf, n, "%.1f kB", b / 1e3);
  else
    snprintf(buf, n, "%.0f B", b);
  return buf;
}

void cmd_placement_report(ui *u, ct_net *net, int iterations, int wname, int wtype) {
  const double n = iterations > 0 ? iterations : 1;
  ui_resultf(u, "Placement per layer (plan: device: share of the batch; how it runs; bytes copied between devices "
                "per iteration, forward + backward):");
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    char plan[256], b1[32], b2[32];
    unsigned long long f, b;
    ct_net_layer_copied(net, i, &f, &b);
    const char *note = ct_net_layer_note(net, i);
    ui_resultf(u, "%-*s %-*s plan: %-28s %-8s copied: %s + %s", wname, ct_net_layer_name(net, i), wtype,
               ct_net_layer_type(net, i), ct_net_layer_plan(net, i, plan, sizeof plan), note[0] ? note : "-",
               bytes_str((double)f / n, b1, sizeof b1), bytes_str((double)b / n, b2, sizeof b2));
  }
  /* the whole net's copies by direction, the solver's and the loss's included */
  const ct_copy_stats *cs = &ct_net_placement(net)->stats;
  char line[1024];
  size_t used = 0;
  double total = 0;
  for (int from = 0; from < CT_MAX_MEMS; from++)
    for (int to = 0; to < CT_MAX_MEMS; to++) {
      unsigned long long bytes = atomic_load(&((ct_copy_stats *)cs)->bytes[from][to]);
      if (!bytes || used >= sizeof line) continue;
      char b[32];
      total += (double)bytes;
      used += (size_t)snprintf(line + used, sizeof line - used, "%s%s -> %s %s", used ? ", " : "", ct_mem_name(from),
                               ct_mem_name(to), bytes_str((double)bytes / n, b, sizeof b));
    }
  char t[32];
  if (total > 0)
    ui_resultf(u, "Copies between devices: %s per iteration (%s).", bytes_str(total / n, t, sizeof t), line);
  else
    ui_resultf(u, "Copies between devices: none.");
}
