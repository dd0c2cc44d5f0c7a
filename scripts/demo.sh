#!/usr/bin/env bash
# The main job on the bundled samples, in a private HAMCLI_HOME (./.demo, or HAMCLI_DEMO_HOME) so it touches
# nothing else: not even a HAMCLI_HOME set outside, whose default model would otherwise become the demo's LeNet.
set -euo pipefail
export HAMCLI_HOME="${HAMCLI_DEMO_HOME:-$PWD/.demo}"
SAMPLES="$HAMCLI_HOME/data/datasets/samples"
say() {  # a heading, and its continuation lines under it
  printf '\n== %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '   %s\n' "$line" >&2; done
}
note() { printf '   %s\n' "$*" >&2; }  # a line under the heading before
say "hamcli demo (HAMCLI_HOME=$HAMCLI_HOME)"

say "1. import the 14 bundled HAM10000 samples (two per class, a validation report)"
hamcli download samples
say "2. a lesion-grouped, class-stratified 50/50 split and a 64 px image cache"
hamcli prepare --source samples --name demo --split 50/50 --size 64 --quiet --overwrite
say "3. a short real training run (LeNet, 5 epochs). Seven images teach a model nothing: this shows the tool" \
    "(so its warning that the model never beat the majority baseline is expected here)"
hamcli train --arch lenet --data demo --epochs 5 --batch-size 8 --lr 0.003 --name demo-lenet --overwrite --quiet
note "what this home now holds (hamcli info):"
hamcli info
say "4. the model bundled with hamcli (the row 'bundled' above: its architecture and training data) on these" \
    "14 samples, beside their true classes. It trained on most of HAM10000, so most samples were among its" \
    "training or validation images (marked seen): their answers say nothing about new images (model card)"
hamcli predict "$SAMPLES/images" --model bundled --top-k 2 --labels "$SAMPLES/metadata.csv"
say "5. what it looked at: Grad-CAM panels for every sample, in $HAMCLI_HOME/gradcam/"
hamcli gradcam "$SAMPLES/images" --model bundled --panel -o "$HAMCLI_HOME/gradcam/" --format csv > /dev/null
note "$(ls "$HAMCLI_HOME/gradcam" | wc -l) panels written, e.g. $(ls "$HAMCLI_HOME/gradcam" | head -1)"
say "the demo's LeNet stays in $HAMCLI_HOME: elsewhere hamcli predict, gradcam and serve use the bundled model" \
    "until you train your own"
say "next: get the data (hamcli download), then hamcli train --recipe recommended, hamcli evaluate --ci," \
    "hamcli serve for a web page; docs/ has a page per command"
