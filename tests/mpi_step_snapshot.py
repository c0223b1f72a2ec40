"""Run by sh_mpi_partition.sh under mpirun (every rank runs it): pycaffe's step(n) on a
partitioned net whose worker group is spread over the ranks, stopping short of any snapshot or
test the solver file plans, then snapshot() on every rank. Rank 0 writes the snapshot; it must
hold the shards the other ranks own as they are at that iteration (the shell compares it with
one unpartitioned process). Usage: mpi_step_snapshot.py SOLVER WEIGHTS STEPS
"""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["CT_SOURCE_DIR"], "python"))
import cortado as caffe  # noqa: E402

solver_file, weights, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
solver = caffe.SGDSolver(solver_file, weights=weights)
solver.step(steps)
paths = solver.snapshot()
root = paths[0] is not None
assert root == (os.environ.get("OMPI_COMM_WORLD_RANK", "0") == "0"), paths  # rank 0 writes, the others get None
print("stepped %d, iteration %d, snapshot taken%s" % (steps, solver.iter, " to " + paths[0] if root else ""),
      flush=True)
