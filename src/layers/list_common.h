/* Neuron (element-wise), structural, loss and metric layers. */
