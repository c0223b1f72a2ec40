/* Gradient-check rows: neuron, structural, loss layers. */
