"""pycaffe's Classifier: a Net in TEST phase that takes H x W x K images (as load_image gives
them), resizes them to image_dims, crops (ten crops with oversample, else the centre) to the
input's size, preprocesses them with a Transformer and returns the first output per image
(averaged over the ten crops)."""
import numpy as np

from . import io as cio
from .net import TEST, Net


class Classifier(Net):
    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, **kwargs):
        Net.__init__(self, model_file, pretrained_file, TEST, **kwargs)
        if not self.inputs:
            raise ValueError("Classifier needs a net with an Input layer (a deploy prototxt)")
        in_ = self.inputs[0]
        shape = self.blobs[in_].shape
        self.transformer = cio.Transformer({in_: shape})
        self.transformer.set_transpose(in_, (2, 0, 1))
        if mean is not None:
            self.transformer.set_mean(in_, mean)
        if input_scale is not None:
            self.transformer.set_input_scale(in_, input_scale)
        if raw_scale is not None:
            self.transformer.set_raw_scale(in_, raw_scale)
        if channel_swap is not None:
            self.transformer.set_channel_swap(in_, channel_swap)
        self.crop_dims = np.array(shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None and len(image_dims) else self.crop_dims)

    def predict(self, inputs, oversample=True):
        """Class scores for a list of H x W x K images: (N x classes)."""
        h, w = (int(d) for d in self.image_dims[:2])
        batch = np.zeros((len(inputs), h, w, inputs[0].shape[2]), dtype=np.float32)
        for i, im in enumerate(inputs):
            batch[i] = cio.resize_image(im, (h, w))
        if oversample:
            batch = cio.oversample(batch, self.crop_dims)
        else:
            centre = np.array([h, w]) / 2.0
            box = (np.tile(centre, 2) + np.concatenate([-self.crop_dims / 2.0, self.crop_dims / 2.0])).astype(int)
            batch = batch[:, box[0]:box[2], box[1]:box[3], :]
        in_ = self.inputs[0]
        data = np.zeros((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), dtype=np.float32)
        for i, im in enumerate(batch):
            data[i] = self.transformer.preprocess(in_, im)
        scores = self.forward_all(**{in_: data})[self.outputs[0]]
        if oversample:
            scores = scores.reshape((len(scores) // 10, 10, -1)).mean(1)
        return scores
