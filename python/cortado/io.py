"""pycaffe's caffe.io: the Transformer (images in H x W x C, [0, 1], RGB to a net's C x H x W
input and back), image loading and resizing, oversampling, and conversions between numpy
arrays and BlobProto / Datum messages.

Images load with PIL (Debian's python3-pil) and resize with the interpolation written here
(bilinear or nearest, pixel centres aligned as skimage's resize, edges clamped), so no
scikit-image or SciPy is needed. The protobuf conversions need cortado.proto.caffe_pb2
(python3-protobuf).
"""
import numpy as np

# ------------------------------------------------------------------ images


def load_image(filename, color=True):
    """An image as float32 H x W x 3 (color) or H x W x 1 (gray) in [0, 1]. Gray from color
    uses the ITU-R 709 luma weights (0.2125, 0.7154, 0.0721), as skimage's rgb2gray."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("cortado.io.load_image needs PIL (Debian's python3-pil)") from None
    with Image.open(filename) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            maxv = 65535.0 if im.mode.startswith("I;16") or arr.max() <= 65535 else 2.0 ** 31 - 1
            img = (arr / maxv)[:, :, None]
        elif im.mode == "F":
            img = np.asarray(im, dtype=np.float64)[:, :, None]
        elif im.mode in ("L", "1"):
            img = np.asarray(im.convert("L"), dtype=np.float64)[:, :, None] / 255.0
        else:
            img = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    if color and img.shape[2] == 1:
        img = np.tile(img, (1, 1, 3))
    elif not color and img.shape[2] == 3:
        img = (img @ np.array([0.2125, 0.7154, 0.0721]))[:, :, None]
    return img.astype(np.float32)


def _axis_weights(n_in, n_out, order):
    """For each output index along one axis: the two input indices and the second one's weight."""
    scale = n_in / float(n_out)
    src = (np.arange(n_out) + 0.5) * scale - 0.5  # pixel centres aligned
    if order == 0:
        idx = np.clip(np.floor(src + 0.5).astype(np.int64), 0, n_in - 1)
        return idx, idx, np.zeros(n_out)
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def resize_image(im, new_dims, interp_order=1):
    """Resizes an H x W x K image to new_dims (height, width): interp_order 1 bilinear, 0 nearest.
    Output pixel (y, x) samples the input at ((y + 0.5) * H / h - 0.5, ...), clamped at the edges.
    An image whose values are all equal comes back filled with that value. Returns float32."""
    im = np.asarray(im)
    if im.ndim != 3:
        raise ValueError("resize_image needs an H x W x K image, got shape %s" % (im.shape,))
    h, w = (int(d) for d in new_dims[:2])
    if h <= 0 or w <= 0:
        raise ValueError("new_dims must be positive, got %s" % (tuple(new_dims),))
    if interp_order not in (0, 1):
        raise ValueError("interp_order %r: cortado.io resizes with 0 (nearest) or 1 (bilinear)" % (interp_order,))
    if im.size and im.min() == im.max():
        return np.full((h, w, im.shape[2]), im.flat[0], dtype=np.float32)
    x = im.astype(np.float64)
    y0, y1, wy = _axis_weights(x.shape[0], h, interp_order)
    x0, x1, wx = _axis_weights(x.shape[1], w, interp_order)
    rows = x[y0] * (1 - wy)[:, None, None] + x[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return out.astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops of each H x W x K image: the four corners and the centre, then the same five
    mirrored left-right. Returns (10 N) x h x w x K float32."""
    images = [np.asarray(im) for im in images]
    H, W, K = images[0].shape
    ch, cw = (int(d) for d in crop_dims[:2])
    if ch > H or cw > W:
        raise ValueError("crop %dx%d is larger than the %dx%d images" % (ch, cw, H, W))
    starts = [(0, 0), (0, W - cw), (H - ch, 0), (H - ch, W - cw), (int((H - ch) / 2.0), int((W - cw) / 2.0))]
    crops = np.empty((10 * len(images), ch, cw, K), dtype=np.float32)
    k = 0
    for im in images:
        for y, x in starts:
            crops[k] = im[y:y + ch, x:x + cw, :]
            k += 1
        crops[k:k + 5] = crops[k - 5:k, :, ::-1, :]
        k += 5
    return crops


# ------------------------------------------------------------------ the Transformer

class Transformer:
    """Prepares images for a net's inputs, as pycaffe's: `inputs` maps input names to their
    shapes (N x C x H x W). preprocess: resize to H x W, transpose, channel swap, raw scale,
    subtract the mean, input scale. deprocess undoes them in reverse order."""

    def __init__(self, inputs):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check(self, name):
        if name not in self.inputs:
            raise KeyError("%r is not one of the net inputs: %s" % (name, ", ".join(self.inputs)))

    def preprocess(self, in_, data):
        self._check(in_)
        x = np.array(data, dtype=np.float32)  # a copy: the caller's array is left alone
        dims = self.inputs[in_][2:]
        if x.shape[:2] != tuple(dims):
            x = resize_image(x, dims)
        if self.transpose.get(in_) is not None:
            x = x.transpose(self.transpose[in_])
        if self.channel_swap.get(in_) is not None:
            x = x[list(self.channel_swap[in_]), :, :]
        if self.raw_scale.get(in_) is not None:
            x *= self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            x -= self.mean[in_]
        if self.input_scale.get(in_) is not None:
            x *= self.input_scale[in_]
        return x

    def deprocess(self, in_, data):
        self._check(in_)
        x = np.array(data, dtype=np.float32).squeeze()
        if self.input_scale.get(in_) is not None:
            x /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            x += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            x /= self.raw_scale[in_]
        if self.channel_swap.get(in_) is not None:
            x = x[np.argsort(self.channel_swap[in_]), :, :]
        if self.transpose.get(in_) is not None:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x

    def set_transpose(self, in_, order):
        """The axis order from the image's (H x W x C) to the input's (C x H x W): (2, 0, 1)."""
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("transpose order %s needs %d axes, as the input (without its batch axis)"
                             % (tuple(order), len(self.inputs[in_]) - 1))
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """The channel order after transposing, e.g. (2, 1, 0) for RGB to BGR."""
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("channel swap %s needs %d entries, one per input channel"
                             % (tuple(order), self.inputs[in_][1]))
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Multiplies the image (in [0, 1]) by scale, e.g. 255 for nets trained on [0, 255]."""
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean to subtract: one value per channel (C,) or a whole image (C x H x W, or
        H x W for one channel)."""
        self._check(in_)
        mean = np.asarray(mean, dtype=np.float32)
        shape = self.inputs[in_]
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise ValueError("mean has %d channels; the input has %d" % (mean.shape[0], shape[1]))
            mean = mean[:, None, None]
        else:
            ms = mean.shape if mean.ndim != 2 else (1,) + mean.shape
            if len(ms) != 3:
                raise ValueError("mean must be (C,), (H, W) or (C, H, W), got shape %s" % (mean.shape,))
            if tuple(ms) != tuple(shape[1:]):
                raise ValueError("mean shape %s does not match the input's %s" % (tuple(ms), tuple(shape[1:])))
            mean = mean.reshape(ms)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiplies the input by scale after the mean is subtracted."""
        self._check(in_)
        self.input_scale[in_] = scale


# ------------------------------------------------------------------ protobuf conversions

def _pb2():
    from .proto import caffe_pb2
    return caffe_pb2


def blobproto_to_array(blob, return_diff=False):
    """A BlobProto's data (or diff) as a numpy array of its shape (the legacy 4-D fields when
    the blob has them)."""
    values = np.array(blob.diff if return_diff else blob.data)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return values.reshape(blob.num, blob.channels, blob.height, blob.width)
    return values.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr, diff=None):
    """A BlobProto holding arr (and diff, same shape, when given)."""
    arr = np.asarray(arr)
    blob = _pb2().BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(float).flat)
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(float).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    vec = _pb2().BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(a) for a in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(s):
    vec = _pb2().BlobProtoVector()
    vec.ParseFromString(s)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum from a C x H x W array: bytes when it is uint8, float_data otherwise."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError("array_to_datum needs a C x H x W array, got shape %s" % (arr.shape,))
    datum = _pb2().Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """A Datum's values as a C x H x W array (uint8 for byte data, float otherwise)."""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    return np.array(datum.float_data).astype(float).reshape(shape)
