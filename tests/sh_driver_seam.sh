#!/usr/bin/env bash
# The driver seam stays clean: the layers, the solver update and the lowering do their arithmetic
# through the driver (src/drivers/driver.h), so no file in src/layers/, src/solvers/ or
# src/lowering/ may include core/blas.h, cblas.h or the CPU driver's own headers, or call
# cblas_* / openblas_* itself. Each offending line is printed with its file and line number.
#
# Env: CT_SOURCE_DIR = the source tree. Prints "N passed, N failed"; exits non-zero on any failure.
set -u
: "${CT_SOURCE_DIR:?set CT_SOURCE_DIR to the source tree}"
pass=0 fail=0
check() { # check <description> <extended regex>
  local hits
  hits=$(cd "$CT_SOURCE_DIR" && grep -rnE --include='*.c' --include='*.h' "$2" src/layers src/solvers src/lowering)
  if [ -z "$hits" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAILED: $1 outside the driver:" >&2
    echo "$hits" | sed 's/^/  /' >&2
  fi
}
for d in src/layers src/solvers src/lowering src/drivers/driver.h; do
  [ -e "$CT_SOURCE_DIR/$d" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAILED: no $d" >&2; }
done
check "an include of core/blas.h" '#[[:space:]]*include[[:space:]]*[<"]([^">]*/)?core/blas\.h[">]'
check "an include of cblas.h" '#[[:space:]]*include[[:space:]]*[<"]([^">]*/)?cblas\.h[">]'
check "an include of the CPU driver's headers" '#[[:space:]]*include[[:space:]]*"drivers/cpu(\.h|/)'
check "a call to CBLAS" '\bcblas_[a-z_]+[[:space:]]*\('
check "a call to OpenBLAS" '\bopenblas_[a-z_]+[[:space:]]*\('
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
