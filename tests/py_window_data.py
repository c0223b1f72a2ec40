"""The WindowData layer (R-CNN's input) against a numpy transcription of Caffe's load_batch, on a
window file and PNG images written here with PIL: each served item is recognised by its label
(and, for background windows, by which of its candidates it matches), mirrored or not, and must
equal the reference warp to within one grey level (the rounding of a bilinear resize). Also the
batch's background-then-foreground split, the mean_file and "square" paths, determinism, and
bad window files refused with their line.

Env: CT_TESTKIT (libct_testkit.so). Prints "N passed, N failed"; exits non-zero on a failure.
"""
import math
import os
import shutil
import struct
import sys
import tempfile
import traceback

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctk import Layer, LayerError  # noqa: E402

passed = failed = 0
T = tempfile.mkdtemp(prefix="cortado_win.")
rng = np.random.default_rng(11)


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


def case(fn):
    def run(*a, **k):
        try:
            fn(*a, **k)
        except Exception as e:  # noqa: BLE001
            check(False, f"{fn.__name__}: {type(e).__name__}: {e}")
            traceback.print_exc()
    return run


# ---------------------------------------------------------------- the data

IMAGES = []  # (path, BGR planar uint8 3 x H x W)
for i, (h, w) in enumerate([(40, 30), (25, 36)]):
    rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    path = os.path.join(T, f"img{i}.png")
    Image.fromarray(rgb, "RGB").save(path)
    IMAGES.append((f"img{i}.png", rgb[:, :, ::-1].transpose(2, 0, 1).copy()))

# (image, class, overlap, x1, y1, x2, y2); foreground classes are unique, background windows
# are told apart by their pixels
WINDOWS = [
    (0, 1, 0.9, 3, 4, 20, 30),
    (0, 2, 0.6, 0, 0, 29, 39),      # the whole image: context padding reaches past every edge
    (0, 5, 0.2, 10, 10, 25, 35),    # background (overlap < 0.3)
    (0, 7, 0.4, 1, 1, 5, 5),        # neither: dropped
    (1, 3, 0.75, 20, 2, 35, 24),
    (1, 4, 0.1, 0, 5, 9, 12),       # background
]
FG, BG = 0.5, 0.3


def write_window_file(path, windows=WINDOWS, images=IMAGES):
    with open(path, "w") as f:
        for i, (name, img) in enumerate(images):
            ws = [w for w in windows if w[0] == i]
            f.write(f"# {i}\n{name}\n3\n{img.shape[1]}\n{img.shape[2]}\n{len(ws)}\n")
            for w in ws:
                f.write(" ".join(str(v) for v in w[1:]) + "\n")


WIN = os.path.join(T, "windows.txt")
write_window_file(WIN)


# ---------------------------------------------------------------- the reference

def c_round(v):
    """C's roundf: halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def resize(img, oh, ow):
    """OpenCV's INTER_LINEAR on a planar uint8 image: pixel centres aligned, edges clamped."""
    C, H, W = img.shape

    def coords(n_out, n_in):
        s = n_in / n_out
        src = (np.arange(n_out) + 0.5) * s - 0.5
        src = np.maximum(src, 0)
        i0 = np.floor(src).astype(int)
        f = src - i0
        last = i0 >= n_in - 1
        i0[last] = n_in - 1
        f[last] = 0
        return i0, np.minimum(i0 + 1, n_in - 1), f

    y0, y1, fy = coords(oh, H)
    x0, x1, fx = coords(ow, W)
    im = img.astype(np.float64)
    top = im[:, y0][:, :, x0] * (1 - fx) + im[:, y0][:, :, x1] * fx
    bot = im[:, y1][:, :, x0] * (1 - fx) + im[:, y1][:, :, x1] * fx
    out = top * (1 - fy)[:, None] + bot * fy[:, None]
    return np.floor(out + 0.5)


def reference(win, flip, crop, context_pad, square, scale, mean=None, mean_value=None):
    img = IMAGES[win[0]][1]
    _, IH, IW = img.shape
    x1, y1, x2, y2 = win[3:]
    f32 = np.float32
    pad_w = pad_h = 0
    oh = ow = crop
    if context_pad > 0 or square:
        cs = f32(crop) / f32(crop - 2 * context_pad)
        hh, hw = f32(y2 - y1 + 1) / f32(2), f32(x2 - x1 + 1) / f32(2)
        cx, cy = f32(x1) + hw, f32(y1) + hh
        if square:
            hh = hw = max(hh, hw)
        x1, x2 = c_round(cx - hw * cs), c_round(cx + hw * cs)
        y1, y2 = c_round(cy - hh * cs), c_round(cy + hh * cs)
        uh, uw = y2 - y1 + 1, x2 - x1 + 1
        px1, py1, px2 = max(0, -x1), max(0, -y1), max(0, x2 - IW + 1)
        py2 = max(0, y2 - IH + 1)
        x1, x2, y1, y2 = x1 + px1, x2 - px2, y1 + py1, y2 - py2
        sx, sy = f32(crop) / f32(uw), f32(crop) / f32(uh)
        ow, oh = c_round(f32(x2 - x1 + 1) * sx), c_round(f32(y2 - y1 + 1) * sy)
        px1, px2, py1 = c_round(f32(px1) * sx), c_round(f32(px2) * sx), c_round(f32(py1) * sy)
        pad_h, pad_w = py1, (px2 if flip else px1)
        oh = min(oh, crop - pad_h)
        ow = min(ow, crop - pad_w)
    warped = resize(img[:, y1:y2 + 1, x1:x2 + 1], oh, ow)
    if flip:
        warped = warped[:, :, ::-1]
    out = np.zeros((3, crop, crop))
    m = 0
    if mean is not None:
        off = (mean.shape[2] - crop) // 2
        m = mean[:, off + pad_h:off + pad_h + oh, off + pad_w:off + pad_w + ow]
    elif mean_value is not None:
        m = np.asarray(mean_value, np.float64)[:, None, None]
    out[:, pad_h:pad_h + oh, pad_w:pad_w + ow] = (warped - m) * scale
    return out


def kept(label):
    """The windows a served label may come from (background ones all read 0)."""
    if label == 0:
        return [w for w in WINDOWS if w[2] < BG]
    return [w for w in WINDOWS if w[2] >= FG and w[1] == label]


def serve(text, batches):
    out = []
    with Layer(text, []) as l:
        for _ in range(batches):
            l.forward()
            out.append((l.top(0), l.top(1)))
    return out


def verify(text, batches, batch, n_fg, crop, context_pad=0, square=False, scale=1.0, mean=None, mean_value=None,
           mirror=False):
    got = serve(text, batches)
    flips = set()
    for b, (data, labels) in enumerate(got):
        check(data.shape == (batch, 3, crop, crop) and labels.shape == (batch, 1, 1, 1),
              f"{text}: shapes {data.shape} {labels.shape}")
        lab = labels.reshape(-1).astype(int)
        check(all(v == 0 for v in lab[:batch - n_fg]) and all(v > 0 for v in lab[batch - n_fg:]),
              f"batch {b}: background first, then {n_fg} foreground: {lab}")
        for i in range(batch):
            best = None
            for w in kept(lab[i]):
                for flip in ([False, True] if mirror else [False]):
                    want = reference(w, flip, crop, context_pad, square, scale, mean, mean_value)
                    e = float(np.abs(data[i] - want).max())
                    if best is None or e < best[0]:
                        best = (e, flip)
            check(best is not None and best[0] <= 1.0 * abs(scale) + 1e-4,
                  f"{text}: batch {b} item {i} (class {lab[i]}) differs from every candidate by {best}")
            if best:
                flips.add(best[1])
    if mirror:
        check(flips == {False, True}, f"mirror: items both mirrored and not ({flips})")
    return got


@case
def test_warp():
    text = (f'type: "WindowData" top: "data" top: "label" transform_param {{ crop_size: 16 }} '
            f'window_data_param {{ source: "{WIN}" root_folder: "{T}/" batch_size: 8 fg_threshold: {FG} '
            f'bg_threshold: {BG} fg_fraction: 0.5 }}')
    verify(text, 3, 8, 4, 16)


@case
def test_context_mirror_mean_value():
    text = (f'type: "WindowData" top: "data" top: "label" transform_param {{ crop_size: 20 mirror: true '
            f'mean_value: 104 mean_value: 117 mean_value: 123 }} window_data_param {{ source: "{WIN}" '
            f'root_folder: "{T}/" batch_size: 10 fg_threshold: {FG} bg_threshold: {BG} fg_fraction: 0.3 '
            f'context_pad: 3 scale: 0.5 }}')
    got = verify(text, 4, 10, 3, 20, context_pad=3, scale=0.5, mean_value=[104, 117, 123], mirror=True)
    again = serve(text, 4)
    check(all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(got, again)),
          "the same seed serves the same batches")


@case
def test_square_mean_file():
    mean = rng.uniform(0, 255, size=(3, 24, 24)).astype(np.float32)
    path = os.path.join(T, "mean.binaryproto")
    values = mean.reshape(-1)
    data = struct.pack(f"<{values.size}f", *values)

    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    blob = b"".join(bytes([(f + 1) << 3]) + varint(d) for f, d in enumerate((1, 3, 24, 24)))
    blob += bytes([(5 << 3) | 2]) + varint(len(data)) + data
    with open(path, "wb") as f:
        f.write(blob)
    text = (f'type: "WindowData" top: "data" top: "label" transform_param {{ crop_size: 18 mean_file: "{path}" }} '
            f'window_data_param {{ source: "{WIN}" root_folder: "{T}/" batch_size: 6 fg_threshold: {FG} '
            f'bg_threshold: {BG} context_pad: 2 crop_mode: "square" }}')
    verify(text, 3, 6, 1, 18, context_pad=2, square=True, mean=mean.astype(np.float64))


def expect_error(text, needle):
    try:
        serve(text, 1)
        check(False, f"accepted, expected an error mentioning {needle!r}: {text}")
    except LayerError as e:
        check(needle in str(e), f"message {str(e)!r} lacks {needle!r}")


@case
def test_errors():
    def text(src, extra="", tp="crop_size: 8"):
        return (f'type: "WindowData" top: "data" top: "label" transform_param {{ {tp} }} window_data_param {{ '
                f'source: "{src}" root_folder: "{T}/" batch_size: 4 {extra} }}')

    def bad(name, content):
        p = os.path.join(T, name)
        with open(p, "w") as f:
            f.write(content)
        return p
    expect_error(text(WIN, tp=""), "crop_size")
    expect_error(text(os.path.join(T, "none.txt")), "none.txt")
    expect_error(text(bad("empty.txt", "")), "is empty")
    expect_error(text(bad("hash.txt", "% 0\nimg0.png\n3 40 30\n0\n")), "hash.txt:1")
    expect_error(text(bad("idx.txt", "# 1\nimg0.png\n3 40 30\n0\n")), "image index 1")
    expect_error(text(bad("outside.txt", "# 0\nimg0.png\n3 40 30\n1\n1 0.9 0 0 30 10\n")), "outside.txt:5")
    expect_error(text(bad("fg0.txt", "# 0\nimg0.png\n3 40 30\n1\n0 0.9 0 0 10 10\n")), "class > 0")
    expect_error(text(bad("short.txt", "# 0\nimg0.png\n3 40 30\n2\n1 0.9 0 0 10 10\n")), "short.txt")
    expect_error(text(bad("gray.txt", "# 0\nimg0.png\n1 40 30\n0\n")), "colour")
    expect_error(text(bad("nofg.txt", "# 0\nimg0.png\n3 40 30\n1\n0 0.1 0 0 10 10\n")), "no foreground")
    expect_error(text(bad("missing.txt", "# 0\nnothere.png\n3 40 30\n2\n1 0.9 0 0 10 10\n0 0.1 0 0 5 5\n")),
                 "nothere.png")
    expect_error(text(WIN, 'crop_mode: "round"'), "crop_mode")
    expect_error(text(WIN, "context_pad: 4"), "context_pad")


def main():
    try:
        for k, v in sorted(globals().items()):
            if k.startswith("test_") and callable(v):
                v()
    finally:
        shutil.rmtree(T, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
