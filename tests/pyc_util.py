"""Helpers for the tests of the `cortado` Python module (tests/py_pycaffe_*.py): the module
imported from the source tree's python/ folder (the library found through $CORTADO or
$CT_BUILD_DIR, as ctest sets them), pass/fail counting, and small nets written to a temporary
folder. Not a test itself (no py_ prefix)."""
import os
import shutil
import sys
import tempfile

SRC = os.environ.get("CT_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


class Checks:
    def __init__(self, prefix):
        self.passed = self.failed = 0
        self.tmp = tempfile.mkdtemp(prefix=prefix)

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAILED:", what, file=sys.stderr)
            if detail != "":
                print("  " + str(detail)[-2000:], file=sys.stderr)

    def raises(self, exc, fn, *words):
        """Whether fn() raises `exc` with every word in its message (reported when not)."""
        try:
            fn()
        except exc as e:
            return all(w in str(e) for w in words) or ("wrong message: %s" % e)
        except Exception as e:  # noqa: BLE001
            return "raised %s: %s" % (type(e).__name__, e)
        return "did not raise"

    def expect_raise(self, exc, fn, what, *words):
        r = self.raises(exc, fn, *words)
        self.check(r is True, what, r)

    def path(self, name, text=None):
        p = os.path.join(self.tmp, name)
        if text is not None:
            with open(p, "w") as f:
                f.write(text)
        return p

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        if not self.failed:
            shutil.rmtree(self.tmp, ignore_errors=True)
        sys.exit(1 if self.failed else 0)


def read_idx(name, limit=None):
    """numpy array from one of Debian's gzipped Fashion-MNIST IDX files (parsed here, not by
    cortado: an independent reader)."""
    import gzip
    import numpy as np
    with gzip.open(os.path.join(FMNIST, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return arr[:limit] if limit else arr
