#!/usr/bin/env bash
# Board builds of small digits LUT-Nets (the README's Boards table, digits rows):
# an iCEBreaker bitstream with the board top checked over the simulated UART, and the most
# pipelined core on the ECP5 (out of context) for the Fmax / fabric-ceiling ratio, with the global
# enable (ecp5-pipelined) and free-running with a credit-counted output buffer (ecp5-stall-free),
# then with relays (ecp5-relays) and placed by lutnet (ecp5-placed, and ecp5-always-ready without
# the buffer).
#   bench/boards.sh [OUT_DIR]     (default runs/boards)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/boards}
BIN=.venv/bin
T="/usr/bin/time -f %es_wall"
PIPE="--adder-levels-per-stage 1 --argmax-levels-per-stage 1 --register-comparisons"
$BIN/lutnet train -o "$OUT/dlut6" --arch lut --k 6 --hidden 64,40 --epochs 10
$BIN/lutnet train -o "$OUT/dlut4" --arch lut --k 4 --hidden 64,40 --epochs 10
$T $BIN/lutnet build "$OUT/dlut6" -o "$OUT/dlut6/icebreaker" --board icebreaker --verify 20
for k in 6 4; do
    $T $BIN/lutnet build "$OUT/dlut$k" -o "$OUT/dlut$k/ecp5-default" --board ulx3s-85f --core-only
    $T $BIN/lutnet build "$OUT/dlut$k" -o "$OUT/dlut$k/ecp5-pipelined" --board ulx3s-85f --core-only $PIPE
    $T $BIN/lutnet build "$OUT/dlut$k" -o "$OUT/dlut$k/ecp5-stall-free" --board ulx3s-85f --core-only $PIPE --stall-free
done
$T $BIN/lutnet build "$OUT/dlut6" -o "$OUT/dlut6/ecp5-stall-free-split" --board ulx3s-85f --core-only $PIPE \
    --stall-free --split-lut6
# relays alone (nextpnr places them), with the one-LUT head, and the layers and head counters placed
# by lutnet with their relays
$T $BIN/lutnet build "$OUT/dlut4" -o "$OUT/dlut4/ecp5-relays" --board ulx3s-85f --core-only $PIPE --stall-free --relays
$T $BIN/lutnet build "$OUT/dlut4" -o "$OUT/dlut4/ecp5-one-lut" --board ulx3s-85f --core-only $PIPE --stall-free --relays \
    --one-lut-head
$T $BIN/lutnet build "$OUT/dlut4" -o "$OUT/dlut4/ecp5-placed" --board ulx3s-85f --core-only $PIPE --place
# placed, without the output buffer and backpressure; then the same net trained local (every input
# within 0.2 of its neuron on the layout), checked in simulation with random input gaps
$T $BIN/lutnet build "$OUT/dlut4" -o "$OUT/dlut4/ecp5-always-ready" --board ulx3s-85f --core-only $PIPE --place \
    --always-ready
$BIN/lutnet train -o "$OUT/dlut4-local" --arch lut --k 4 --hidden 64,40 --epochs 10 --local 0.2
$T $BIN/lutnet build "$OUT/dlut4-local" -o "$OUT/dlut4-local/ecp5-always-ready" --board ulx3s-85f --core-only $PIPE \
    --place --always-ready
$BIN/lutnet sim "$OUT/dlut4-local/ecp5-always-ready" --random-ready
# with hops on the head counters' long routes (10 tiles a hop: one hop stage here), checked in
# simulation; its register inputs over the 2.16 ns budget per stage, and Fmax with nextpnr seeds 1-8
$T $BIN/lutnet build "$OUT/dlut4-local" -o "$OUT/dlut4-local/ecp5-always-ready-hops" --board ulx3s-85f --core-only \
    $PIPE --place --always-ready --hops
$BIN/lutnet sim "$OUT/dlut4-local/ecp5-always-ready-hops" --random-ready
$BIN/python bench/locked_placement.py "$OUT/dlut4-local/ecp5-always-ready-hops" --seeds 8
$BIN/lutnet report "$OUT"
