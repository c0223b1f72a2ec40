"""pycaffe's Detector: a Net in TEST phase that scores windows (ymin, xmin, ymax, xmax) of
images, optionally with context padding around each window (R-CNN's warp with context). Window
proposals are the caller's: selective search's MATLAB binary is not part of cortado, so
detect_selective_search raises and detect_windows takes the windows."""
import numpy as np

from . import io as cio
from ._lib import CortadoError
from .net import TEST, Net


class Detector(Net):
    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None, channel_swap=None,
                 context_pad=None, **kwargs):
        Net.__init__(self, model_file, pretrained_file, TEST, **kwargs)
        if not self.inputs:
            raise ValueError("Detector needs a net with an Input layer (a deploy prototxt)")
        in_ = self.inputs[0]
        self.transformer = cio.Transformer({in_: self.blobs[in_].shape})
        self.transformer.set_transpose(in_, (2, 0, 1))
        if mean is not None:
            self.transformer.set_mean(in_, mean)
        if input_scale is not None:
            self.transformer.set_input_scale(in_, input_scale)
        if raw_scale is not None:
            self.transformer.set_raw_scale(in_, raw_scale)
        if channel_swap is not None:
            self.transformer.set_channel_swap(in_, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """[(image file or H x W x K array, [window, ...]), ...] -> a list of
        {'window', 'prediction', 'filename'} in the same order."""
        crops = []
        for image, windows in images_windows:
            im = cio.load_image(image) if isinstance(image, str) else np.asarray(image, dtype=np.float32)
            for window in windows:
                crops.append(self.crop(im, window))
        in_ = self.inputs[0]
        data = np.zeros((len(crops), crops[0].shape[2]) + tuple(self.blobs[in_].shape[2:]), dtype=np.float32)
        for i, c in enumerate(crops):
            data[i] = self.transformer.preprocess(in_, c)
        scores = self.forward_all(**{in_: data})[self.outputs[0]]
        out, k = [], 0
        for image, windows in images_windows:
            for window in windows:
                out.append({"window": window, "prediction": scores[k],
                            "filename": image if isinstance(image, str) else None})
                k += 1
        return out

    def detect_selective_search(self, image_fnames):
        raise CortadoError("detect_selective_search needs selective search's MATLAB code, which cortado does not "
                           "ship; compute windows (ymin, xmin, ymax, xmax) elsewhere and call "
                           "detect_windows([(image, windows), ...])", "unsupported")

    def crop(self, im, window):
        """The window of im (with context_pad pixels of context, scaled to the input size, the
        outside filled with the mean) as H x W x K."""
        y0, x0, y1, x1 = (int(v) for v in window[:4])
        crop = im[y0:y1, x0:x1]
        if not self.context_pad:
            return crop
        size = self.blobs[self.inputs[0]].shape[3]  # square inputs, as R-CNN's
        scale = size / (1.0 * size - self.context_pad * 2)
        half_h, half_w = (y1 - y0 + 1) / 2.0, (x1 - x0 + 1) / 2.0
        centre = (y0 + half_h, x0 + half_w)
        box = np.round(np.tile(centre, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        full_h, full_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        scale_h, scale_w = size / full_h, size / full_w
        pad_y, pad_x = int(round(max(0, -box[0]) * scale_h)), int(round(max(0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise ValueError("window %s lies outside the %dx%d image" % (tuple(window), im_h, im_w))
        crop_h, crop_w = int(round(clip_h * scale_h)), int(round(clip_w * scale_w))
        crop_h = min(crop_h, size - pad_y)
        crop_w = min(crop_w, size - pad_x)
        b = box.astype(int)
        context = cio.resize_image(im[b[0]:b[2], b[1]:b[3]], (crop_h, crop_w))
        out = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad):
        """Sets the crop size (the input's, in image axis order) and the context padding; with
        padding, the mean (in image order and scale) fills what lies outside the image."""
        in_ = self.inputs[0]
        inv = np.argsort(self.transformer.transpose[in_])
        self.crop_dims = np.array(self.blobs[in_].shape[1:])[inv]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.broadcast_to(mean, self.blobs[in_].shape[1:]).copy().transpose(inv)
        order = self.transformer.channel_swap.get(in_)
        if order is not None:
            crop_mean = crop_mean[:, :, [list(order).index(i) for i in range(crop_mean.shape[2])]]
        raw = self.transformer.raw_scale.get(in_)
        if raw is not None:
            crop_mean /= raw
        self.crop_mean = crop_mean
