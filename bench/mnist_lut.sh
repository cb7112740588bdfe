#!/usr/bin/env bash
# MNIST LUT-Net trained directly (random wiring, K = 6, 2000 + 1000 LUT neurons, group-sum head),
# then RTL vs golden on all 10,000 test images.
#   bench/mnist_lut.sh [OUT_DIR] [MNIST_DIR]     (defaults: runs/mnist-lut, ../shared/datasets/mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/mnist-lut}
DATA=${2:-../shared/datasets/mnist}
BIN=.venv/bin
T="/usr/bin/time -f %es_wall_%MKB_peak"
$T $BIN/lutnet train --dataset mnist --data-dir "$DATA" --arch lut --k 6 --hidden 2000,1000 --epochs 8 -o "$OUT"
$T $BIN/lutnet build "$OUT" -o "$OUT/build"
$T $BIN/lutnet sim "$OUT/build" --simulator verilator
$BIN/lutnet report "$OUT"
