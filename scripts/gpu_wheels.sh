#!/usr/bin/env bash
# Prepare, on a machine with internet, what scripts/gpu_check.py needs on a GPU machine that reaches nothing:
#   .whl/       the wheels that machine lacks (Python 3.12, manylinux x86-64), pinned to the versions in our venv
#   .gpu_data/  MATH-V's published test rows with their images (the first N rows of a MATH-V checkout)
# Both are git-ignored; the device call carries them (docs/gpu.md). Usage:
#   bash scripts/gpu_wheels.sh PATH/TO/MATH-V [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
MATHV=${1:?usage: scripts/gpu_wheels.sh PATH/TO/MATH-V [ROWS]  (a clone of github.com/mathllm/MATH-V)}
ROWS=${2:-40}
PY=${PY:-.venv/bin/python}
version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

# The GPU image has torch, transformers, accelerate, peft, pandas, pyarrow, xxhash, sympy, typer, rich, matplotlib,
# tensorboard (docs/gpu.md); it lacks TRL, datasets, math-verify and these dependencies of theirs.
PACKAGES=(trl datasets dill multiprocess math-verify latex2sympy2_extended antlr4-python3-runtime)
SPECS=()
for p in "${PACKAGES[@]}"; do
    v=$(version "$p"); [ -n "$v" ] || { echo "error: $p is not installed in $PY's environment; run make setup" >&2; exit 1; }
    SPECS+=("$p==$v")
done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download --quiet --dest .whl --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any "${SPECS[@]}"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir .whl .   # observe-r1 itself (pure Python)
echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1)"

rm -rf .gpu_data && mkdir -p .gpu_data/mathvision/data .gpu_data/mathvision/images
head -n "$ROWS" "$MATHV/data/test.jsonl" > .gpu_data/mathvision/data/test.jsonl
"$PY" - "$MATHV" <<'PY'
import json, shutil, sys
from pathlib import Path
source = Path(sys.argv[1])
for line in Path(".gpu_data/mathvision/data/test.jsonl").read_text().splitlines():
    image = json.loads(line)["image"]  # "images/N.jpg", relative to the repository root
    shutil.copy(source / image, Path(".gpu_data/mathvision") / image)
PY
echo "data: $(du -sh .gpu_data | cut -f1) in .gpu_data/mathvision ($ROWS rows)"
