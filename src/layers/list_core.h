/* Data, input and plumbing layers. */
CT_LAYER(Input)
CT_LAYER(DummyData)
CT_LAYER(Data)
CT_LAYER(ImageData)
CT_LAYER(MemoryData)
CT_LAYER(Python)
/* ---- issue 21: Caffe 1.0's HDF5 data layers. */
CT_LAYER(HDF5Data)
CT_LAYER(HDF5Output)
CT_LAYER(WindowData)
