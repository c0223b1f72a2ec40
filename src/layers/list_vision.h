/* Vision, fully-connected, normalisation and softmax layers. */
