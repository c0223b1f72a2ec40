"""pycaffe's caffe.draw over cortado's own drawing (`cortado draw`, Graphviz): layers as boxes,
blobs as labelled edges, with the shapes cortado computes when the net builds.

    caffe.draw.draw_net_to_file(net_param, "net.png", rankdir="LR", phase=caffe.TRAIN)

`caffe_net` is a NetParameter (caffe_pb2, e.g. NetSpec's to_proto()), prototxt text, or the
path of a prototxt file. Needs the cortado tool (found as $CORTADO, beside libcortado.so, or on
PATH) and, for images, Graphviz's dot (Debian's graphviz)."""
import os
import re
import shutil
import subprocess
import tempfile

from . import _lib
from ._lib import CortadoError


def _cortado_tool():
    here = os.path.dirname(_lib.library_path)
    for c in (os.environ.get("CORTADO"), os.path.join(here, "cortado"), os.path.join(here, "..", "bin", "cortado"),
              shutil.which("cortado")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise CortadoError("cortado.draw needs the cortado tool: set $CORTADO to its path or put it on PATH",
                       "not found")


def _text(caffe_net):
    if isinstance(caffe_net, (bytes, str)) and os.path.exists(caffe_net):
        with open(caffe_net) as f:
            return f.read()
    if isinstance(caffe_net, str):
        return caffe_net
    from google.protobuf import text_format
    return text_format.MessageToString(caffe_net)


def draw_net(caffe_net, rankdir="LR", ext="png", phase=None, display_lrm=False):
    """The drawing as bytes in format `ext` (png, svg, pdf, dot). rankdir: LR, TB, BT or RL.
    display_lrm: label each layer with its params' lr_mult and decay_mult."""
    if rankdir not in ("LR", "TB", "BT", "RL"):
        raise ValueError("rankdir must be LR, TB, BT or RL, got %r" % (rankdir,))
    ext = ext.lstrip(".").lower()
    if ext not in ("png", "svg", "pdf", "dot"):
        raise ValueError("cortado.draw writes png, svg, pdf or dot, not %r" % (ext,))
    with tempfile.TemporaryDirectory(prefix="cortado_draw.") as d:
        proto = os.path.join(d, "net.prototxt")
        with open(proto, "w") as f:
            f.write(_text(caffe_net))
        dot = os.path.join(d, "net.dot")
        cmd = [_cortado_tool(), "draw", proto, "-o", dot]
        if phase is not None:
            cmd += ["--phase", "TRAIN" if phase == 0 else "TEST"]
        if display_lrm:
            cmd.append("--lr-mult")
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise CortadoError("cortado draw failed: %s" % r.stderr.decode("utf-8", "replace").strip(), "error")
        with open(dot) as f:
            graph = re.sub(r"rankdir=\w+;", "rankdir=%s;" % rankdir, f.read(), count=1)
        if ext == "dot":
            return graph.encode()
        if not shutil.which("dot"):
            raise CortadoError("drawing to .%s needs Graphviz's dot (Debian's graphviz)" % ext, "not found")
        r = subprocess.run(["dot", "-T" + ext], input=graph.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise CortadoError("dot failed: %s" % r.stderr.decode("utf-8", "replace").strip(), "error")
        return r.stdout


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Writes the drawing to filename; its extension picks the format."""
    ext = os.path.splitext(filename)[1][1:] or "png"
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as f:
        f.write(data)
