#!/usr/bin/env bash
# The OpenBLAS core the cortado tool runs (choose_blas_core in tools/cortado.c), against two
# independent readings: the core OpenBLAS picks by itself (bench/sgemm_roof, which links
# OpenBLAS without cortado's start-up logic) and the CPU's flags in /proc/cpuinfo.
#
#  - A core set in the environment (these machines may set OPENBLAS_CORETYPE) is left alone:
#    cortado reports exactly it.
#  - Otherwise, when OpenBLAS fell back to its generic kernels on a CPU with AVX-512 (AVX2 + FMA),
#    cortado runs SkylakeX (Haswell) and says it set it; when OpenBLAS's own pick is not generic,
#    cortado keeps it. CT_BLAS_CORE=keep always reports OpenBLAS's own pick.
#
# Env: CORTADO, CT_BUILD_DIR, CT_SOURCE_DIR. Prints "N passed, N failed".
set -u
roof="$CT_BUILD_DIR/sgemm_roof"
net="$CT_SOURCE_DIR/bench/lenet_time_b64.prototxt"
pass=0
fail=0
check() { # what expected got
  if [ "$2" = "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1: expected '$2', got '$3'" >&2; fi
}
core_of() { sed -n 's/.*OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p' | head -1; }
own=$("$roof" 1 64 | sed -n 's/.*core=\([A-Za-z0-9]*\).*/\1/p')
[ -n "$own" ] || { echo "FAIL: sgemm_roof printed no core" >&2; echo "0 passed, 1 failed"; exit 1; }

log=$("$CORTADO" time --model="$net" --iterations=1 2>&1)
got=$(core_of <<<"$log")
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  # the environment's core: cortado neither overrides nor claims it
  check "core with OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE in the environment" "$own" "$got"
  check "no 'set by cortado' when the environment sets the core" "0" "$(grep -c 'set by cortado' <<<"$log")"
else
  case "$own" in
    Prescott | Core2 | Katmai | Coppermine | Northwood | Banias | Penryn | Dunnington | Nehalem | Atom) generic=1 ;;
    *) generic=0 ;;
  esac
  want=$own
  if [ "$generic" = 1 ]; then
    if grep -qw avx512f /proc/cpuinfo; then want=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then want=Haswell; fi
  fi
  check "core cortado runs (OpenBLAS alone picks $own)" "$want" "$got"
  said=$(grep -c "set by cortado: OpenBLAS detected $own" <<<"$log")
  check "the log says cortado set the core" "$([ "$want" != "$own" ] && echo 1 || echo 0)" "$said"
  kept=$(CT_BLAS_CORE=keep "$CORTADO" time --model="$net" --iterations=1 2>&1 | core_of)
  check "CT_BLAS_CORE=keep keeps OpenBLAS's own pick" "$own" "$kept"
  # the restart keeps the arguments and the exit status of a failing run
  CT_BLAS_CORE= "$CORTADO" time --model=/nonexistent.prototxt --iterations=1 >/dev/null 2>"${TMPDIR:-/tmp}/ct_core_err.$$"
  check "exit status of a failing run after the restart" "1" "$?"
  check "its message names the file" "1" "$(grep -c nonexistent.prototxt "${TMPDIR:-/tmp}/ct_core_err.$$")"
  rm -f "${TMPDIR:-/tmp}/ct_core_err.$$"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
