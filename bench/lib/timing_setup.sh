# The set-up that the `cortado time` comparison benchmarks share (sourced, not run):
#   . "$(dirname "$0")/lib/timing_setup.sh" "$@"
# Strict mode, the working directory at the repository root, and from the arguments and the
# environment: BUILD (build), NET ($1, default ../shared/zoo/ResNet-50-deploy.prototxt), BATCH
# ($2, 16), ITERS ($3, 3), ROUNDS (2), PY (/usr/bin/python3); a scratch directory $tmp, removed
# on exit after its logs are copied to KEEP when KEEP is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD=${BUILD:-build}
NET=${1:-../shared/zoo/ResNet-50-deploy.prototxt}
BATCH=${2:-16}
ITERS=${3:-3}
ROUNDS=${ROUNDS:-2}
PY=${PY:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$tmp"/*.log "$KEEP"/; fi; rm -rf "$tmp"' EXIT
