"""The PyTorch side of bench/zoo_bench.sh, and the prototxt rewrite both sides start from.

A deploy net from the public Caffe zoo (an `input:` header of batch 1, no loss) is read by a
small prototxt reader written here and
  rewrite IN OUT BATCH   written back for cortado as a training net: an Input layer of BATCH
                         images and BATCH labels, and a SoftmaxWithLoss on the classifier (in
                         place of the deploy net's Softmax, or after its last layer); with
                         BN_STATS=batch (the default) every BatchNorm's use_global_stats is
                         dropped, so that it normalises by the batch's statistics as the nets'
                         training prototxts do (a deploy net says use_global_stats: true);
  params IN              prints the learnable parameter count of the PyTorch net built from IN
                         and of cortado's (the `cortado` Python module on the rewritten net,
                         BatchNorm's statistics left out on both sides), and fails if they differ;
  torch IN BATCH ITERS THREADS
                         builds the net in PyTorch layer by layer from the same prototxt and
                         times ITERS training passes (BatchNorm in training mode; with
                         BN_STATS=prototxt, the BatchNorm2d of a BatchNorm with use_global_stats:
                         true in eval mode: the stored statistics, as cortado runs that layer) (forward, loss, backward), ITERS forward
                         passes as in training (autograd recording) and ITERS under no_grad,
                         after one untimed pass of each, printing
                         `torch fwdbwd_ms=.. fwd_ms=.. fwd_nograd_ms=..` (medians).
The builder covers the layer types of these nets: Convolution (groups, stride, pad, dilation,
bias_term), BatchNorm with the Scale after it as one BatchNorm2d (affine; without a Scale: not
affine), ReLU (negative_slope), ReLU6 where a prototxt has it, Pooling (MAX / AVE, global,
Caffe's ceil rounding unless ceil_mode: false), Eltwise (SUM with coefficients, PROD, MAX),
Concat, InnerProduct, Dropout, Softmax; anything else is refused by name."""
import os
import re
import statistics
import sys
import time

# ------------------------------------------------------------------ prototxt reader / writer

TOKEN = re.compile(r'\s*(?:#[^\n]*\n?|(".*?(?<!\\)"|\'.*?\'|[{}:]|[^\s{}:#]+))', re.S)


def parse(text):
    """Text-format protobuf -> [(field, value)], value a string or a nested list."""
    toks = [m.group(1) for m in TOKEN.finditer(text) if m.group(1) is not None]
    pos = 0

    def message(end):
        nonlocal pos
        out = []
        while pos < len(toks) and toks[pos] != end:
            name = toks[pos]
            pos += 1
            if toks[pos] == ":":
                pos += 1
            if toks[pos] == "{":
                pos += 1
                out.append((name, message("}")))
                pos += 1
            else:
                out.append((name, toks[pos]))
                pos += 1
        return out

    return message(None)


def dump(msg, indent=0):
    pad = "  " * indent
    lines = []
    for k, v in msg:
        if isinstance(v, list):
            lines.append(f"{pad}{k} {{")
            lines.append(dump(v, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{k}: {v}")
    return "\n".join(x for x in lines if x)


def get(msg, key, default=None):
    for k, v in msg:
        if k == key:
            return v
    return default


def get_all(msg, key):
    return [v for k, v in msg if k == key]


def unq(s):
    return s[1:-1] if s and s[0] in "\"'" else s


def layers_of(net):
    return [v for k, v in net if k in ("layer", "layers")]


def bn_stats_mode():
    mode = os.environ.get("BN_STATS", "batch")
    if mode not in ("batch", "prototxt"):
        raise SystemExit(f"BN_STATS={mode}: expected batch (the default) or prototxt")
    return mode


def drop_global_stats(msg):
    """msg with every use_global_stats field removed, at any depth"""
    return [(k, drop_global_stats(v) if isinstance(v, list) else v) for k, v in msg if k != "use_global_stats"]


def rewrite(src, dst, batch):
    net = parse(open(src).read())
    if bn_stats_mode() == "batch":
        net = drop_global_stats(net)
    inputs = get_all(net, "input")
    dims = [int(d) for d in get_all(net, "input_dim")]
    if not dims:
        shp = get(net, "input_shape")
        dims = [int(d) for d in get_all(shp, "dim")]
    body = [(k, v) for k, v in net if k not in ("input", "input_dim", "input_shape")]
    data = unq(inputs[0])
    head = [("layer", [("name", '"data"'), ("type", '"Input"'), ("top", f'"{data}"'), ("top", '"label"'),
                       ("input_param", [("shape", [("dim", str(batch))] + [("dim", str(d)) for d in dims[1:4]]),
                                        ("shape", [("dim", str(batch))])])])]
    lays = layers_of(body)
    last = lays[-1]
    if unq(get(last, "type")) == "Softmax":
        bottom = unq(get(last, "bottom"))
        body = [(k, v) for k, v in body if v is not last]
    else:
        bottom = unq(get(last, "top"))
    loss = [("layer", [("name", '"loss"'), ("type", '"SoftmaxWithLoss"'), ("bottom", f'"{bottom}"'),
                       ("bottom", '"label"'), ("top", '"loss"')])]
    name = [(k, v) for k, v in body if k == "name"]
    rest = [(k, v) for k, v in body if k != "name"]
    with open(dst, "w") as f:
        f.write(dump(name + head + rest + loss) + "\n")


# ------------------------------------------------------------------ the PyTorch net


def build(path, batch):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    net = parse(open(path).read())
    lays = [l for l in layers_of(net) if unq(get(l, "type")) != "Input"]
    # a Scale right after a BatchNorm on its top is that BatchNorm's affine part
    merged, affine = set(), set()
    for a, b in zip(lays, lays[1:]):
        if unq(get(a, "type")) == "BatchNorm" and unq(get(b, "type")) == "Scale" and \
                unq(get(b, "bottom")) == unq(get(a, "top")):
            merged.add(id(b))
            affine.add(id(a))

    def ints(p, key, default):
        v = [int(x) for x in get_all(p, key)]
        return (v * 2)[:2] if v else [default, default]

    def hw(p, key, default):
        h, w = get(p, key + "_h"), get(p, key + "_w")
        if h is not None:
            return [int(h), int(w)]
        return ints(p, key if key != "kernel" else "kernel_size", default)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = nn.ModuleDict()
            self.plan = []  # (kind, key, bottoms, tops, extra)
            self.stored = []  # BatchNorm2d run on the stored statistics (BN_STATS=prototxt)
            x = torch.zeros(1, *[int(d) for d in (get_all(net, "input_dim") or
                                                 get_all(get(net, "input_shape"), "dim"))[1:4]])
            shapes = {unq(get_all(net, "input")[0]): x}
            for i, l in enumerate(lays):
                t = unq(get(l, "type"))
                bots = [unq(b) for b in get_all(l, "bottom")]
                tops = [unq(b) for b in get_all(l, "top")]
                key = f"l{i}"
                if id(l) in merged:
                    continue
                if t == "Convolution":
                    p = get(l, "convolution_param", [])
                    k = hw(p, "kernel", 1)
                    m = nn.Conv2d(shapes[bots[0]].shape[1], int(get(p, "num_output")), k, stride=hw(p, "stride", 1),
                                  padding=hw(p, "pad", 0), dilation=ints(p, "dilation", 1),
                                  groups=int(get(p, "group", 1)), bias=get(p, "bias_term", "true") != "false")
                    self.mods[key] = m
                    self.plan.append(("mod", key, bots, tops))
                elif t == "BatchNorm":
                    p = get(l, "batch_norm_param", [])
                    self.mods[key] = nn.BatchNorm2d(shapes[bots[0]].shape[1], eps=float(get(p, "eps", 1e-5)),
                                                    momentum=1 - float(get(p, "moving_average_fraction", 0.999)),
                                                    affine=id(l) in affine)
                    if get(p, "use_global_stats") == "true" and bn_stats_mode() == "prototxt":
                        self.stored.append(key)
                    self.plan.append(("mod", key, bots, tops))
                elif t in ("ReLU", "ReLU6"):
                    p = get(l, "relu_param", [])
                    slope = float(get(p, "negative_slope", 0))
                    inplace = bots == tops
                    if t == "ReLU6":
                        self.mods[key] = nn.ReLU6(inplace=inplace)
                    elif slope:
                        self.mods[key] = nn.LeakyReLU(slope, inplace=inplace)
                    else:
                        self.mods[key] = nn.ReLU(inplace=inplace)
                    self.plan.append(("mod", key, bots, tops))
                elif t == "Pooling":
                    p = get(l, "pooling_param", [])
                    ave = unq(get(p, "pool", "MAX")) == "AVE"
                    if get(p, "global_pooling") == "true":
                        self.plan.append(("fn", key, bots, tops, ("gave" if ave else "gmax",)))
                    else:
                        k, s, pd = hw(p, "kernel", 1), hw(p, "stride", 1), hw(p, "pad", 0)
                        ceil = get(p, "ceil_mode", "true") != "false"
                        if ave:
                            self.mods[key] = nn.AvgPool2d(k, s, pd, ceil_mode=ceil)
                        else:
                            self.mods[key] = nn.MaxPool2d(k, s, pd, ceil_mode=ceil)
                        self.plan.append(("mod", key, bots, tops))
                elif t == "Eltwise":
                    p = get(l, "eltwise_param", [])
                    op = unq(get(p, "operation", "SUM"))
                    coeff = [float(c) for c in get_all(p, "coeff")]
                    self.plan.append(("fn", key, bots, tops, ("eltwise", op, coeff)))
                elif t == "Concat":
                    p = get(l, "concat_param", [])
                    self.plan.append(("fn", key, bots, tops, ("concat", int(get(p, "axis", 1)))))
                elif t == "InnerProduct":
                    p = get(l, "inner_product_param", [])
                    self.mods[key] = nn.Linear(shapes[bots[0]][0].numel(), int(get(p, "num_output")),
                                               bias=get(p, "bias_term", "true") != "false")
                    self.plan.append(("fn", key, bots, tops, ("ip",)))
                elif t == "Dropout":
                    p = get(l, "dropout_param", [])
                    self.plan.append(("fn", key, bots, tops, ("dropout", float(get(p, "dropout_ratio", 0.5)))))
                elif t == "Softmax":
                    self.plan.append(("fn", key, bots, tops, ("softmax",)))
                elif t == "Scale":
                    raise SystemExit(f"{path}: Scale layer {get(l, 'name')} not after a BatchNorm: not covered")
                else:
                    raise SystemExit(f"{path}: layer type {t} is not covered by this builder")
                with torch.no_grad():
                    self.eval()
                    self._step(self.plan[-1], shapes)
            # the loss takes the logits: a final Softmax is not run
            if self.plan[-1][4:] == (("softmax",),):
                self.plan.pop()
            self.input = unq(get_all(net, "input")[0])

        def _step(self, st, blobs):
            kind, key, bots, tops = st[:4]
            xs = [blobs[b] for b in bots]
            if kind == "mod" and key in self.mods and not isinstance(self.mods[key], nn.Linear):
                y = self.mods[key](xs[0])
            else:
                e = st[4]
                if e[0] == "gave":
                    y = F.adaptive_avg_pool2d(xs[0], 1)
                elif e[0] == "gmax":
                    y = F.adaptive_max_pool2d(xs[0], 1)
                elif e[0] == "eltwise":
                    if e[1] == "SUM":
                        c = e[2] or [1.0] * len(xs)
                        y = xs[0] * c[0] if c[0] != 1 else xs[0]
                        for xi, ci in zip(xs[1:], c[1:]):
                            y = y + (xi * ci if ci != 1 else xi)
                    elif e[1] == "PROD":
                        y = xs[0]
                        for xi in xs[1:]:
                            y = y * xi
                    else:
                        y = xs[0]
                        for xi in xs[1:]:
                            y = torch.maximum(y, xi)
                elif e[0] == "concat":
                    y = torch.cat(xs, e[1])
                elif e[0] == "ip":
                    y = self.mods[key](xs[0].flatten(1))
                elif e[0] == "dropout":
                    y = F.dropout(xs[0], e[1], self.training)
                else:
                    y = F.softmax(xs[0], 1)
            blobs[tops[0]] = y

        def forward(self, x):
            blobs = {self.input: x}
            for st in self.plan:
                self._step(st, blobs)
            return blobs[self.plan[-1][3][0]]

    return Net()


def torch_params(path):
    m = build(path, 1)
    return sum(p.numel() for p in m.parameters())


def cortado_params(path):
    """Learnable parameters of cortado's net for the same prototxt (BatchNorm's statistics out)."""
    import tempfile
    src = os.environ.get("CT_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
    sys.path.insert(0, os.path.join(src, "python"))
    import cortado
    with tempfile.TemporaryDirectory() as d:
        one = os.path.join(d, "net.prototxt")
        rewrite(path, one, 1)
        net = cortado.Net(one, phase=cortado.TEST)
        types = dict(zip(net._layer_names, net.layer_types))
        n = sum(p.count for name, ps in net.params.items() if types[name] != "BatchNorm" for p in ps)
        net.close()
        return n


def time_torch(path, batch, iters, threads):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = build(path, batch)
    m.train()
    for key in m.stored:  # use_global_stats: true, kept (BN_STATS=prototxt): eval mode, as Caffe runs it
        m.mods[key].eval()
    x = torch.randn(batch, *[int(d) for d in (get_all(parse(open(path).read()), "input_dim"))[1:4]])
    label = torch.randint(0, 1000, (batch,))

    def train_step():
        m.zero_grad(set_to_none=False)
        loss = F.cross_entropy(m(x).flatten(1), label)
        loss.backward()

    def fwd_step():  # as in a training pass: autograd records, nothing runs backward
        m(x)

    def fwd_nograd():
        with torch.no_grad():
            m(x)

    def timed(fn):
        fn()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ts)

    fb = timed(train_step)
    fw = timed(fwd_step)
    fn = timed(fwd_nograd)
    print(f"torch fwdbwd_ms={fb:.1f} fwd_ms={fw:.1f} fwd_nograd_ms={fn:.1f}")


def main():
    cmd = sys.argv[1]
    if cmd == "rewrite":
        rewrite(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "params":
        tp, cp = torch_params(sys.argv[2]), cortado_params(sys.argv[2])
        print(f"params torch={tp} cortado={cp} {'match' if tp == cp else 'DIFFER'}")
        sys.exit(0 if tp == cp else 1)
    elif cmd == "torch":
        time_torch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
