"""Run by sh_mpi_partition.sh under mpirun (every rank runs it), and in one process for the
reference: pycaffe's step(n) on a partitioned net whose worker group is spread over the ranks,
stopping short of any snapshot or test the solver file plans, then test() and snapshot() on
every rank. Rank 0 tests and writes the snapshot; both must see the shards the other ranks own
as they are at that iteration (the shell compares the test's outputs and the snapshot with one
unpartitioned process). Usage: mpi_step_snapshot.py SOLVER WEIGHTS STEPS
"""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["CT_SOURCE_DIR"], "python"))
import cortado as caffe  # noqa: E402

solver_file, weights, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
solver = caffe.SGDSolver(solver_file, weights=weights)
solver.step(steps)
scores = solver.test()
paths = solver.snapshot()
root = paths[0] is not None
assert root == (os.environ.get("OMPI_COMM_WORLD_RANK", "0") == "0"), paths  # rank 0 writes, the others get None
assert (scores is not None) == root, scores  # rank 0 tests, the others get None
if root:
    print("test outputs: " + " ".join("%.9g" % v for v in scores), flush=True)
print("stepped %d, iteration %d, snapshot taken%s" % (steps, solver.iter, " to " + paths[0] if root else ""),
      flush=True)
