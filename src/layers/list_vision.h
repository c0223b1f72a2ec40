/* Vision, fully-connected, normalisation and softmax layers. */
CT_LAYER(Convolution)
CT_LAYER(Pooling)
CT_LAYER(InnerProduct)
CT_LAYER(LRN)
CT_LAYER(BatchNorm)
CT_LAYER(Scale)
CT_LAYER(Bias)
CT_LAYER(Softmax)
CT_LAYER(SoftmaxWithLoss)
/* ---- issue 21: Caffe 1.0's remaining vision layers. */
CT_LAYER(Deconvolution)
CT_LAYER(Crop)
