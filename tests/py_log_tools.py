"""Caffe's log tools on a cortado log (issue 23). Caffe's tools/extra/parse_log.sh,
extract_seconds.py, parse_log.py and plot_training_log.py are Caffe's code and are not copied
here; this test extracts what they extract, the way they extract it, and checks every field
against what the run really did:

  - every line has glog's full prefix: I<MMDD> <HH:MM:SS.uuuuuu> <thread id> <file>:<line>] --
    the thread id is the training process's (its main thread's id is its pid), and file:line
    names a line of cortado's sources that writes a log line;
  - extract_seconds.py: the start is the first line containing "Solving"; its month, day and
    time come from the first two fields; every "Iteration" line's elapsed seconds are >= 0, in
    order, and within the run's wall-clock time;
  - parse_log.sh: "Iteration N" of each ", loss = " line and the loss as the line's 9th
    blank-separated field (awk '{print $9}'), the learning rate as the 9th field of ", lr = "
    lines, the test rows from the "Testing net" lines and the 11th field of "Test net output #k";
    row counts must agree, or `paste` would misalign the table;
  - parse_log.py: its regular expressions (Iteration, Train/Test net output, lr) give one train
    row per display and one test row per test, at the iterations the solver asks for;
  - a run stopped by --iterations still ends with the final display and test, as max_iter does.

Env: CORTADO = the cortado binary; CT_SOURCE_DIR = the sources. Prints "N passed, N failed".
"""
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time

CORTADO = os.environ.get("CORTADO", "../build/cortado")
SOURCES = os.environ.get("CT_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)
        if detail:
            print("  " + str(detail)[-2000:].replace("\n", "\n  "), file=sys.stderr)


GLOG = re.compile(r"^([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +(\d+) ([^ :\]]+):(\d+)\] (.*)$")

T = tempfile.mkdtemp(prefix="cortado_logtools_")
NET = os.path.join(T, "net.prototxt")
with open(NET, "w") as f:
    f.write("""name: "logtools"
layer { name: "data" type: "DummyData" top: "x" top: "y" dummy_data_param {
  shape { dim: 8 dim: 3 dim: 6 dim: 6 } shape { dim: 8 }
  data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "y" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }
""")
MAX_ITER, DISPLAY, TEST_INTERVAL, BASE_LR = 60, 10, 20, 0.05


def solver(name, extra=""):
    path = os.path.join(T, name + ".prototxt")
    with open(path, "w") as f:
        f.write('net: "%s"\nbase_lr: %g lr_policy: "fixed" max_iter: %d display: %d\n'
                'test_iter: 2 test_interval: %d snapshot_prefix: "%s/%s"\n%s'
                % (NET, BASE_LR, MAX_ITER, DISPLAY, TEST_INTERVAL, T, name, extra))
    return path


def train(path, *flags):
    """Runs train with stderr to a log file, as a user would (cortado train ... 2> log).
    Returns (exit status, log text, process id, wall-clock start, end)."""
    log = path + ".log"
    start = datetime.datetime.now()
    with open(log, "w") as f:
        p = subprocess.Popen([CORTADO, "train", "--solver=" + path] + list(flags), stderr=f,
                             stdout=subprocess.DEVNULL)
        rc = p.wait(timeout=300)
    end = datetime.datetime.now()
    with open(log) as f:
        return rc, f.read(), p.pid, start, end


def source_lines(name):
    """The lines of the source file called `name` (tools/ or src/), or None."""
    for root, _, files in os.walk(SOURCES):
        if "/build" in root or "/.git" in root:
            continue
        if name in files and (root.startswith(os.path.join(SOURCES, "src")) or
                              root.startswith(os.path.join(SOURCES, "tools"))):
            with open(os.path.join(root, name)) as f:
                return f.read().split("\n")
    return None


# ---------------------------------------------------------------- extract_seconds.py's way

def line_datetime(line, year):
    # "I0210 13:39:22.381027 ...": month and day from the first field, the time from the second
    parts = line.strip().split()
    month, day = int(parts[0][1:3]), int(parts[0][3:5])
    ts = parts[1]
    pos = ts.rfind(".")
    h, m, s = (int(x) for x in ts[:pos].split(":"))
    return datetime.datetime(year, month, day, h, m, s, int(ts[pos + 1:]))


def extract_seconds(lines, year):
    start = None
    for line in lines:
        if "Solving" in line:
            start = line_datetime(line, year)
            break
    if start is None:
        return None, []
    return start, [(line_datetime(l, year) - start).total_seconds() for l in lines if "Iteration" in l]


# ---------------------------------------------------------------- parse_log.sh's way

def parse_log_sh(lines):
    # the test table: from the first "Iteration .* Testing net" line on, without train lines
    test_part, on = [], False
    for l in lines:
        if re.search(r"Iteration .* Testing net", l):
            on = True
        if on:
            test_part.append(l)
    test_part = [l for l in test_part if not re.search(r"Iteration .* loss", l) and
                 not re.search(r"Iteration .* lr", l) and "Train net" not in l]
    test_iters = [int(re.sub(r".*Iteration ([0-9]*).*", r"\1", l)) for l in test_part if "Iteration " in l]
    test_out0 = [l.split()[10] for l in test_part if "Test net output #0" in l]
    test_out1 = [l.split()[10] for l in test_part if "Test net output #1" in l]
    loss_lines = [l for l in lines if ", loss = " in l]
    train_iters = [int(re.sub(r".*Iteration ([0-9]*).*", r"\1", l)) for l in loss_lines if "Iteration " in l]
    train_loss = [l.split()[8] for l in loss_lines]
    train_lr = [l.split()[8] for l in lines if ", lr = " in l]
    return test_iters, test_out0, test_out1, train_iters, train_loss, train_lr


# ---------------------------------------------------------------- parse_log.py's way

RE_ITERATION = re.compile(r"Iteration (\d+)")
RE_TRAIN_OUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
RE_TEST_OUT = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
RE_LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def parse_log_py(lines, year):
    start, _ = extract_seconds(lines, year)
    it, lr = -1, float("nan")
    train, test = {}, {}
    for l in lines:
        m = RE_ITERATION.search(l)
        if m:
            it = int(m.group(1))
        if it == -1:
            continue
        sec = (line_datetime(l, year) - start).total_seconds()
        m = RE_LR.search(l)
        if m:
            lr = float(m.group(1))
        for regex, rows in ((RE_TRAIN_OUT, train), (RE_TEST_OUT, test)):
            m = regex.search(l)
            if m:
                row = rows.setdefault(it, {"Seconds": sec, "LearningRate": lr})
                row[m.group(2)] = float(m.group(3))
    return train, test


# ---------------------------------------------------------------- a whole run

path = solver("run")
rc, text, pid, t0, t1 = train(path)
check(rc == 0, "train exits 0", text[-1000:])
lines = text.rstrip("\n").split("\n")
year = t0.year

# glog's prefix on every line, with the process's thread id and a real file:line
bad_prefix = [l for l in lines if not GLOG.match(l)]
check(not bad_prefix, "every line has glog's full prefix", bad_prefix[:3])
tids = {GLOG.match(l).group(8) for l in lines if GLOG.match(l)}
check(tids == {str(pid)}, "the thread id is the training process's (%d)" % pid, tids)
where_bad = []
for l in lines:
    m = GLOG.match(l)
    if not m:
        continue
    src, no = source_lines(m.group(9)), int(m.group(10))
    # the macro's line, or the lines of a call that spans several
    if not src or no < 1 or no > len(src) or not any(
            re.search(r"\b(logf_|ui_\w+f|ui_log\w*|LOGF)\s*\(", src[k]) for k in range(max(0, no - 4), no)):
        where_bad.append(m.group(9) + ":" + m.group(10))
check(not where_bad, "file:line names a line of cortado's sources that logs", sorted(set(where_bad))[:5])
check(any(GLOG.match(l).group(9) == "solver.c" for l in lines if GLOG.match(l)),
      "the solver's lines name solver.c", lines[:5])

# extract_seconds.py
start, secs = extract_seconds(lines, year)
check(start is not None, "a 'Solving' line starts the clock")
if start is not None:
    check(abs((start - t0).total_seconds()) < 30, "the 'Solving' time is the run's (%s vs %s)" % (start, t0))
    check(secs and all(s >= 0 for s in secs) and secs == sorted(secs), "elapsed seconds are >= 0 and in order",
          secs[:10])
    wall = (t1 - t0).total_seconds()
    check(secs and secs[-1] <= wall + 1, "elapsed seconds (%.3f) within the run's %.3f s" % (secs[-1] if secs else -1,
                                                                                             wall))

# parse_log.sh
test_iters, out0, out1, train_iters, train_loss, train_lr = parse_log_sh(lines)
want_tests = list(range(0, MAX_ITER + 1, TEST_INTERVAL))
want_display = list(range(0, MAX_ITER + 1, DISPLAY))  # the final display is at max_iter
check(test_iters == want_tests, "parse_log.sh: test rows at %s" % want_tests, test_iters)
check(len(out0) == len(test_iters) and len(out1) == len(test_iters),
      "parse_log.sh: one '#0' and one '#1' value per test row", (len(out0), len(out1), len(test_iters)))
try:
    acc = [float(v) for v in out0]
    losses = [float(v) for v in out1]
    check(all(0 <= a <= 1 for a in acc), "parse_log.sh: field 11 of 'Test net output #0' is the accuracy", out0)
    check(all(v > 0 for v in losses), "parse_log.sh: field 11 of 'Test net output #1' is the loss", out1)
except ValueError:
    check(False, "parse_log.sh: field 11 of the test lines is a number", out0 + out1)
check(train_iters == want_display, "parse_log.sh: train rows at %s" % want_display, train_iters)
try:
    tl = [float(v) for v in train_loss]
    check(len(tl) == len(train_iters) and all(v > 0 for v in tl), "parse_log.sh: field 9 of ', loss = ' lines",
          train_loss)
except ValueError:
    check(False, "parse_log.sh: field 9 of ', loss = ' lines is the loss", train_loss)
check(train_lr and all(float(v) == BASE_LR for v in train_lr), "parse_log.sh: field 9 of ', lr = ' lines is base_lr",
      train_lr)
check(len(train_lr) == len(want_display) - 1, "parse_log.sh: an lr row per display of the loop (%d)" %
      (len(want_display) - 1), len(train_lr))

# parse_log.py
train_rows, test_rows = parse_log_py(lines, year)
check(sorted(test_rows) == want_tests, "parse_log.py: test rows at the test iterations", sorted(test_rows))
check(all(set(r) >= {"accuracy", "loss", "Seconds"} for r in test_rows.values()),
      "parse_log.py: each test row has accuracy, loss and seconds", list(test_rows.values())[:2])
check(sorted(train_rows) == want_display[:-1], "parse_log.py: train rows at the loop's displays",
      sorted(train_rows))
check(all(r["LearningRate"] == BASE_LR or r is train_rows.get(0) for r in train_rows.values()),
      "parse_log.py: the learning rate of the train rows", list(train_rows.values())[:3])
check(all(r["Seconds"] >= 0 for r in list(train_rows.values()) + list(test_rows.values())),
      "parse_log.py: seconds from the 'Solving' line are >= 0")

# ---------------------------------------------------------------- --iterations ends like max_iter

path = solver("short")
rc, text, pid, t0, t1 = train(path, "--iterations=40")
lines = text.rstrip("\n").split("\n")
check(rc == 0, "train --iterations=40 exits 0", text[-800:])
test_iters, out0, _, train_iters, _, _ = parse_log_sh(lines)
check(test_iters == [0, 20, 40], "--iterations=40: tests at 0, 20 and the final 40", test_iters)
check(train_iters and train_iters[-1] == 40, "--iterations=40: the final display at 40", train_iters)
check(extract_seconds(lines, t0.year)[0] is not None, "--iterations: a 'Solving' line")

if failed == 0:
    import shutil
    shutil.rmtree(T, ignore_errors=True)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
