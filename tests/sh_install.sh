#!/usr/bin/env bash
# `make install` into a fresh prefix, then every piece used from there alone (no build tree):
#   - bin/cortado runs (--version, help, a short training run),
#   - a C program built with `pkg-config --cflags --libs cortado` builds a net from text and
#     trains nothing but forward, through lib/libcortado.so and include/cortado.h,
#   - the same program through CMake's find_package(cortado) and cortado::cortado,
#   - the Python module, imported from the prefix, finds the prefix's libcortado.so.
# Env: CT_BUILD_DIR = the build tree; CT_SOURCE_DIR = the sources.
set -u
: "${CT_BUILD_DIR:?}" "${CT_SOURCE_DIR:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }
P=$(mktemp -d "${TMPDIR:-/tmp}/cortado_prefix.XXXXXX")
W=$(mktemp -d "${TMPDIR:-/tmp}/cortado_inst.XXXXXX")
trap 'rm -rf "$P" "$W"' EXIT
# nothing may lead back to the build tree
unset CORTADO CORTADO_LIB CT_TESTKIT
BUILD=$CT_BUILD_DIR
unset CT_BUILD_DIR

if cmake --install "$BUILD" --prefix "$P" >"$W/install.log" 2>&1; then ok; else bad "cmake --install failed"; tail -5 "$W/install.log" >&2; fi
for f in bin/cortado lib/libcortado.so include/cortado.h lib/pkgconfig/cortado.pc lib/cmake/cortado/cortadoConfig.cmake \
  lib/cmake/cortado/cortadoConfigVersion.cmake; do
  [ -e "$P/$f" ] && ok || bad "$f not installed"
done
pydir=$(ls -d "$P"/lib/python3*/dist-packages 2>/dev/null | head -1)
[ -n "$pydir" ] && [ -r "$pydir/cortado/__init__.py" ] && ok || bad "the Python module is not installed"

# the tool, from the prefix only
export PATH="$P/bin:/usr/bin:/bin"
cortado --version | grep -q '^cortado version' && ok || bad "cortado --version"
cortado help train | grep -q -- '--solver=FILE' && ok || bad "cortado help train"
cat >"$W/net.prototxt" <<'NET'
name: "inst"
layer { name: "data" type: "DummyData" top: "x" top: "y" dummy_data_param {
  shape { dim: 4 dim: 3 dim: 4 dim: 4 } shape { dim: 4 }
  data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }
NET
printf 'net: "%s/net.prototxt"\nbase_lr: 0.1 lr_policy: "fixed" max_iter: 4 snapshot_prefix: "%s/out/s"\n' "$W" "$W" \
  >"$W/solver.prototxt"
if cortado train --solver="$W/solver.prototxt" >"$W/train.log" 2>&1 && [ -s "$W/out/s_iter_4.caffemodel" ]; then ok
else bad "the installed cortado could not train"; tail -3 "$W/train.log" >&2; fi

# a C program against the installed library: its own forward pass and an error value
cat >"$W/prog.c" <<'C'
#include <stdio.h>
#include <cortado.h>
int main(int argc, char **argv) {
  ct_net *net = NULL;
  ct_error err = {0};
  if (argc < 2 || ct_net_create(argv[1], CT_TRAIN, 0, NULL, NULL, &net, &err) != CT_OK) {
    printf("error: %s\n", err.msg);
    return 1;
  }
  float loss = -1;
  ct_status s = ct_net_forward(net, &loss, &err);
  printf("layers %d status %s loss %s\n", ct_net_num_layers(net), ct_status_name(s), loss > 0 ? "positive" : "?");
  ct_net_free(net);
  ct_status bad = ct_net_create("/nonexistent.prototxt", CT_TRAIN, 0, NULL, NULL, &net, &err);
  printf("missing file: %s\n", ct_status_name(bad));
  return 0;
}
C
if flags=$(PKG_CONFIG_PATH="$P/lib/pkgconfig" pkg-config --cflags --libs cortado 2>"$W/pc.err") &&
  # shellcheck disable=SC2086
  cc -std=c11 -o "$W/prog" "$W/prog.c" $flags 2>"$W/cc.err"; then
  ok
  out=$("$W/prog" "$W/net.prototxt" 2>&1)
  [ "$(echo "$out" | head -1)" = "layers 3 status ok loss positive" ] && ok || bad "the pkg-config program printed: $out"
  echo "$out" | grep -q '^missing file: ' && ! echo "$out" | grep -q '^missing file: ok$' && ok ||
    bad "a missing file gave no error status: $out"
else
  bad "building against pkg-config's flags failed: $(cat "$W/pc.err" "$W/cc.err" | head -3)"
fi

# the same through CMake's package config
mkdir -p "$W/cm"
cat >"$W/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(uses_cortado C)
find_package(cortado 0.1 REQUIRED)
add_executable(prog $W/prog.c)
target_link_libraries(prog PRIVATE cortado::cortado)
CM
if cmake -S "$W/cm" -B "$W/cm/b" -DCMAKE_PREFIX_PATH="$P" >"$W/cm.log" 2>&1 && cmake --build "$W/cm/b" >>"$W/cm.log" 2>&1
then
  ok
  out=$("$W/cm/b/prog" "$W/net.prototxt" 2>&1 | head -1)
  [ "$out" = "layers 3 status ok loss positive" ] && ok || bad "the CMake-built program printed: $out"
else
  bad "find_package(cortado) and building failed"; tail -5 "$W/cm.log" >&2
fi

# the Python module from the prefix, away from the source tree
if out=$(cd "$W" && PYTHONPATH="$pydir" /usr/bin/python3 -c 'import cortado; print(cortado.library_path)' 2>&1) &&
  [ "$(readlink -f "$out")" = "$(readlink -f "$P/lib/libcortado.so")" ]; then ok
else bad "the installed Python module loaded '$out', not $P/lib/libcortado.so"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
