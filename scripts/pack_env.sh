#!/usr/bin/env bash
# Build deepdist's wheel and pack a virtual environment that holds it, for Spark executors (docs/cluster.md).
#
#   scripts/pack_env.sh OUT [EXTRAS]
#
# OUT/dist/deepdist-*.whl   the wheel, with the compiled deepdist._core and deepdist._word2vec_inner
# OUT/env/                  a fresh venv: the wheel, its dependencies (from PyPI) and the EXTRAS (default
#                           "word2vec", i.e. gensim; "" for none). Use OUT/env/bin/python as the driver's Python.
# OUT/env.tar.gz            OUT/env packed with venv-pack: spark-submit --archives OUT/env.tar.gz#environment
#
# PYTHON (default python3) is the interpreter the venv is made from. The archive does not contain it:
# ./environment/bin/python links to it, so every Spark host needs that same Python at that same path.
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
OUT=$(realpath -m "$1")
EXTRAS=${2-word2vec}
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$OUT/dist"
# Build from a clean copy of the sources: nothing stale from an in-place build (build/, deepdist/*.so) can
# slip into the wheel, and the work tree is left untouched.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp "$ROOT"/pyproject.toml "$ROOT"/setup.py "$ROOT"/MANIFEST.in "$ROOT"/README.md "$src"/
mkdir "$src/deepdist"
cp "$ROOT"/deepdist/*.py "$ROOT"/deepdist/*.pyx "$src/deepdist/"
cp -r "$ROOT"/deepdist/_pxd "$src/deepdist/"
rm -f "$OUT"/dist/deepdist-*.whl
"$PYTHON" -m pip wheel --no-deps --wheel-dir "$OUT/dist" "$src"
wheel=$(ls "$OUT"/dist/deepdist-*.whl)

rm -rf "$OUT/env" "$OUT/env.tar.gz"
"$PYTHON" -m venv "$OUT/env"
spec="$wheel"
if [ -n "$EXTRAS" ]; then
    spec="$wheel[$EXTRAS]"
fi
"$OUT/env/bin/python" -m pip install "$spec" venv-pack
# Level 1: the archive is built on every change and unpacked once per executor; speed beats size here.
"$OUT/env/bin/venv-pack" --prefix "$OUT/env" --output "$OUT/env.tar.gz" --compress-level 1 --quiet
echo "wheel:   $wheel"
echo "venv:    $OUT/env"
echo "archive: $OUT/env.tar.gz"
