/* Gradient-check rows: vision, fully-connected, normalisation, softmax layers. */
