/* Data, input and plumbing layers. */
CT_LAYER(Input)
CT_LAYER(DummyData)
CT_LAYER(Data)
CT_LAYER(ImageData)
CT_LAYER(MemoryData)
CT_LAYER(Python)
