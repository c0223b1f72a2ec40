/*
 * `cortado draw`: a net's layer graph through Graphviz, in the spirit of Caffe's draw_net.py.
 *
 * Layers are boxes (name, type, main settings); blobs are the edges between them, labelled with
 * the blob's name and shape; net inputs and outputs are ellipses. The layers come from the
 * prototxt (so the drawing shows the net as written, without the Split layers the net inserts);
 * the shapes come from building the net in the chosen phase.
 */
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/files.h"
#include "layers/layer.h"
#include "proto/upgrade.h"
#include "net/net.h"
#include "plot.h"
#include "proto/prototxt.h"

extern char **environ;

/* A growing text buffer. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->p && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = (b->cap + (size_t)k + 1) * 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

/* A DOT string body: quotes and backslashes escaped; "\n" (two characters) stays a line break. */
static void sb_dotstr(sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      sb_printf(b, "\\%c", *s);
    else if (*s == '\n')
      sb_printf(b, "\\n");
    else
      sb_printf(b, "%c", *s);
  }
}

/* ------------------------------------------------------------------ phase rules */

static int rule_matches(const Caffe__NetStateRule *r, ct_phase phase, int level, const char *const *stages) {
  if (r->has_phase && (int)r->phase != (int)phase) return 0;
  if (r->has_min_level && level < r->min_level) return 0;
  if (r->has_max_level && level > r->max_level) return 0;
  for (size_t i = 0; i < r->n_stage; i++) {
    int found = 0;
    for (int k = 0; stages && stages[k]; k++) found |= strcmp(stages[k], r->stage[i]) == 0;
    if (!found) return 0;
  }
  for (size_t i = 0; i < r->n_not_stage; i++)
    for (int k = 0; stages && stages[k]; k++)
      if (strcmp(stages[k], r->not_stage[i]) == 0) return 0;
  return 1;
}

/* Caffe's StateMeetsRule: any include rule admits, any exclude rule removes. */
static int layer_in_phase(const Caffe__LayerParameter *lp, ct_phase phase, int level, const char *const *stages) {
  if (lp->has_phase && (int)lp->phase != (int)phase) return 0;
  if (lp->n_include) {
    for (size_t i = 0; i < lp->n_include; i++)
      if (rule_matches(lp->include[i], phase, level, stages)) return 1;
    return 0;
  }
  for (size_t i = 0; i < lp->n_exclude; i++)
    if (rule_matches(lp->exclude[i], phase, level, stages)) return 0;
  return 1;
}

/* ------------------------------------------------------------------ labels */

typedef struct blob_ref {
  const char *name;
  int producer; /* layer index in the prototxt; -1 a net input, -2 made by no layer */
  int consumed;
  int naxes;    /* its shape when the net was built; -1 unknown */
  int shape[8];
} blob_ref;

static blob_ref make_ref(const char *name, int producer, const ct_tensor *t) {
  blob_ref r = {name, producer, 0, -1, {0}};
  if (t) {
    r.naxes = t->naxes < 8 ? t->naxes : 8;
    for (int i = 0; i < r.naxes; i++) r.shape[i] = t->shape[i];
  }
  return r;
}


static void shape_text(char *out, size_t n, const blob_ref *r) {
  size_t k = 0;
  out[0] = 0;
  for (int i = 0; i < r->naxes && k + 16 < n; i++)
    k += (size_t)snprintf(out + k, n - k, "%s%d", i ? "\xc3\x97" : "", r->shape[i]); /* U+00D7 × */
  if (r->naxes == 0) snprintf(out, n, "scalar");
}

static unsigned kernel_of(const Caffe__ConvolutionParameter *cp, int hw) {
  if (cp->has_kernel_h && hw == 0) return cp->kernel_h;
  if (cp->has_kernel_w && hw == 1) return cp->kernel_w;
  return cp->n_kernel_size ? cp->kernel_size[cp->n_kernel_size > 1 ? hw : 0] : 0;
}

/* The settings a reader wants to see in the box: kernel, stride, outputs, pooling method, ... */
static void layer_settings(sbuf *b, const Caffe__LayerParameter *lp) {
  const char *type = lp->type ? lp->type : "";
  if (lp->convolution_param && (strcmp(type, "Convolution") == 0 || strcmp(type, "Deconvolution") == 0)) {
    const Caffe__ConvolutionParameter *cp = lp->convolution_param;
    unsigned stride = cp->n_stride ? cp->stride[0] : (cp->has_stride_h ? cp->stride_h : 1);
    unsigned pad = cp->n_pad ? cp->pad[0] : (cp->has_pad_h ? cp->pad_h : 0);
    sb_printf(b, "\\n%u outputs, %ux%u kernel, stride %u", cp->num_output, kernel_of(cp, 0), kernel_of(cp, 1),
              stride);
    if (pad) sb_printf(b, ", pad %u", pad);
    if (cp->has_group && cp->group > 1) sb_printf(b, ", group %u", cp->group);
  } else if (lp->pooling_param && strcmp(type, "Pooling") == 0) {
    const Caffe__PoolingParameter *pp = lp->pooling_param;
    static const char *const methods[] = {"MAX", "AVE", "STOCHASTIC"};
    const char *m = (unsigned)pp->pool < 3 ? methods[pp->pool] : "?";
    if (pp->global_pooling)
      sb_printf(b, "\\n%s, global", m);
    else
      sb_printf(b, "\\n%s %ux%u, stride %u", m, pp->has_kernel_h ? pp->kernel_h : pp->kernel_size,
                pp->has_kernel_w ? pp->kernel_w : pp->kernel_size, pp->has_stride_h ? pp->stride_h : pp->stride);
  } else if (lp->inner_product_param && strcmp(type, "InnerProduct") == 0) {
    sb_printf(b, "\\n%u outputs", lp->inner_product_param->num_output);
  } else if (lp->dropout_param && strcmp(type, "Dropout") == 0) {
    sb_printf(b, "\\nratio %g", lp->dropout_param->dropout_ratio);
  }
}

/* pycaffe's display_lrm: each learnable blob's lr_mult and decay_mult, as the prototxt sets them
 * (1 where it does not); layers without param entries show nothing. */
static void layer_multipliers(sbuf *b, const Caffe__LayerParameter *lp) {
  if (!lp->n_param) return;
  sb_printf(b, "\\nlr_mult");
  for (size_t i = 0; i < lp->n_param; i++)
    sb_printf(b, "%s%g", i ? ", " : " ", lp->param[i]->has_lr_mult ? lp->param[i]->lr_mult : 1.0f);
  sb_printf(b, "; decay_mult");
  for (size_t i = 0; i < lp->n_param; i++)
    sb_printf(b, "%s%g", i ? ", " : " ", lp->param[i]->has_decay_mult ? lp->param[i]->decay_mult : 1.0f);
}

static const char *fill_color(const char *type) {
  static const struct {
    const char *type, *color;
  } colors[] = {
      {"Convolution", "#fdbf6f"}, {"Deconvolution", "#fdbf6f"}, {"Pooling", "#b2df8a"},
      {"InnerProduct", "#cab2d6"}, {"ReLU", "#ffff99"},         {"PReLU", "#ffff99"},
      {"Sigmoid", "#ffff99"},     {"TanH", "#ffff99"},          {"Dropout", "#e0e0e0"},
      {"LRN", "#a6cee3"},         {"BatchNorm", "#a6cee3"},     {"Softmax", "#fb9a99"},
      {"SoftmaxWithLoss", "#fb9a99"}, {"EuclideanLoss", "#fb9a99"}, {"Accuracy", "#f4cae4"},
      {"Data", "#8dd3c7"},        {"Input", "#8dd3c7"},         {"DummyData", "#8dd3c7"},
  };
  for (size_t i = 0; i < sizeof colors / sizeof colors[0]; i++)
    if (strcmp(colors[i].type, type) == 0) return colors[i].color;
  return "#f0f0f0";
}

/* ------------------------------------------------------------------ the graph */

/* The built layer with this name, or NULL. */
static ct_layer *built_layer(ct_net *net, const char *name) {
  for (int i = 0; net && i < ct_net_num_layers(net); i++)
    if (strcmp(ct_net_layer_name(net, i), name) == 0) return ct_net_layer(net, i);
  return NULL;
}

/* bridge: the edge joins layers on two workers of a partitioned net (issue 19) */
static void edge_label(sbuf *b, const blob_ref *r, bool bridge) {
  sb_printf(b, " [label=\"");
  sb_dotstr(b, r->name);
  if (r->naxes >= 0) {
    char shape[128];
    shape_text(shape, sizeof shape, r);
    sb_printf(b, "\\n%s", shape);
  }
  sb_printf(b, bridge ? "\\n(bridge)\", style=dashed, color=\"#d62728\"]" : "\"]");
}

/* The worker of a layer of a partitioned net's rewritten list (-1: not partitioned). */
static int worker_of(const ct_net *net, const Caffe__LayerParameter *lp) {
  return net && ct_net_partition_workers(net) > 1 && lp->has_location ? lp->location : -1;
}

static char *make_dot(const Caffe__NetParameter *np, ct_net *net, ct_phase phase, int level,
                      const char *const *stages, const char *title, int multipliers) {
  sbuf b = {0};
  size_t cap = np->n_input + 1;
  for (size_t i = 0; i < np->n_layer; i++) cap += np->layer[i]->n_top;
  blob_ref *live = calloc(cap, sizeof *live); /* the latest writer of each blob name */
  int nlive = 0;
  if (!live) return NULL;
  sb_printf(&b, "digraph \"");
  sb_dotstr(&b, title);
  sb_printf(&b, "\" {\n  rankdir=TB;\n  label=\"");
  sb_dotstr(&b, title);
  sb_printf(&b, "\";\n  labelloc=t;\n  fontname=\"Helvetica\";\n  fontsize=16;\n"
            "  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9, "
            "color=\"#555555\"];\n");
  /* the deprecated net-level inputs */
  for (size_t i = 0; i < np->n_input; i++) {
    live[nlive] = make_ref(np->input[i], -1, NULL);
    if (net) live[nlive].naxes = ct_net_blob_shape(net, np->input[i], live[nlive].shape);
    sb_printf(&b, "  in%zu [shape=ellipse, style=filled, fillcolor=\"#8dd3c7\", label=\"", i);
    sb_dotstr(&b, np->input[i]);
    sb_printf(&b, "\"];\n");
    nlive++;
  }
  for (size_t li = 0; li < np->n_layer; li++) {
    const Caffe__LayerParameter *lp = np->layer[li];
    if (!layer_in_phase(lp, phase, level, stages)) continue;
    ct_layer *bl = net ? built_layer(net, lp->name ? lp->name : "") : NULL;
    sb_printf(&b, "  L%zu [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", label=\"", li,
              fill_color(lp->type ? lp->type : ""));
    sb_dotstr(&b, lp->name ? lp->name : "(unnamed)");
    sb_printf(&b, "\\n(");
    sb_dotstr(&b, lp->type ? lp->type : "?");
    sb_printf(&b, ")");
    layer_settings(&b, lp);
    if (worker_of(net, lp) >= 0) sb_printf(&b, "\\nworker %d", worker_of(net, lp));
    if (multipliers) layer_multipliers(&b, lp);
    sb_printf(&b, "\"];\n");
    for (size_t k = 0; k < lp->n_bottom; k++) {
      int src = -1;
      for (int j = nlive - 1; j >= 0; j--)
        if (strcmp(live[j].name, lp->bottom[k]) == 0) {
          src = j;
          break;
        }
      if (src < 0) { /* a bottom nobody makes: draw it as an input so the mistake shows */
        if ((size_t)nlive == cap) break;
        src = nlive++;
        live[src] = make_ref(lp->bottom[k], -2, NULL);
        sb_printf(&b, "  missing%d [shape=ellipse, style=dashed, label=\"", src);
        sb_dotstr(&b, lp->bottom[k]);
        sb_printf(&b, "\\n(made by no layer)\"];\n");
      }
      live[src].consumed = 1;
      if (live[src].producer >= 0)
        sb_printf(&b, "  L%d -> L%zu", live[src].producer, li);
      else if (live[src].producer == -1)
        sb_printf(&b, "  in%d -> L%zu", src, li);
      else
        sb_printf(&b, "  missing%d -> L%zu", src, li);
      edge_label(&b, &live[src],
                 live[src].producer >= 0 && worker_of(net, np->layer[live[src].producer]) != worker_of(net, lp));
      sb_printf(&b, ";\n");
    }
    for (size_t k = 0; k < lp->n_top; k++) {
      int j = 0;
      while (j < nlive && strcmp(live[j].name, lp->top[k]) != 0) j++;
      if (j == nlive) {
        if ((size_t)nlive == cap) break;
        nlive++;
      }
      live[j] = make_ref(lp->top[k], (int)li, bl && k < (size_t)bl->ntop ? bl->top[k] : NULL);
    }
  }
  /* outputs: blobs whose last version nobody reads */
  for (int j = 0; j < nlive; j++) {
    if (live[j].consumed || live[j].producer < 0) continue;
    sb_printf(&b, "  out%d [shape=ellipse, style=filled, fillcolor=\"#ffffff\", label=\"", j);
    sb_dotstr(&b, live[j].name);
    sb_printf(&b, "\"];\n  L%d -> out%d", live[j].producer, j);
    edge_label(&b, &live[j], false);
    sb_printf(&b, ";\n");
  }
  sb_printf(&b, "}\n");
  free(live);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

/* ------------------------------------------------------------------ output */

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  int bad = ferror(f);
  return (fclose(f) != 0 || bad) ? -1 : 0;
}

/* Runs `dot -T<fmt> -o out in`. Returns its exit status, or -1 with errno when it cannot start. */
static int run_dot(const char *fmt, const char *in, const char *out) {
  char targ[32];
  snprintf(targ, sizeof targ, "-T%s", fmt);
  char *const argv[] = {"dot", targ, "-o", (char *)out, (char *)in, NULL};
  pid_t pid;
  int e = posix_spawnp(&pid, "dot", NULL, NULL, argv, environ);
  if (e != 0) {
    errno = e;
    return -1;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    errno = ENOENT; /* the shell's "not found", when posix_spawnp goes through one */
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int draw_command(const char *prototxt, const char *output, ct_phase phase, int phase_given, int level,
                 const char *const *stages, int multipliers) {
  if (!phase_given) phase = CT_TRAIN;
  const char *dot = strrchr(output, '.'), *slash = strrchr(output, '/');
  const char *ext = dot && (!slash || dot > slash) ? dot + 1 : "";
  int want_dot = strcasecmp(ext, "dot") == 0 || strcasecmp(ext, "gv") == 0;
  if (!want_dot && strcasecmp(ext, "svg") != 0 && strcasecmp(ext, "png") != 0 && strcasecmp(ext, "pdf") != 0) {
    fprintf(stderr, "cortado draw: -o %s: unknown format '.%s'; name the output .svg, .png, .pdf or .dot\n", output,
            ext);
    return 2;
  }
  ProtobufCMessage *m = NULL;
  ct_error err = {0};
  char *target = NULL; /* issue 23: dot would write into a device or block on a FIFO */
  if (ct_file_output_target(output, &target, &err) != CT_OK) {
    fprintf(stderr, "cortado draw: %s\n", err.msg);
    return 1;
  }
  free(target);
  if (ct_prototxt_read_file(prototxt, &caffe__net_parameter__descriptor, &m, &err) != CT_OK) {
    fprintf(stderr, "cortado draw: %s%s\n", err.msg,
            err.status == CT_EIO ? "; give the path of a NetParameter prototxt (net.prototxt)" : "");
    return 1;
  }
  const Caffe__NetParameter *np = (const Caffe__NetParameter *)m;
  /* old formats are drawn as the net they upgrade to (proto/upgrade.h) */
  if (ct_net_needs_upgrade(np) && ct_upgrade_net((Caffe__NetParameter *)m, prototxt, NULL, &err) != CT_OK) {
    fprintf(stderr, "cortado draw: %s\n", err.msg);
    protobuf_c_message_free_unpacked(m, NULL);
    return 1;
  }
  ct_net *net = NULL;
  const char *phase_name = phase == CT_TRAIN ? "TRAIN" : "TEST";
  if (ct_net_create(prototxt, phase, level, stages, NULL, &net, &err) != CT_OK) {
    fprintf(stderr, "cortado draw: cannot build %s in phase %s to learn the blob shapes (%s); drawing the layers "
            "without shapes\n", prototxt, phase_name, err.msg);
    net = NULL;
  }
  char title[512];
  const char *base = strrchr(prototxt, '/');
  snprintf(title, sizeof title, "%s (%s, %s)", np->name ? np->name : (base ? base + 1 : prototxt),
           base ? base + 1 : prototxt, phase_name);
  /* a net partitioned over a worker group (issue 19) is drawn as the layers it runs: the
   * sub-layers, connections and bridges its rewrite made, each with its worker */
  Caffe__NetParameter rewritten = CAFFE__NET_PARAMETER__INIT;
  Caffe__LayerParameter **layers = NULL;
  if (net && ct_net_partition_workers(net) > 1 &&
      (layers = calloc((size_t)ct_net_num_layers(net) + 1, sizeof *layers))) {
    rewritten.name = np->name;
    for (int i = 0; i < ct_net_num_layers(net); i++)
      layers[rewritten.n_layer++] = (Caffe__LayerParameter *)ct_net_layer(net, i)->lp;
    rewritten.layer = layers;
    size_t used = strlen(title);
    snprintf(title + used, sizeof title - used, ", partitioned over %d workers", ct_net_partition_workers(net));
  }
  char *text = make_dot(layers ? &rewritten : np, net, phase, level, stages, title, multipliers);
  free(layers);
  ct_net_free(net);
  protobuf_c_message_free_unpacked(m, NULL);
  if (!text) {
    fprintf(stderr, "cortado draw: out of memory\n");
    return 1;
  }
  int rc = 0;
  if (want_dot) {
    if (write_text(output, text) != 0) {
      fprintf(stderr, "cortado draw: cannot write %s: %s; check that the directory of -o exists and is writable\n",
              output, strerror(errno));
      rc = 1;
    } else {
      fprintf(stderr, "cortado draw: wrote %s\n", output);
    }
    free(text);
    return rc;
  }
  /* dot reads the graph from a temporary file beside the output */
  size_t n = strlen(output) + 16;
  char *tmp = malloc(n), *dotpath = malloc(n);
  if (!tmp || !dotpath) {
    fprintf(stderr, "cortado draw: out of memory\n");
    rc = 1;
    goto done;
  }
  snprintf(tmp, n, "%s.tmp.dot", output);
  snprintf(dotpath, n, "%.*s.dot", (int)(dot - output), output);
  if (write_text(tmp, text) != 0) {
    fprintf(stderr, "cortado draw: cannot write %s: %s; check that the directory of -o exists and is writable\n",
            tmp, strerror(errno));
    rc = 1;
    goto done;
  }
  int st = run_dot(ext, tmp, output);
  if (st < 0 && errno == ENOENT) {
    if (rename(tmp, dotpath) != 0) {
      fprintf(stderr, "cortado draw: cannot write %s: %s\n", dotpath, strerror(errno));
      rc = 1;
    } else {
      fprintf(stderr, "cortado draw: Graphviz's 'dot' program is not installed, so %s was not drawn; wrote the "
              "graph as DOT to %s instead. Install Graphviz (apt-get install graphviz) and run: dot -T%s %s -o %s\n",
              output, dotpath, ext, dotpath, output);
    }
  } else if (st != 0) {
    fprintf(stderr, "cortado draw: Graphviz's dot failed (%s) drawing %s; the graph it was given is in %s\n",
            st < 0 ? strerror(errno) : "see its message above", output, dotpath);
    rename(tmp, dotpath);
    rc = 1;
  } else {
    remove(tmp);
    fprintf(stderr, "cortado draw: wrote %s\n", output);
  }
done:
  free(tmp);
  free(dotpath);
  free(text);
  return rc;
}
