# The set-up every sh_mpi_* test shares (sourced, not a test itself): the tool and tree from
# ctest's environment, a skip without mpirun, Open MPI allowed as root and oversubscribed on
# localhost, the mpirun line (MPI_TIMEOUT: seconds before a rank waiting on a silent peer gives
# up, default 60), pass/fail counting, a scratch directory and the LeNet net on the IDX files.
set -u
: "${CORTADO:?}" "${CT_SOURCE_DIR:?}" "${CT_BUILD_DIR:?}"
if ! command -v mpirun > /dev/null; then echo "SKIPPED: no mpirun"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# detect_leaks=0: in the sanitizer build LeakSanitizer would report Open MPI's own allocations
MPIRUN=(mpirun --oversubscribe --host localhost:4 --mca btl self,vader -x ASAN_OPTIONS=detect_leaks=0
        -x CT_DIST_TIMEOUT="${MPI_TIMEOUT:-60}")
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
net="$CT_SOURCE_DIR/tests/dist_lenet.prototxt" # LeNet on the IDX files
