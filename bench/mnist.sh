#!/usr/bin/env bash
# MNIST benchmark of the binarized flow: train 784-512-512-10, build (Verilog + Yosys LUT6
# counts), check all 10,000 test images on Verilator, time the golden model, print the report.
#
#   bench/mnist.sh [OUT_DIR] [MNIST_DIR]        (defaults: runs/mnist, ../shared/datasets/mnist)
#   SYNTH=0 bench/mnist.sh                      (skip Yosys: it takes long on a 700k-LUT design)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/mnist}
DATA=${2:-../shared/datasets/mnist}
BIN=.venv/bin
T="/usr/bin/time -f %es_wall_%MKB_peak"

$T $BIN/lutnet train --dataset mnist --data-dir "$DATA" --hidden 512,512 --epochs 20 --threads 1 -o "$OUT"
$T $BIN/lutnet build "$OUT" -o "$OUT/build-rtl" --no-synth
$T $BIN/lutnet sim "$OUT/build-rtl" --simulator verilator
$BIN/python bench/golden_speed.py --model "$OUT/model.npz" --data-dir "$DATA"
if [ "${SYNTH:-1}" != 0 ]; then
    $T $BIN/lutnet build "$OUT" -o "$OUT/build"
fi
$BIN/lutnet report "$OUT"
