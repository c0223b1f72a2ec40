/* Gradient-check rows: neuron, structural, loss layers. */

/* ---- neuron */
GC_ROW("type: \"ReLU\"", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"ReLU\" relu_param { negative_slope: 0.1 }", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"ReLU\" relu_param { negative_slope: -0.5 }", "2x3x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"PReLU\"", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"PReLU\" prelu_param { channel_shared: true }", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"PReLU\" prelu_param { filler { type: \"uniform\" min: -0.5 max: 0.8 } }", "3x4",
       "kink=0 kink_range=0.02")
GC_ROW("type: \"ELU\"", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"ELU\" elu_param { alpha: 0.5 }", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"Sigmoid\"", "2x3x4x5", "")
GC_ROW("type: \"TanH\"", "2x3x4x5", "")
GC_ROW("type: \"AbsVal\"", "2x3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"Power\"", "2x3x4", "")
GC_ROW("type: \"Power\" power_param { power: 2 scale: 0.5 shift: 1 }", "2x3x4", "")
GC_ROW("type: \"Power\" power_param { power: 0.37 scale: 0.83 shift: -0.2 }", "2x3x4:pos", "")
GC_ROW("type: \"Power\" power_param { power: -1.5 scale: 1.2 shift: 0.1 }", "2x3x4:pos", "")
GC_ROW("type: \"Exp\"", "2x3x4", "")
GC_ROW("type: \"Exp\" exp_param { base: 2 scale: 0.5 shift: 1 }", "2x3x4", "")
GC_ROW("type: \"Log\"", "2x3x4:pos", "")
GC_ROW("type: \"Log\" log_param { base: 2 scale: 0.5 shift: 1 }", "2x3x4:pos", "")
GC_ROW("type: \"BNLL\"", "2x3x4x5", "")
GC_ROW("type: \"Dropout\"", "2x3x4x5", "")
GC_ROW("type: \"Dropout\" dropout_param { dropout_ratio: 0.2 }", "2x3x4x5", "")
GC_ROW("type: \"Dropout\"", "2x3x4x5", "phase=test")

/* ---- losses (a label bottom is not differentiated where the layer gives it no gradient) */
GC_ROW("type: \"EuclideanLoss\"", "4x3x2;4x6", "")
GC_ROW("type: \"SigmoidCrossEntropyLoss\"", "4x3;4x3:unit", "check=1")
GC_ROW("type: \"SigmoidCrossEntropyLoss\" loss_param { normalization: FULL }", "4x3x2;4x3x2:binary", "check=1")
GC_ROW("type: \"SigmoidCrossEntropyLoss\" loss_param { ignore_label: 2 normalization: VALID }", "5x4;5x4:labels3",
       "check=1")

/* ---- structure */
GC_ROW("type: \"Concat\" top: \"y\"", "2x3x4;2x2x4;2x1x4", "")
GC_ROW("type: \"Concat\" concat_param { axis: 0 }", "2x3x2;1x3x2", "")
GC_ROW("type: \"Concat\" concat_param { axis: -1 }", "2x3x2;2x3x3", "")
GC_ROW("type: \"Concat\" concat_param { concat_dim: 1 }", "2x3x2x2;2x1x2x2", "")
GC_ROW("type: \"Concat\"", "2x3x2", "")
GC_ROW("type: \"Slice\" top: \"a\" top: \"b\" top: \"c\"", "2x6x3", "")
GC_ROW("type: \"Slice\" slice_param { axis: 0 slice_point: 1 slice_point: 3 } top: \"a\" top: \"b\" top: \"c\"",
       "4x3x2", "")
GC_ROW("type: \"Slice\" slice_param { slice_dim: 1 slice_point: 2 } top: \"a\" top: \"b\"", "2x5x2", "")
GC_ROW("type: \"Slice\" slice_param { axis: -1 slice_point: 1 } top: \"a\" top: \"b\"", "2x3x4", "")
GC_ROW("type: \"Split\" top: \"a\" top: \"b\" top: \"c\"", "2x3x4", "")
GC_ROW("type: \"Split\" top: \"a\"", "2x3", "")
GC_ROW("type: \"Flatten\"", "2x3x4x5", "")
GC_ROW("type: \"Flatten\" flatten_param { axis: 1 end_axis: 2 }", "2x3x4x5", "")
GC_ROW("type: \"Reshape\" reshape_param { shape { dim: 0 dim: -1 dim: 2 } }", "2x3x4", "")
GC_ROW("type: \"Reshape\" reshape_param { shape { dim: 2 dim: 2 } axis: 1 num_axes: 1 }", "3x4x5", "")
GC_ROW("type: \"Eltwise\"", "2x3x4;2x3x4", "")
GC_ROW("type: \"Eltwise\" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1.5 }", "2x3x4;2x3x4;2x3x4", "")
GC_ROW("type: \"Eltwise\" eltwise_param { operation: PROD }", "2x3x4;2x3x4;2x3x4", "")
GC_ROW("type: \"Eltwise\" eltwise_param { operation: PROD stable_prod_grad: false }", "2x3x4:pos;2x3x4:pos", "")
/* MAX: independent Gaussian bottoms and a small step, so that no two bottoms come within a step
 * of each other (shuffled "perm" bottoms would share values at some positions). */
GC_ROW("type: \"Eltwise\" eltwise_param { operation: MAX }", "2x3x4;2x3x4;2x3x4", "step=0.001")
GC_ROW("type: \"Eltwise\" eltwise_param { operation: MAX }", "3x5:perm;3x5:pos", "step=0.001")
GC_ROW("type: \"Silence\"", "2x3;4", "")

/* ---- Python: test_gradcheck installs a stand-in runtime (y = w * x^3, w learnable) for the
 * layer's C half; py_python_layers.py checks real Python layers */
GC_ROW("type: \"Python\" bottom: \"x\" top: \"y\" python_param { module: \"stand_in\" layer: \"Cube\" }", "2x3x4", "")
/* ---- issue 21: Caffe 1.0's remaining layers (and Clip, Swish from Caffe's later master) */
GC_ROW("type: \"Threshold\" threshold_param { threshold: 0.2 }", "2x3x4x5", "kink=0.2 kink_range=0.02")
/* Clip has two kinks and a row skips one: each row puts the other bound out of the inputs' reach */
GC_ROW("type: \"Clip\" clip_param { min: -0.5 max: 10 }", "2x3x4x5", "kink=-0.5 kink_range=0.02")
GC_ROW("type: \"Clip\" clip_param { min: -3 max: 0.7 }", "2x3x4x5:unit", "kink=0.7 kink_range=0.02")
GC_ROW("type: \"Swish\"", "2x3x4x5", "")
GC_ROW("type: \"Swish\" swish_param { beta: 2.5 }", "2x3x4", "")
GC_ROW("type: \"Reduction\"", "2x3x4", "")
GC_ROW("type: \"Reduction\" reduction_param { operation: SUM axis: 1 coeff: -1.5 }", "3x4x5", "")
GC_ROW("type: \"Reduction\" reduction_param { operation: ASUM axis: 1 }", "3x4x5", "kink=0 kink_range=0.02")
GC_ROW("type: \"Reduction\" reduction_param { operation: SUMSQ axis: 2 coeff: 0.5 }", "3x4x5", "")
GC_ROW("type: \"Reduction\" reduction_param { operation: MEAN axis: -1 coeff: 2 }", "3x4x5", "")
GC_ROW("type: \"Reduction\" reduction_param { operation: MEAN axis: 0 }", "3x4", "")
GC_ROW("type: \"Tile\" tile_param { tiles: 3 }", "2x3x2", "")
GC_ROW("type: \"Tile\" tile_param { axis: 0 tiles: 2 }", "2x3", "")
GC_ROW("type: \"Tile\" tile_param { axis: -1 tiles: 4 }", "3x2x3", "")
GC_ROW("type: \"MVN\"", "2x3x4x5", "")
GC_ROW("type: \"MVN\" mvn_param { across_channels: true }", "2x3x4x5", "")
GC_ROW("type: \"MVN\" mvn_param { normalize_variance: false }", "2x3x4x5", "")
GC_ROW("type: \"MVN\" mvn_param { normalize_variance: false across_channels: true }", "3x2x5", "")
GC_ROW("type: \"MultinomialLogisticLoss\"", "4x5:pos;4:labels5", "check=1")
GC_ROW("type: \"MultinomialLogisticLoss\"", "3x2x2:unit;3x1x1x1:labels4", "check=1 step=0.001")
GC_ROW("type: \"InfogainLoss\"", "4x5;4:labels5;5x5:unit", "check=1")
GC_ROW("type: \"InfogainLoss\" loss_param { ignore_label: 1 }", "3x4x2;3x2:labels4;4x4:pos",
       "check=1")
GC_ROW("type: \"InfogainLoss\" infogain_loss_param { axis: 2 } loss_param { normalization: FULL }",
       "2x3x4;2x3:labels4;1x1x4x4:unit", "check=1")
GC_ROW("type: \"HingeLoss\"", "4x5;4:labels5", "check=1 step=0.001")
GC_ROW("type: \"HingeLoss\" hinge_loss_param { norm: L2 }", "4x5;4:labels5", "check=1 step=0.001")
GC_ROW("type: \"ContrastiveLoss\"", "6x3;6x3;6:binary", "check=3")
GC_ROW("type: \"ContrastiveLoss\" contrastive_loss_param { margin: 3 }", "6x3;6x3;6:binary", "check=3")
GC_ROW("type: \"ContrastiveLoss\" contrastive_loss_param { margin: 6 legacy_version: true }", "6x3;6x3;6:binary",
       "check=3")
GC_ROW("type: \"Embed\" embed_param { input_dim: 7 num_output: 5 weight_filler { type: \"gaussian\" } "
       "bias_filler { type: \"gaussian\" } }", "4x3:labels7", "check=0")
GC_ROW("type: \"Embed\" embed_param { input_dim: 3 num_output: 2 bias_term: false weight_filler { type: \"gaussian\" } }",
       "6:labels3", "check=0")
GC_ROW("type: \"Parameter\" parameter_param { shape { dim: 2 dim: 3 } }", "", "")
GC_ROW("type: \"BatchReindex\"", "4x3x2;6:labels4", "check=1")
GC_ROW("type: \"Filter\" top: \"a\" top: \"b\"", "5x3;5x2x2;5:binary", "check=3")
GC_ROW("type: \"Filter\"", "6x2;6x1x1x1:labels3", "check=1")
/* recurrent: without expose_hidden the state carries over from one forward to the next, so the
 * first step's cont is 0 ("seqN": N streams restart) and the carried state drops out */
#define RFILL "weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"gaussian\" std: 0.5 }"
GC_ROW("type: \"RNN\" recurrent_param { num_output: 3 " RFILL " }", "4x2x3;4x2:seq2", "check=1")
GC_ROW("type: \"RNN\" recurrent_param { num_output: 2 " RFILL " }", "3x3x2x2;3x3:seq3;3x4", "check=5")
GC_ROW("type: \"RNN\" top: \"o\" top: \"hT\" recurrent_param { num_output: 3 expose_hidden: true " RFILL " }",
       "3x2x3;3x2:binary;1x2x3", "check=5")
GC_ROW("type: \"LSTM\" recurrent_param { num_output: 3 " RFILL " }", "4x2x3;4x2:seq2", "check=1")
GC_ROW("type: \"LSTM\" recurrent_param { num_output: 2 " RFILL " }", "3x3x2x2;3x3:seq3;3x4", "check=5")
GC_ROW("type: \"LSTM\" top: \"h\" top: \"hT\" top: \"cT\" recurrent_param { num_output: 3 expose_hidden: true "
       RFILL " }", "3x2x3;3x2:binary;2x2;1x2x3;1x2x3", "check=29")
GC_ROW("type: \"LSTMUnit\" top: \"c\" top: \"h\"", "1x3x2;1x3x8;1x3:binary", "check=3")
#undef RFILL
