"""tests/gpu/run.sh's weight check: every parameter blob of each .caffemodel against the first
one's, within TOL of the blob's largest magnitude. Usage: compare_weights.py NET TOL REF OTHER...
Exit status 1 when one differs (each line says by how much)."""
import sys

import numpy as np

import cortado as caffe


def params(net_file, weights):
    net = caffe.Net(net_file, caffe.TEST, weights=weights)
    return {(name, i): np.array(b.data, copy=True) for name, blobs in net.params.items() for i, b in enumerate(blobs)}


def main():
    net_file, tol, ref_file, others = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    ref = params(net_file, ref_file)
    ok = True
    for other in others:
        got = params(net_file, other)
        worst, where = 0.0, None
        for key, r in ref.items():
            gap = float(np.max(np.abs(got[key] - r))) / max(1.0, float(np.max(np.abs(r))))
            if not gap <= worst:
                worst, where = gap, key
        good = worst <= tol
        ok &= good
        print("%s %s vs %s: largest relative difference %.3g (%s)" % ("ok  " if good else "FAIL", other, ref_file,
                                                                       worst, where))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
