"""What a user sees of a run, and the files it leaves: `cortado train`, `test` and `time` on a
pseudo-terminal (a live progress line redrawn with \\r) and without one (Caffe's log lines, read
here by a parser written like Caffe's tools/extra/parse_log.py); --log-format=json (every stdout
line a JSON object); --quiet; the metrics file (<prefix>_metrics.jsonl, appended by a resumed
run); the curves `train` draws and `cortado plot` (SVG parsed with xml.etree, PNG decoded with
zlib + struct, with the number of points checked); and the error messages of these commands.

Env: CORTADO = the cortado binary. Prints "N passed, N failed"; exits non-zero on a failure.
"""
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib

CORTADO = os.environ.get("CORTADO", "../build/cortado")
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)
        if detail:
            print("  " + str(detail)[-3000:].replace("\n", "\n  "), file=sys.stderr)


def run(*args, env=None):
    p = subprocess.run([CORTADO] + list(args), capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def run_pty(*args, timeout=300):
    """Runs cortado with stdin/stdout/stderr on a pseudo-terminal; returns (status, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(CORTADO, [CORTADO] + list(args))
        finally:
            os._exit(127)
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


T = tempfile.mkdtemp(prefix="cortado_progress.")
NET = os.path.join(T, "tiny_net.prototxt")
with open(NET, "w") as f:
    f.write("""name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" include { phase: TEST } }
""")


def solver(name, extra=""):
    path = os.path.join(T, name + "_solver.prototxt")
    with open(path, "w") as f:
        f.write('net: "%s"\ntest_iter: 2\ntest_interval: 10\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                'display: 5\nmax_iter: 20\nsnapshot_prefix: "%s/%s/run"\nrandom_seed: 1\n%s'
                % (NET, T, name, extra))
    return path, os.path.join(T, name, "run")


# ---------------------------------------------------------------- Caffe-format log parser
# The regular expressions of Caffe's tools/extra/parse_log.py, applied line by line.
RE_ITER = re.compile(r"Iteration (\d+)")
RE_LOSS = re.compile(r"Iteration \d+.*, loss = ([\d.eE+-]+|nan|inf)")
RE_LR = re.compile(r"Iteration \d+, lr = ([\d.eE+-]+)")
RE_TEST = re.compile(r"Test net output #(\d+): (\S+) = ([\d.eE+-]+)")
RE_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} ")


def parse_caffe_log(text):
    train, lrs, tests = [], [], []
    it = -1
    for line in text.splitlines():
        m = RE_ITER.search(line)
        if m:
            it = int(m.group(1))
        m = RE_LOSS.search(line)
        if m and "Test" not in line:
            train.append((it, float(m.group(1))))
        m = RE_LR.search(line)
        if m:
            lrs.append((it, float(m.group(1))))
        m = RE_TEST.search(line)
        if m:
            tests.append((it, int(m.group(1)), m.group(2), float(m.group(3))))
    return train, lrs, tests


# ---------------------------------------------------------------- image readers

def svg_series(path):
    """{series name: number of points} from the <polyline class="series"> of an SVG (parsed as
    XML, so a malformed file fails here)."""
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    out = {}
    for pl in root.iter(ns + "polyline"):
        if pl.get("class") == "series":
            pts = pl.get("points").split()
            for p in pts:
                x, y = (float(v) for v in p.split(","))
            out[pl.get("data-name")] = len(pts)
    texts = [t.text for t in root.iter(ns + "text")]
    return out, texts


def png_decode(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA PNG, decoded with zlib."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert zlib.crc32(kind + body) & 0xffffffff == crc, "bad CRC in " + kind.decode()
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert depth == 8 and ctype in (2, 6), "unexpected PNG type %r" % (ihdr,)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * bpp), "IDAT size"
    rows, prev, stride = [], bytearray(w * bpp), w * bpp
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def png_has_colour(rows, bpp, rgb, tol=40):
    for row in rows:
        for i in range(0, len(row), bpp):
            if abs(row[i] - rgb[0]) + abs(row[i + 1] - rgb[1]) + abs(row[i + 2] - rgb[2]) < tol:
                return True
    return False


# ---------------------------------------------------------------- train without a terminal
path, prefix = solver("plain")
rc, out, err = run("train", "--solver=" + path)
check(rc == 0, "plain train exits 0", err)
check("\r" not in err, "no carriage returns when stderr is not a terminal")
glog = [l for l in err.splitlines() if l.strip()]
check(all(RE_GLOG.match(l) for l in glog), "every log line carries glog's prefix",
      [l for l in glog if not RE_GLOG.match(l)][:3])
train, lrs, tests = parse_caffe_log(err)
check([i for i, _ in train] == [0, 5, 10, 15, 20], "log: loss at iterations 0, 5, 10, 15, 20", train)
check([i for i, _ in lrs] == [0, 5, 10, 15] and all(abs(v - 0.1) < 1e-6 for _, v in lrs), "log: lr lines", lrs)
acc = [(i, v) for i, k, n, v in tests if n == "accuracy"]
check([i for i, _ in acc] == [0, 10, 20] and all(0 <= v <= 1 for _, v in acc), "log: test accuracy", tests)
check(len([t for t in tests if t[2] == "loss"]) == 3, "log: test loss", tests)

metrics = prefix + "_metrics.jsonl"
recs = [json.loads(l) for l in open(metrics)]
kinds = [r["event"] for r in recs]
check(kinds.count("start") == 1 and kinds.count("train") == 4 and kinds.count("test") == 3
      and kinds.count("snapshot") == 1 and kinds.count("done") == 1, "metrics file events", kinds)
tr = [r for r in recs if r["event"] == "train"]
check(all({"iter", "loss", "lr", "images_per_s", "elapsed_s", "time"} <= set(r) for r in tr),
      "train records carry iteration, loss, lr, images/s, wall time", tr[:1])
check(len(tr) == 4 and all(abs(r["loss"] - v) <= 1e-5 * max(1, abs(v)) for r, (_, v) in zip(tr, train)),
      "metrics losses equal the logged ones", (tr, train))
te = [r for r in recs if r["event"] == "test"]
check(all(set(r["outputs"]) == {"loss", "accuracy"} and r["loss_outputs"] == ["loss"] for r in te),
      "test records carry the outputs", te)
check(abs(te[-1]["outputs"]["accuracy"] - acc[-1][1]) < 1e-4, "metrics accuracy equals the logged one")
check(re.search(r"Wrote the training curves to .*run_curves\.svg", err) is not None,
      "train says where the curves are", err[-500:])

# the curves train drew, and plot from the metrics file and from the log
series, texts = svg_series(prefix + "_curves.svg")
check(series == {"train loss": 4, "test loss": 3, "test accuracy": 3}, "curves.svg series and point counts",
      series)
check("iteration" in texts and "loss" in texts and "accuracy" in texts, "axes are labelled", texts)
check(sum(1 for t in texts if t and re.fullmatch(r"[\d.]+k?", t)) >= 10, "axes have tick labels", texts)
w, h, bpp, rows = png_decode(prefix + "_curves.png")
check((w, h) == (960, 580), "curves.png size", (w, h))
check(png_has_colour(rows, bpp, (0x1f, 0x77, 0xb4)) and png_has_colour(rows, bpp, (0x2c, 0xa0, 0x2c)),
      "curves.png shows the train loss (blue) and the accuracy (green)")
check(not png_has_colour(rows, bpp, (0x9e, 0x1f, 0xb4)), "curves.png has no stray colours")

log = os.path.join(T, "plain.log")
with open(log, "w") as f:
    f.write(err)
rc, out, err2 = run("plot", log, "-o", os.path.join(T, "from_log.svg"))
check(rc == 0, "plot a log", err2)
series, _ = svg_series(os.path.join(T, "from_log.svg"))
check(series == {"train loss": 5, "test loss": 3, "test accuracy": 3}, "plot from the log: points", series)
rc, out, err2 = run("plot", metrics, "--output=" + os.path.join(T, "m.png"))
check(rc == 0 and png_decode(os.path.join(T, "m.png"))[0] == 960, "plot a metrics file to PNG", err2)

# a Caffe log (no cortado involved): the same parser rules
caffe_log = os.path.join(T, "caffe.log")
with open(caffe_log, "w") as f:
    f.write("""I0101 00:00:00.000000  1 solver.cpp:330] Iteration 0, Testing net (#0)
I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #0: accuracy = 0.1
I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #1: loss = 2.3 (* 1 = 2.3 loss)
I0101 00:00:00.000000  1 solver.cpp:218] Iteration 0 (0 iter/s, 0.1s/100 iters), loss = 2.31
I0101 00:00:00.000000  1 solver.cpp:218] Iteration 100 (50 iter/s, 2s/100 iters), loss = 0.9
I0101 00:00:00.000000  1 solver.cpp:218] Iteration 200 (50 iter/s, 2s/100 iters), loss = 0.6
I0101 00:00:00.000000  1 solver.cpp:330] Iteration 200, Testing net (#0)
I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #0: accuracy = 0.8
I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #1: loss = 0.55 (* 1 = 0.55 loss)
""")
rc, out, err2 = run("plot", caffe_log, "-o", os.path.join(T, "caffe.svg"))
series, _ = svg_series(os.path.join(T, "caffe.svg"))
check(rc == 0 and series == {"train loss": 3, "test loss": 2, "test accuracy": 2}, "plot Caffe's own log",
      (series, err2))

# ---------------------------------------------------------------- a resumed run appends
path, prefix = solver("resume")
rc, _, err = run("train", "--solver=" + path, "--iterations=10")
check(rc == 0 and os.path.exists(prefix + "_iter_10.solverstate"), "first half", err)
rc, _, err = run("train", "--solver=" + path, "--snapshot=" + prefix + "_iter_10.solverstate")
check(rc == 0, "resumed half", err)
recs = [json.loads(l) for l in open(prefix + "_metrics.jsonl")]
starts = [r for r in recs if r["event"] == "start"]
check([r["iter"] for r in starts] == [0, 10], "two runs, the second starting at 10", starts)
check([r["iter"] for r in recs if r["event"] == "train"] == [0, 5, 10, 15], "train records of both runs",
      recs)
series, _ = svg_series(prefix + "_curves.svg")
check(series == {"train loss": 4, "test loss": 3, "test accuracy": 3}, "curves of a resumed run", series)

# ---------------------------------------------------------------- on a terminal
path, prefix = solver("tty", "snapshot: 10\n")
rc, out = run_pty("train", "--solver=" + path)
check(rc == 0, "train on a terminal exits 0", out)
lines = out.split("\r")
prog = [l for l in lines if re.search(r"\] (\d+)/20  loss [\d.eE+-]+  lr 0\.1  \d+ img/s  [\d:]+ elapsed  ETA", l)]
check(len(prog) >= 2, "a progress line redrawn with \\r", out[-2000:])
check(any("20/20" in l for l in prog), "the progress line ends at 20/20", prog[-2:])
check("Train net output" not in out and "Iteration 5 (" not in out,
      "no per-display Caffe lines on a terminal", out[-2000:])
check(re.search(r"Iteration 10, test net #0: loss = [\d.]+, accuracy = [\d.]+", out) is not None,
      "test scores print as lines on a terminal", out[-2000:])
check(re.search(r"snapshot .*run_iter_10\.caffemodel", out) is not None, "snapshots print on a terminal")
check(out.rstrip("\r\n").endswith("run_curves.png") or "Wrote the training curves" in out,
      "curves reported on a terminal")

# test and time on a terminal: batch i/N
model = prefix + "_iter_20.caffemodel"
rc, out = run_pty("test", "--model=" + NET, "--weights=" + model, "--iterations=4")
check(rc == 0 and re.search(r"test: batch \[.*\] 4/4", out) and re.search(r"accuracy = [\d.]+", out)
      and "Batch 0," not in out, "test on a terminal: batch i/N, then the scores", out[-1500:])
rc, out2, err = run("test", "--model=" + NET, "--weights=" + model, "--iterations=4")
check(rc == 0 and "Batch 3, accuracy" in err and "\r" not in err, "test without a terminal: Caffe lines", err)
rc, out = run_pty("time", "--model=" + NET, "--iterations=3")
check(rc == 0 and re.search(r"time: iteration \[.*\] 3/3", out) and "Average Forward pass" in out,
      "time on a terminal: iteration i/N, then the summary", out[-1500:])

# ---------------------------------------------------------------- --log-format=json, --quiet
path, prefix = solver("json")
rc, out, err = run("train", "--solver=" + path, "--log-format=json")
check(rc == 0, "json train exits 0", err)
objs = []
for line in out.splitlines():
    try:
        objs.append(json.loads(line))
    except ValueError:
        check(False, "stdout line is JSON", line)
events = [o["event"] for o in objs]
check(events.count("train") == 4 and events.count("test") == 3 and events.count("done") == 1,
      "json: train, test and done events", events)
check(all(isinstance(o.get("iter"), int) for o in objs if o["event"] in ("train", "test")), "json: iterations")
check(not any(RE_GLOG.match(l) for l in err.splitlines()), "json: no log lines on stderr", err)
rc, out, err = run("test", "--model=" + NET, "--weights=" + prefix + "_iter_20.caffemodel", "--iterations=2",
                   "--log-format=json")
check(rc == 0 and all(json.loads(l)["event"] in ("log", "result") for l in out.splitlines()),
      "json test: every line an object", out)

path, prefix = solver("quiet")
rc, out, err = run("train", "--solver=" + path, "--quiet")
check(rc == 0 and out == "" and err == "", "--quiet prints nothing", (out, err))
check(os.path.exists(prefix + "_metrics.jsonl") and os.path.exists(prefix + "_curves.svg"),
      "--quiet still writes the metrics and the curves")
rc, out, err = run("test", "--model=" + NET, "--weights=" + prefix + "_iter_20.caffemodel", "--iterations=2",
                   "--quiet")
check(rc == 0 and "Batch" not in err and re.search(r"^accuracy = [\d.]+$", err, re.M), "test --quiet: results only",
      err)

# ---------------------------------------------------------------- errors name the file or flag
rc, out, err = run("train", "--solver=" + path, "--log-format=xml")
check(rc == 2 and "--log-format" in err and "text or json" in err, "bad --log-format", err)
rc, out, err = run("plot", os.path.join(T, "missing.jsonl"), "-o", os.path.join(T, "x.svg"))
check(rc == 1 and "missing.jsonl" in err, "plot: a missing input is named", err)
rc, out, err = run("plot", metrics, "-o", os.path.join(T, "x.pdf"))
check(rc == 1 and "x.pdf" in err and ".svg or .png" in err, "plot: an unknown output format", err)
rc, out, err = run("plot", metrics)
check(rc == 2 and "--output" in err, "plot: -o is required", err)
rc, out, err = run("plot", "-o", os.path.join(T, "x.svg"))
check(rc == 2 and "plot" in err, "plot: the input is required", err)
bad = os.path.join(T, "bad.jsonl")
with open(bad, "w") as f:
    f.write('{"event": "train", "iter": 1, "loss": 0.5}\n{"event": \n')
rc, out, err = run("plot", bad, "-o", os.path.join(T, "x.svg"))
check(rc == 1 and "bad.jsonl:2" in err, "plot: a malformed line is named file:line", err)
with open(bad, "w") as f:
    f.write("hello\nworld\n")
rc, out, err = run("plot", bad, "-o", os.path.join(T, "x.svg"))
check(rc == 1 and "bad.jsonl" in err and "Iteration" in err, "plot: a file with no data says what it wants", err)
rc, out, err = run("plot", metrics, "-o", os.path.join(T, "no", "such", "dir", "x.png"))
check(rc == 1 and "x.png" in err, "plot: an unwritable output is named", err)

print("%d passed, %d failed" % (passed, failed))
if not failed:
    subprocess.run(["rm", "-rf", T])
sys.exit(1 if failed else 0)
