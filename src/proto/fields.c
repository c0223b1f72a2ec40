/* The audit table (audit.h): every field of every message of cortado.proto and what cortado
 * does with it. One row is one message and one class; a message's fields may spread over
 * several rows. test_audit fails on a schema field missing here and on a name here that the
 * schema does not have. Keep the reasons short: they are the messages users read. */
#include <string.h>

#include "proto/audit.h"

typedef struct rule {
  const char *msg;
  ct_field_use use;
  const char *fields; /* space-separated */
  const char *why;
} rule;

#define USED(m, f) {m, CT_FIELD_USED, f, NULL}
#define INERT(m, f, why) {m, CT_FIELD_INERT, f, why}
#define REFUSED(m, f, why) {m, CT_FIELD_REFUSED, f, why}
#define UPGRADED(m, f, why) {m, CT_FIELD_UPGRADED, f, why}
#define UNREACHED(m, f) {m, CT_FIELD_UNREACHED, f, "no layer of this build reads it"}

static const char k_engine[] =
    "Caffe's choice between its own and cuDNN's kernels; cortado runs its own, with the same results";
static const char k_v1[] = "V1 layer field (`layers { }`): upgrade.c turns it into the current form";
static const char k_v0[] = "V0 layer field (`layers { layer { } }`): upgrade.c turns it into the current form";

static const rule k_rules[] = {
    /* ---- tensors and records */
    USED("BlobShape", "dim"),
    USED("BlobProto", "shape data double_data num channels height width"),
    INERT("BlobProto", "diff double_diff",
          "gradients stored beside weights: every iteration computes them afresh before reading them"),
    USED("BlobProtoVector", "blobs"),
    USED("Datum", "channels height width data label float_data encoded"),
    USED("FillerParameter", "type value min max mean std sparse variance_norm"),

    /* ---- nets */
    USED("NetParameter", "name force_backward state debug_info layer partition partition_dim partition_workers"),
    UPGRADED("NetParameter", "input input_shape input_dim", "net-level inputs: upgrade.c makes them an Input layer"),
    UPGRADED("NetParameter", "layers", k_v1),
    USED("NetState", "phase level stage"),
    USED("NetStateRule", "phase min_level max_level stage not_stage"),
    USED("ParamSpec", "name share_mode lr_mult decay_mult"),
    USED("PartitionSpec", "device share"),
    USED("LayerParameter",
         "name type bottom top phase loss_weight param blobs propagate_down include exclude partition partition_dim "
         "location"),
    /* the per-type fields: which layer types read each is layers/params.c's table */
    USED("LayerParameter",
         "transform_param loss_param accuracy_param argmax_param batch_norm_param bias_param concat_param "
         "convolution_param data_param dropout_param dummy_data_param eltwise_param elu_param exp_param "
         "flatten_param image_data_param inner_product_param input_param log_param lrn_param memory_data_param "
         "pooling_param power_param prelu_param python_param relu_param reshape_param scale_param sigmoid_param "
         "softmax_param slice_param tanh_param lowering idx_data_param clip_param contrastive_loss_param crop_param "
         "embed_param hdf5_data_param hdf5_output_param hinge_loss_param infogain_loss_param mvn_param "
         "parameter_param recurrent_param reduction_param spp_param swish_param threshold_param tile_param "
         "window_data_param"),
    USED("TransformationParameter", "scale mirror crop_size mean_file mean_value force_color force_gray"),
    USED("LossParameter", "ignore_label normalization normalize"),
    USED("AccuracyParameter", "top_k axis ignore_label"),
    USED("ArgMaxParameter", "out_max_val top_k axis"),
    USED("ConcatParameter", "axis concat_dim"),
    USED("BatchNormParameter", "use_global_stats moving_average_fraction eps"),
    USED("BiasParameter", "axis num_axes filler"),
    USED("ConvolutionParameter",
         "num_output bias_term pad kernel_size stride dilation pad_h pad_w kernel_h kernel_w stride_h stride_w "
         "group weight_filler bias_filler axis"),
    INERT("ConvolutionParameter", "engine", k_engine),
    INERT("ConvolutionParameter", "force_nd_im2col",
          "Caffe's choice of its N-D im2col code for 2-D convolutions; the results are the same"),
    USED("DataParameter",
         "source batch_size rand_skip backend scale mean_file crop_size mirror force_encoded_color prefetch"),
    USED("IDXDataParameter", "images labels batch_size shuffle"),
    USED("DropoutParameter", "dropout_ratio"),
    USED("DummyDataParameter", "data_filler shape num channels height width"),
    USED("EltwiseParameter", "operation coeff stable_prod_grad"),
    USED("ELUParameter", "alpha"),
    USED("ExpParameter", "base_ scale shift"),
    USED("FlattenParameter", "axis end_axis"),
    USED("ImageDataParameter",
         "source batch_size rand_skip shuffle new_height new_width is_color scale mean_file crop_size mirror "
         "root_folder"),
    USED("InnerProductParameter", "num_output bias_term weight_filler bias_filler axis transpose"),
    USED("InputParameter", "shape"),
    USED("LogParameter", "base_ scale shift"),
    USED("LRNParameter", "local_size alpha beta norm_region k"),
    INERT("LRNParameter", "engine", k_engine),
    USED("MemoryDataParameter", "batch_size channels height width"),
    USED("PoolingParameter",
         "pool pad pad_h pad_w kernel_size kernel_h kernel_w stride stride_h stride_w global_pooling round_mode"),
    INERT("PoolingParameter", "engine", k_engine),
    UPGRADED("PoolingParameter", "ceil_mode", "Caffe forks' spelling of round_mode: upgrade.c turns it into round_mode"),
    USED("PowerParameter", "power scale shift"),
    USED("PReLUParameter", "filler channel_shared"),
    USED("PythonParameter", "module layer param_str"),
    INERT("PythonParameter", "share_in_parallel",
          "Caffe's sharing of one Python layer object between the solvers of a multi-GPU run; cortado builds one "
          "object per net, which is what a single solver has"),
    USED("ReLUParameter", "negative_slope"),
    INERT("ReLUParameter", "engine", k_engine),
    USED("ReshapeParameter", "shape axis num_axes"),
    USED("ScaleParameter", "axis num_axes filler bias_term bias_filler"),
    INERT("SigmoidParameter", "engine", k_engine),
    USED("SliceParameter", "axis slice_point slice_dim"),
    USED("SoftmaxParameter", "axis"),
    INERT("SoftmaxParameter", "engine", k_engine),
    INERT("TanHParameter", "engine", k_engine),
    USED("ClipParameter", "min max"),
    USED("ContrastiveLossParameter", "margin legacy_version"),
    USED("CropParameter", "axis offset"),
    USED("EmbedParameter", "num_output input_dim bias_term weight_filler bias_filler"),
    USED("HDF5DataParameter", "source batch_size shuffle"),
    USED("HDF5OutputParameter", "file_name"),
    USED("HingeLossParameter", "norm"),
    USED("InfogainLossParameter", "source axis"),
    USED("MVNParameter", "normalize_variance across_channels eps"),
    USED("ParameterParameter", "shape"),
    USED("RecurrentParameter", "num_output weight_filler bias_filler expose_hidden"),
    REFUSED("RecurrentParameter", "debug_info",
            "Caffe prints its unrolled net's internals; cortado runs RNN and LSTM directly, with no unrolled net to "
            "print"),
    USED("ReductionParameter", "operation axis coeff"),
    USED("SwishParameter", "beta"),
    USED("SPPParameter", "pyramid_height pool"),
    INERT("SPPParameter", "engine", k_engine),
    USED("ThresholdParameter", "threshold"),
    USED("TileParameter", "axis tiles"),
    USED("WindowDataParameter",
         "source scale mean_file batch_size crop_size mirror fg_threshold bg_threshold fg_fraction context_pad "
         "crop_mode cache_images root_folder"),
    /* old layer formats: gone once upgrade.c has run */
    UPGRADED("V1LayerParameter",
             "bottom top name include exclude type blobs param blob_share_mode blobs_lr weight_decay loss_weight "
             "accuracy_param argmax_param concat_param contrastive_loss_param convolution_param data_param "
             "dropout_param dummy_data_param eltwise_param exp_param hdf5_data_param hdf5_output_param "
             "hinge_loss_param image_data_param infogain_loss_param inner_product_param lrn_param memory_data_param "
             "mvn_param pooling_param power_param relu_param sigmoid_param softmax_param slice_param tanh_param "
             "threshold_param window_data_param transform_param loss_param layer",
             k_v1),
    UPGRADED("V0LayerParameter",
             "name type num_output biasterm weight_filler bias_filler pad kernelsize group stride pool dropout_ratio "
             "local_size alpha beta k source scale meanfile batchsize cropsize mirror blobs blobs_lr weight_decay "
             "rand_skip det_fg_threshold det_bg_threshold det_fg_fraction det_context_pad det_crop_mode new_num "
             "new_channels new_height new_width shuffle_images concat_dim hdf5_output_param",
             k_v0),

    /* ---- solvers */
    USED("SolverParameter",
         "net net_param train_net test_net train_net_param test_net_param train_state test_state test_iter "
         "test_interval test_compute_loss test_initialization base_lr display average_loss max_iter iter_size "
         "lr_policy gamma power momentum weight_decay regularization_type stepsize stepvalue clip_gradients snapshot "
         "snapshot_prefix snapshot_format solver_mode random_seed type delta momentum2 rms_decay debug_info "
         "snapshot_after_train weights cluster framework device_id"),
    REFUSED("SolverParameter", "snapshot_diff",
            "cortado's update consumes the gradients in place, so there is no update step left to write beside the "
            "weights"),
    INERT("SolverParameter", "layer_wise_reduce",
          "Caffe's overlap of multi-GPU gradient exchange with backward; a scheduling choice with the same results"),
    UPGRADED("SolverParameter", "solver_type", "the deprecated enum: upgrade.c turns it into type"),
    USED("ClusterParameter",
         "nworker_groups nserver_groups nworkers_per_group nservers_per_group nworkers_per_procs nservers_per_procs "
         "server_worker_separate sync_freq"),
    USED("SolverState", "iter learned_net history layer_state loss_history solver_type"),
    INERT("SolverState", "current_step",
          "written for Caffe's resume; cortado derives the multistep position from iter and stepvalue again"),
    INERT("SolverState", "solver_rng",
          "the run's seed, recorded for inspection; resuming restores every layer's own random stream instead"),
    USED("LayerState", "layer cursor rng"),
};

static const int k_nrules = (int)(sizeof k_rules / sizeof *k_rules);

const char *ct_field_use_name(ct_field_use u) {
  switch (u) {
    case CT_FIELD_USED: return "used";
    case CT_FIELD_INERT: return "inert";
    case CT_FIELD_REFUSED: return "refused";
    case CT_FIELD_UPGRADED: return "upgraded";
    case CT_FIELD_UNREACHED: return "unreached";
  }
  return "?";
}

/* Whether `name` is a word of the space-separated list. */
static bool in_list(const char *list, const char *name) {
  const size_t n = strlen(name);
  for (const char *p = list; *p;) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ') e++;
    if ((size_t)(e - p) == n && !strncmp(p, name, n)) return true;
    p = e;
  }
  return false;
}

bool ct_field_class(const char *msg, const char *field, ct_field_use *use, const char **why) {
  for (int i = 0; i < k_nrules; i++)
    if (!strcmp(k_rules[i].msg, msg) && in_list(k_rules[i].fields, field)) {
      if (use) *use = k_rules[i].use;
      if (why) *why = k_rules[i].why;
      return true;
    }
  return false;
}

bool ct_field_rule_at(int i, const char **msg, const char **fields, ct_field_use *use, const char **why) {
  if (i < 0 || i >= k_nrules) return false;
  *msg = k_rules[i].msg;
  *fields = k_rules[i].fields;
  *use = k_rules[i].use;
  *why = k_rules[i].why;
  return true;
}
