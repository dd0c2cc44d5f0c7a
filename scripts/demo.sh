#!/usr/bin/env bash
# The main job on the bundled samples, in a private HAMCLI_HOME (./.demo) so it touches nothing else.
set -euo pipefail
export HAMCLI_HOME="${HAMCLI_HOME:-$PWD/.demo}"
echo "== hamcli demo (HAMCLI_HOME=$HAMCLI_HOME)" >&2

echo "== 1. import the 14 bundled HAM10000 samples" >&2
hamcli download samples
echo "== 2. lesion-grouped, class-stratified 50/50 split, 64 px image cache" >&2
hamcli prepare --source samples --name demo --split 50/50 --size 64 --quiet

echo "== 3. a short real training run (LeNet, 3 epochs) on the samples" >&2
hamcli train --arch lenet --data demo --epochs 3 --batch-size 8 --name demo-lenet
hamcli info
