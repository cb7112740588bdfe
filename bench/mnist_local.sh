#!/usr/bin/env bash
# MNIST: what local wiring (--local R) costs in accuracy, and how far the r = 0.2 student's relay
# routes reach once placed (the README's "Local wiring" paragraph and the --local 0.2 probe).
# The R = 0.1 student of 20 epochs and its probes are in bench/mnist_distill.sh. Needs the teacher
# runs/mnist-1500 (bench/mnist_distill.sh, first line).
#   bench/mnist_local.sh [OUT_DIR] [MNIST_DIR]    (defaults: runs, ../shared/datasets/mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs}
DATA=${2:-../shared/datasets/mnist}
BIN=.venv/bin
T="/usr/bin/time -f %es_wall"
PIPE="--adder-levels-per-stage 1 --argmax-levels-per-stage 1 --register-comparisons --stall-free"
# 4 fine-tuning epochs each: unrestricted, then windows of 0.2, 0.1 and 0.05 of the layout's side
$T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-k4-e4" --k 4 --group 50 --epochs 4 --data-dir "$DATA"
for r in 0.2 0.1 0.05; do
    $T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-k4-e4-local$r" --k 4 --group 50 --epochs 4 --local $r \
        --data-dir "$DATA"
done
# R = 0.2 with 20 epochs (accuracy), then its core placed by lutnet (routes)
$T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-k4-local20" --k 4 --group 50 --epochs 20 --local 0.2 \
    --data-dir "$DATA"
$T $BIN/lutnet build "$OUT/mnist-k4-local20" -o "$OUT/mnist-k4-local20/ecp5-placed" --board ulx3s-85f \
    --core-only $PIPE --place
$BIN/python bench/locked_placement.py "$OUT/mnist-k4-local20/ecp5-placed"
