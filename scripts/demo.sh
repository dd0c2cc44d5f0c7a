#!/usr/bin/env bash
# The main job on the bundled samples, in a private HAMCLI_HOME (./.demo) so it touches nothing else.
set -euo pipefail
export HAMCLI_HOME="${HAMCLI_HOME:-$PWD/.demo}"
echo "== hamcli demo (HAMCLI_HOME=$HAMCLI_HOME)" >&2

echo "== 1. import the 14 bundled HAM10000 samples" >&2
hamcli download samples
echo "== 2. lesion-grouped, class-stratified 50/50 split, 64 px image cache" >&2
hamcli prepare --source samples --name demo --split 50/50 --size 64 --quiet

echo "== 3. a short real training run (LeNet, 15 epochs of 7 images) on the samples" >&2
hamcli train --arch lenet --data demo --epochs 15 --batch-size 8 --lr 0.003 --name demo-lenet
hamcli info
echo "== 4. evaluate the demo run on its lesion-grouped test split" >&2
hamcli evaluate demo-lenet
echo "== 5. predict every bundled sample" >&2
hamcli predict "$HAMCLI_HOME/data/datasets/samples/images" --model demo-lenet --top-k 2
echo "== 6. Grad-CAM panels for every bundled sample" >&2
hamcli gradcam "$HAMCLI_HOME/data/datasets/samples/images" --model demo-lenet --panel -o "$HAMCLI_HOME/gradcam"
echo "Grad-CAM panels written to $HAMCLI_HOME/gradcam" >&2
echo "== 7. the model bundled with hamcli (LeNet trained on 5,174 HAM10000 images, 12 of these samples among them)" >&2
hamcli predict "$HAMCLI_HOME/data/datasets/samples/images" --model bundled --top-k 2
