"""The HDF5Data and HDF5Output layers against files written and read here with h5py (an
independent HDF5 implementation of Caffe's layout): the rows served in order and shuffled, a net
that trains from .h5 files equal to a PyTorch reference, exact resumption of the data order from
a snapshot, HDF5Output's datasets, and bad inputs refused with their file named.

Env: CT_SOURCE_DIR (the repository root), CT_TESTKIT (libct_testkit.so), CORTADO or
CT_BUILD_DIR (where libcortado.so was built). Prints "N passed, N failed"; exits non-zero on a
failure.
"""
import os
import shutil
import sys
import tempfile
import traceback

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctk import Layer, LayerError  # noqa: E402

SRC = os.environ.get("CT_SOURCE_DIR", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

torch.set_default_dtype(torch.float64)
passed = failed = 0
T = tempfile.mkdtemp(prefix="cortado_h5.")
rng = np.random.default_rng(5)


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


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)


def write_list(path, files):
    with open(path, "w") as f:
        f.write("\n".join(files) + "\n")


# Two files of different sizes and dtypes: rows 0..9 in a.h5 (float64 data, int32 labels),
# 10..15 in b.h5 (float32 data, float labels). Row r's data is filled with r so that any
# served row names itself.
A = os.path.join(T, "a.h5")
B = os.path.join(T, "b.h5")
rows_a = np.arange(10, dtype=np.float64)[:, None, None, None] * np.ones((1, 3, 2, 2)) + \
    rng.uniform(0, 0.5, size=(10, 3, 2, 2))
rows_b = (np.arange(10, 16, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 2, 2), np.float32) +
          rng.uniform(0, 0.5, size=(6, 3, 2, 2)).astype(np.float32))
write_h5(A, data=rows_a, label=np.arange(10, dtype=np.int32))
write_h5(B, data=rows_b, label=np.arange(10, 16, dtype=np.float32))
ALL = np.concatenate([rows_a.astype(np.float32), rows_b])
LIST = os.path.join(T, "list.txt")
write_list(LIST, [A, "b.h5"])  # the second relative to the list's directory


def served(text, batches):
    """The (data, label) batches an HDF5Data layer built from text serves."""
    out = []
    with Layer(text, []) as l:
        for _ in range(batches):
            l.forward()
            out.append((l.top(0), l.top(1)))
    return out


@case
def test_in_order():
    got = served(f'type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{LIST}" batch_size: 5 }}',
                 4)
    data = np.concatenate([d for d, _ in got])
    label = np.concatenate([lab for _, lab in got])
    want = [i % 16 for i in range(20)]  # 16 rows, then from the start again
    check(data.shape == (20, 3, 2, 2) and label.shape == (20,), f"shapes {data.shape} {label.shape}")
    check(np.array_equal(label, np.array(want, np.float32)), f"labels in order across files: {label}")
    check(np.allclose(data, ALL[want], atol=0), "data rows in order, float64 and float32 files alike")


@case
def test_shuffled():
    text = f'type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{LIST}" batch_size: 4 ' \
           f'shuffle: true }}'
    got = served(text, 8)
    label = np.concatenate([lab for _, lab in got]).astype(int)
    data = np.concatenate([d for d, _ in got])
    for p in range(2):
        pass_labels = label[16 * p:16 * (p + 1)]
        check(sorted(pass_labels.tolist()) == list(range(16)), f"pass {p} serves every row once: {pass_labels}")
    check(label[:16].tolist() != list(range(16)), "shuffled: not in file order")
    check(label[:16].tolist() != label[16:].tolist(), "a fresh order every pass")
    check(np.allclose(data, ALL[label], atol=0), "each row's data travels with its label")
    # the files are whole: a pass serves one file's rows, then the other's
    first = set(label[:10].tolist())
    check(first in (set(range(10)), set(range(10, 16)) | set(label[6:10].tolist())),
          f"a pass reads the files one at a time: {label[:16]}")
    again = np.concatenate([lab for _, lab in served(text, 8)]).astype(int)
    check(np.array_equal(again, label), "the same seed gives the same order")


# ---------------------------------------------------------------- training and resumption

N_ITEMS, DIM, K = 24, 6, 3
TRAIN_X = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
TRAIN_Y = rng.integers(0, K, N_ITEMS).astype(np.float32)
write_h5(os.path.join(T, "t1.h5"), data=TRAIN_X[:16], label=TRAIN_Y[:16])
write_h5(os.path.join(T, "t2.h5"), data=TRAIN_X[16:], label=TRAIN_Y[16:])
write_list(os.path.join(T, "train.txt"), ["t1.h5", "t2.h5"])
BATCH = 8


def solver_files(shuffle, name):
    net = os.path.join(T, name + "_net.prototxt")
    with open(net, "w") as f:
        f.write(f"""name: "h5net"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "train.txt" batch_size: {BATCH} shuffle: {"true" if shuffle else "false"} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: {K} weight_filler {{ type: "gaussian" std: 0.3 }}
                         bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
""")
    solver = os.path.join(T, name + "_solver.prototxt")
    with open(solver, "w") as f:
        f.write(f'net: "{net}"\nbase_lr: 0.1\nmomentum: 0.9\nlr_policy: "fixed"\nmax_iter: 100\n'
                f'display: 0\nrandom_seed: 3\nsnapshot_prefix: "{T}/snap/{name}"\n')
    return solver


@case
def test_trains_like_torch():
    s = cortado.Solver(solver_files(False, "plain"), quiet=True)
    w = torch.tensor(s.net.params["ip"][0].data.astype(np.float64), requires_grad=True)
    b = torch.tensor(s.net.params["ip"][1].data.astype(np.float64), requires_grad=True)
    hw, hb = torch.zeros_like(w), torch.zeros_like(b)
    losses = []
    iters = 9  # three passes over 24 rows in batches of 8, crossing the two files
    for it in range(iters):
        rows = [(it * BATCH + i) % N_ITEMS for i in range(BATCH)]
        x = torch.tensor(TRAIN_X[rows].astype(np.float64))
        y = torch.tensor(TRAIN_Y[rows], dtype=torch.long)
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y)
        losses.append(float(loss))
        w.grad = b.grad = None
        loss.backward()
        with torch.no_grad():  # Caffe's SGD: h = m h + lr g; w -= h
            hw.mul_(0.9).add_(0.1 * w.grad)
            hb.mul_(0.9).add_(0.1 * b.grad)
            w -= hw
            b -= hb
    s.step(iters)
    got_w, got_b = s.net.params["ip"][0].data, s.net.params["ip"][1].data
    err = max(np.abs(got_w - w.detach().numpy()).max(), np.abs(got_b - b.detach().numpy()).max())
    check(err < 1e-4, f"weights after {iters} iterations from .h5 files vs PyTorch: max error {err:.3g}")
    check(losses[-1] < losses[0], f"the loss falls: {losses[0]:.4f} -> {losses[-1]:.4f}")


@case
def test_resumes_data_order():
    s = cortado.Solver(solver_files(True, "shuf"), quiet=True)
    s.step(4)
    _, state = s.snapshot()
    s.step(5)
    want = s.net.params["ip"][0].data.copy()
    r = cortado.Solver(solver_files(True, "shuf"), quiet=True)
    r.restore(state)
    r.step(5)
    check(np.array_equal(r.net.params["ip"][0].data, want),
          "a shuffled HDF5Data net resumed from a snapshot reaches the same weights")


# ---------------------------------------------------------------- HDF5Output

@case
def test_output():
    out = os.path.join(T, "out.h5")
    text = f'type: "HDF5Output" hdf5_output_param {{ file_name: "{out}" }}'
    batches = [(rng.standard_normal((3, 2, 4)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32))
               for _ in range(2)]
    with Layer(text, [(3, 2, 4), (3, 5)]) as l:
        for x, y in batches:
            l.set_bottom(0, x)
            l.set_bottom(1, y)
            l.forward()
            with h5py.File(out, "r") as f:  # complete on disk after every forward
                n = f["data"].shape[0]
        check(n == 6, f"after two forwards the file holds 6 rows, read while open: {n}")
    with h5py.File(out, "r") as f:
        check(sorted(f.keys()) == ["data", "label"], f"datasets {list(f.keys())}")
        check(np.array_equal(f["data"][()], np.concatenate([x for x, _ in batches])), "data rows")
        check(np.array_equal(f["label"][()], np.concatenate([y for _, y in batches])), "label rows")
        check(f["data"].dtype == np.float32, "float32 datasets")


# ---------------------------------------------------------------- bad inputs

def expect_error(text, needle):
    try:
        served(text, 1)
        check(False, f"{text}: accepted, expected an error mentioning {needle!r}")
    except LayerError as e:
        check(needle in str(e), f"{text}: message {str(e)!r} lacks {needle!r}")


@case
def test_errors():
    bad_rows = os.path.join(T, "bad_rows.h5")
    write_h5(bad_rows, data=np.zeros((4, 2), np.float32), label=np.zeros(3, np.float32))
    other_shape = os.path.join(T, "other_shape.h5")
    write_h5(other_shape, data=np.zeros((4, 3, 2, 3), np.float32), label=np.zeros(4, np.float32))
    strings = os.path.join(T, "strings.h5")
    with h5py.File(strings, "w") as f:
        f.create_dataset("data", data=np.array([b"a", b"b"]))
        f.create_dataset("label", data=np.zeros(2, np.float32))
    for name, files in (("rows", [bad_rows]), ("shape", [A, other_shape]), ("empty", []),
                        ("missing", [os.path.join(T, "nope.h5")]), ("strings", [strings])):
        write_list(os.path.join(T, name + ".txt"), files)

    def text(lst, extra=""):
        return f'type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{lst}" batch_size: 2 {extra}}}'
    expect_error(text(os.path.join(T, "rows.txt")), "all must agree")
    expect_error(text(os.path.join(T, "shape.txt")), "other_shape.h5")
    expect_error(text(os.path.join(T, "empty.txt")), "names no files")
    expect_error(text(os.path.join(T, "missing.txt")), "nope.h5")
    expect_error(text(os.path.join(T, "strings.txt")), "does not hold numbers")
    expect_error(text(os.path.join(T, "no_such_list.txt")), "no_such_list.txt")
    expect_error(f'type: "HDF5Data" top: "data" top: "missing" hdf5_data_param {{ source: "{LIST}" batch_size: 2 }}',
                 'no dataset "missing"')
    expect_error(f'type: "HDF5Data" top: "data" hdf5_data_param {{ source: "{LIST}" batch_size: 0 }}', "batch_size")
    expect_error('type: "HDF5Data" top: "data"', "hdf5_data_param")
    try:
        Layer(f'type: "HDF5Output" hdf5_output_param {{ file_name: "{T}/no/such/dir/out.h5" }}',
              [(2, 3), (2,)]).close()
        check(False, "HDF5Output into a missing directory: accepted")
    except LayerError as e:
        check("no/such/dir/out.h5" in str(e), f"HDF5Output's error names the file: {e}")


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
