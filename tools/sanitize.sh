#!/usr/bin/env bash
# The kernels under AddressSanitizer + UndefinedBehaviorSanitizer (README "## Sanitizers").
#
# Copies the source tree to a temporary directory (the normal build is untouched), builds the
# extensions in place there with -fsanitize=address,undefined and runs the tests against that
# build with the ASan runtime preloaded. pytest runs with --capture=sys so that the sanitizer
# reports (written to fd 2 by the runtime) reach the terminal; the distinct findings are listed at
# the end. On failure the copy is kept for reruns (its path is printed).
#
#   tools/sanitize.sh [PYTEST ARGS]          default: tests -q -x --ignore=tests/test_leaks.py
#   SANITIZE_KEEP_GOING=1 tools/sanitize.sh  report every finding instead of stopping at the first
#   PYTHON=/path/to/venv/bin/python ...      an interpreter with numpy, scipy, Cython,
#                                            setuptools>=77 and the test extras (default: python3)
# Needs gcc (libasan, libubsan). Exit status: pytest's, or 1 if any sanitizer reported.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fusedrnn-sanitize.XXXXXX")
START=$SECONDS
step() { printf '\n== [%4ds] %s\n' $((SECONDS - START)) "$*"; }
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$WORK"; else echo "(copy kept: $WORK)" >&2; fi' EXIT
# tests/test_leaks.py measures RSS, which ASan's quarantine of freed memory inflates by design;
# test_example_script_runs starts a Dask cluster in a subprocess, which hangs with the ASan
# runtime preloaded into every process (the in-process cluster tests of test_dask.py run here)
[ $# -gt 0 ] || set -- tests -q -x --ignore=tests/test_leaks.py \
    --deselect tests/test_dask.py::test_example_script_runs

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
if [ "${SANITIZE_KEEP_GOING:-0}" = 1 ]; then
    SAN="$SAN -fsanitize-recover=all"; HALT=0
    args=(); for a in "$@"; do [ "$a" = -x ] || args+=("$a"); done; set -- "${args[@]}"
else
    SAN="$SAN -fno-sanitize-recover=all"; HALT=1
fi

step "copy of the source tree in $WORK"
"$PYTHON" "$ROOT/tools/dist_contents.py" --export "$WORK/src" >/dev/null

step "build_ext --inplace with $SAN"
# setup.py appends its own -O3 after CFLAGS; the sanitizers work at any level, -g keeps lines.
(cd "$WORK/src" && CC="$CC" CFLAGS="$SAN" LDFLAGS="$SAN" \
    "$PYTHON" setup.py -q build_ext --inplace > "$WORK/build.log" 2>&1) \
    || { tail -40 "$WORK/build.log"; exit 1; }
ls "$WORK"/src/src/fusedrnn/*.so

step "pytest $* (ASan preloaded, halt_on_error=$HALT)"
export LD_PRELOAD
LD_PRELOAD=$("$CC" -print-file-name=libasan.so)
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=$HALT"   # CPython leaks by design
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=$HALT"
export PYTHONPATH="$WORK/src/src" FUSEDRNN_REQUIRE=1
cd "$WORK/src"
"$PYTHON" -c 'import sys, fusedrnn
so = [m.__file__ for n, m in sys.modules.items() if n.startswith("fusedrnn.")
      and getattr(m, "__file__", "").endswith(".so")]
print("testing", *so, sep="\n  ")
sys.exit(not so or not all(f.startswith(sys.argv[1]) for f in so))' "$WORK/src/src" \
    || { echo "fusedrnn is not imported from the sanitized build" >&2; exit 1; }
set +e
"$PYTHON" -m pytest -p no:cacheprovider --capture=sys "$@" 2>&1 | tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e

step "sanitizer findings (distinct; count, first line)"
FINDING='[A-Za-z0-9_/][A-Za-z0-9_./-]*:[0-9]+:[0-9]+: runtime error: .*|ERROR: AddressSanitizer: .*'
if grep -qE "$FINDING" "$WORK/pytest.log"; then
    grep -oE "$FINDING" "$WORK/pytest.log" | sort | uniq -c | sort -rn
    [ "$status" -ne 0 ] || status=1
else
    echo "none"
fi
step "done in $((SECONDS - START)) s, exit status $status"
exit $status
