/* Gradient-check rows: vision, fully-connected, normalisation, softmax layers. */

/* ---- Convolution (learnable blobs get random fillers so that no gradient is trivially 0) */
#define CONV_FILL "weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"gaussian\" std: 0.5 }"
GC_ROW("type: \"Convolution\" convolution_param { num_output: 4 kernel_size: 3 " CONV_FILL " }", "2x3x6x5", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 3 kernel_size: 3 pad: 1 stride: 2 " CONV_FILL " }",
       "2x2x7x6", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 6 kernel_size: 3 group: 2 pad: 1 " CONV_FILL " }",
       "2x4x5x5", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 4 kernel_size: 3 group: 4 " CONV_FILL " }",
       "1x4x5x6", "") /* depthwise */
GC_ROW("type: \"Convolution\" convolution_param { num_output: 2 kernel_size: 3 dilation: 2 pad: 2 " CONV_FILL " }",
       "1x2x7x7", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 "
       "pad_h: 1 pad_w: 0 " CONV_FILL " }",
       "2x2x5x7", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 3 kernel_size: 3 kernel_size: 2 pad: 1 pad: 0 "
       "stride: 2 stride: 1 dilation: 1 dilation: 2 " CONV_FILL " }",
       "2x2x6x7", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 3 kernel_size: 1 " CONV_FILL " }", "2x5x3x4", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 4 kernel_size: 2 group: 2 bias_term: false "
       "weight_filler { type: \"gaussian\" std: 0.5 } }",
       "2x2x4x4", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 2 kernel_size: 4 stride: 3 " CONV_FILL " }",
       "1x3x4x4", "") /* kernel = input */
GC_ROW("type: \"Convolution\" top: \"a\" top: \"b\" convolution_param { num_output: 3 kernel_size: 2 stride: 2 "
       CONV_FILL " }",
       "2x2x5x4;2x2x5x4", "") /* two bottom/top pairs share the weights */
/* DIRECT (the cost model's pick for group == channels; forced here too, on a channel
 * multiplier with stride 2 and on thin groups), and a 1x1 over single-pixel images (one GEMM) */
GC_ROW("type: \"Convolution\" convolution_param { num_output: 5 kernel_size: 3 group: 5 pad: 1 " CONV_FILL " }",
       "2x5x9x7", "")
GC_ROW("type: \"Convolution\" lowering: DIRECT convolution_param { num_output: 6 kernel_size: 3 group: 3 pad: 1 "
       "stride: 2 " CONV_FILL " }",
       "2x3x7x6", "")
GC_ROW("type: \"Convolution\" lowering: DIRECT convolution_param { num_output: 4 kernel_size: 3 group: 2 "
       "dilation: 2 pad: 1 " CONV_FILL " }",
       "1x4x7x7", "")
GC_ROW("type: \"Convolution\" convolution_param { num_output: 3 kernel_size: 1 " CONV_FILL " }", "3x5x1x1", "")
#undef CONV_FILL

/* ---- Pooling (MAX on distinct values so that no window's maximum changes within a step) */
GC_ROW("type: \"Pooling\" pooling_param { pool: MAX kernel_size: 3 stride: 2 }", "2x3x7x6:perm", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }", "2x2x6x7:perm", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR }", "2x2x5x7:perm",
       "")
GC_ROW("type: \"Pooling\" pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 "
       "pad_w: 1 }",
       "1x3x6x5:perm", "")
GC_ROW("type: \"Pooling\" top: \"y\" top: \"mask\" pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
       "2x2x5x4:perm", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: MAX global_pooling: true }", "2x3x4x5:perm", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 stride: 2 }", "2x3x7x6", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }", "2x2x6x7", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR }",
       "2x2x6x7", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 "
       "pad_w: 2 }",
       "1x2x5x6", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: AVE global_pooling: true }", "2x3x4x5", "")
GC_ROW("type: \"Pooling\" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }", "2x2x5x4:pos", "phase=test")

/* ---- InnerProduct */
#define IP_FILL "weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"gaussian\" std: 0.5 }"
GC_ROW("type: \"InnerProduct\" inner_product_param { num_output: 5 " IP_FILL " }", "3x2x3x2", "")
GC_ROW("type: \"InnerProduct\" inner_product_param { num_output: 4 transpose: true " IP_FILL " }", "3x7", "")
GC_ROW("type: \"InnerProduct\" inner_product_param { num_output: 3 axis: 2 " IP_FILL " }", "2x3x4x2", "")
GC_ROW("type: \"InnerProduct\" inner_product_param { num_output: 3 axis: -1 transpose: true bias_term: false "
       "weight_filler { type: \"gaussian\" std: 0.5 } }",
       "2x3x5", "")
#undef IP_FILL

/* ---- LRN */
GC_ROW("type: \"LRN\"", "2x7x3x3", "")
GC_ROW("type: \"LRN\" lrn_param { local_size: 3 alpha: 0.5 beta: 0.6 k: 2 }", "2x4x3x2", "")
GC_ROW("type: \"LRN\" lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.8 beta: 0.75 }", "2x2x5x4",
       "")
GC_ROW("type: \"LRN\" lrn_param { norm_region: WITHIN_CHANNEL local_size: 5 alpha: 2 beta: 0.5 }", "1x2x3x4", "")

/* ---- BatchNorm (the statistics blobs are state: param_propagate_down is false, none is checked) */
GC_ROW("type: \"BatchNorm\"", "3x4x2x3", "")
GC_ROW("type: \"BatchNorm\"", "5x3", "")
GC_ROW("type: \"BatchNorm\" batch_norm_param { eps: 0.5 }", "2x3x2x2", "phase=test")
GC_ROW("type: \"BatchNorm\" batch_norm_param { use_global_stats: true eps: 0.1 }", "2x3x2x2", "")

/* ---- Scale, Bias */
GC_ROW("type: \"Scale\" scale_param { filler { type: \"gaussian\" std: 1 } }", "2x3x4x5", "")
GC_ROW("type: \"Scale\" scale_param { bias_term: true filler { type: \"gaussian\" std: 1 } "
       "bias_filler { type: \"gaussian\" std: 1 } }",
       "2x3x4", "")
GC_ROW("type: \"Scale\" scale_param { axis: 0 num_axes: -1 filler { type: \"uniform\" min: -1 max: 1 } }", "2x3x4",
       "")
GC_ROW("type: \"Scale\" scale_param { num_axes: 0 filler { type: \"constant\" value: 1.5 } }", "2x3x4", "")
GC_ROW("type: \"Scale\"", "2x3x4x5;3x4", "")
GC_ROW("type: \"Scale\" scale_param { axis: 0 bias_term: true bias_filler { type: \"gaussian\" std: 1 } }",
       "2x3x4;2", "")
GC_ROW("type: \"Bias\" bias_param { filler { type: \"gaussian\" std: 1 } }", "2x3x4x5", "")
GC_ROW("type: \"Bias\" bias_param { axis: -2 num_axes: 2 filler { type: \"gaussian\" std: 1 } }", "2x3x4x5", "")
GC_ROW("type: \"Bias\"", "2x3x4x5;3x4", "")

/* ---- Softmax, SoftmaxWithLoss (labels are not differentiated: check=1) */
GC_ROW("type: \"Softmax\"", "3x6", "")
GC_ROW("type: \"Softmax\"", "2x4x3x2", "")
GC_ROW("type: \"Softmax\" softmax_param { axis: -1 }", "2x3x5", "")
GC_ROW("type: \"SoftmaxWithLoss\"", "4x5;4:labels5", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\"", "2x4x3x2;2x3x2:labels4", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" softmax_param { axis: 2 }", "2x3x4;2x3:labels4", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" loss_param { ignore_label: 2 }", "2x4x3x2;2x1x3x2:labels4", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" loss_param { ignore_label: 1 normalization: FULL }", "6x3;6:labels3", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" loss_param { normalization: BATCH_SIZE }", "2x4x3x2;2x3x2:labels4", "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" loss_param { ignore_label: 0 normalization: NONE }", "2x4x3x2;2x3x2:labels4",
       "check=1")
GC_ROW("type: \"SoftmaxWithLoss\" loss_param { normalize: false }", "2x4x3x2;2x3x2:labels4", "check=1")

/* ---- issue 21: Deconvolution, on every lowering type of the convolution it transposes */
#define DECONV_FILL "weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"gaussian\" std: 0.5 }"
GC_ROW("type: \"Deconvolution\" convolution_param { num_output: 3 kernel_size: 3 " DECONV_FILL " }", "2x4x4x3", "")
GC_ROW("type: \"Deconvolution\" convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 " DECONV_FILL " }",
       "2x3x3x4", "")
GC_ROW("type: \"Deconvolution\" lowering: TYPE2 convolution_param { num_output: 2 kernel_size: 3 stride: 2 "
       DECONV_FILL " }", "2x3x3x3", "")
GC_ROW("type: \"Deconvolution\" lowering: TYPE3 convolution_param { num_output: 4 kernel_size: 3 pad: 1 group: 2 "
       DECONV_FILL " }", "2x2x4x3", "")
GC_ROW("type: \"Deconvolution\" lowering: WINOGRAD convolution_param { num_output: 3 kernel_size: 3 pad: 1 "
       DECONV_FILL " }", "2x2x4x5", "")
GC_ROW("type: \"Deconvolution\" lowering: TYPE1 convolution_param { num_output: 2 kernel_h: 3 kernel_w: 2 "
       "stride_h: 2 stride_w: 3 dilation: 2 bias_term: false weight_filler { type: \"gaussian\" std: 0.5 } }",
       "2x2x3x3", "")
GC_ROW("type: \"Deconvolution\" convolution_param { num_output: 3 kernel_size: 1 " DECONV_FILL " }", "2x2x3x4", "")
GC_ROW("type: \"Deconvolution\" top: \"a\" top: \"b\" convolution_param { num_output: 2 kernel_size: 2 stride: 2 "
       DECONV_FILL " }", "2x3x2x3;2x3x2x3", "")
#undef DECONV_FILL

/* ---- issue 21: Crop (the reference bottom takes no gradient) */
GC_ROW("type: \"Crop\"", "2x3x6x7;2x1x4x3", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: 2 offset: 1 offset: 2 }", "2x3x6x7;2x1x4x3", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: 1 offset: 1 }", "2x4x5x5;2x2x3x3", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: 0 offset: 1 }", "3x4x5;1x2x2", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: 1 offset: 2 }", "3x7;3x4", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: -1 offset: 3 }", "2x3x2x2x7;2x3x2x2x2", "check=1")
GC_ROW("type: \"Crop\" crop_param { axis: 0 offset: 2 }", "7;4", "check=1")
/* ---- issue 21: SPP (MAX on distinct values), Im2col */
GC_ROW("type: \"SPP\" spp_param { pyramid_height: 3 }", "2x2x7x6:perm", "step=0.001")
GC_ROW("type: \"SPP\" spp_param { pyramid_height: 2 pool: AVE }", "2x3x5x4", "")
GC_ROW("type: \"SPP\" spp_param { pyramid_height: 1 }", "2x2x3x4:perm", "step=0.001")
GC_ROW("type: \"Im2col\" convolution_param { kernel_size: 3 }", "2x2x4x5", "")
GC_ROW("type: \"Im2col\" convolution_param { kernel_size: 3 stride: 2 pad: 1 dilation: 1 }", "2x3x5x5", "")
GC_ROW("type: \"Im2col\" convolution_param { kernel_h: 2 kernel_w: 3 dilation: 2 pad: 1 }", "3x2x5x6", "")
