#!/usr/bin/env bash
# MNIST: a binarized 784-1500-10 teacher, distilled into a K = 6 LUT-Net (1500 LUTs mirroring the
# hidden neurons, 50 head LUTs per class, group-sum head), then Yosys LUT6 figures and RTL vs
# golden on all 10,000 test images; board builds (ULX3S, iCEBreaker) and ECP5 cores; the same
# teacher distilled into a K = 4 LUT-Net for the 4-input fabrics, on both boards.
#   bench/mnist_distill.sh [OUT_DIR] [MNIST_DIR]    (defaults: runs, ../shared/datasets/mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs}
DATA=${2:-../shared/datasets/mnist}
BIN=.venv/bin
T="/usr/bin/time -f %es_wall_%Us_user_%MKB_peak"
$T $BIN/lutnet train --dataset mnist --data-dir "$DATA" --hidden 1500 --epochs 10 -o "$OUT/mnist-1500"
$T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-distill" --group 50 --epochs 20 --threads 2
$T $BIN/lutnet build "$OUT/mnist-distill" -o "$OUT/mnist-distill/build"
$T $BIN/lutnet sim "$OUT/mnist-distill/build" --simulator verilator
# Board builds: the ULX3S (ECP5-85F) holds it; the iCEBreaker (5,280 LUT4) does not (the fit check says so).
PIPE="--adder-levels-per-stage 1 --argmax-levels-per-stage 1 --register-comparisons"
$T $BIN/lutnet build "$OUT/mnist-distill" -o "$OUT/mnist-distill/ulx3s" --board ulx3s-85f $PIPE
$BIN/lutnet build "$OUT/mnist-distill" -o "$OUT/mnist-distill/icebreaker" --board icebreaker || true
# ECP5 cores out of context, for the Fmax / fabric-ceiling ratio.
for opts in "" "--stall-free" "--stall-free --split-lut6"; do
    $T $BIN/lutnet build "$OUT/mnist-distill" -o "$OUT/mnist-distill/ecp5-core${opts// /}" --board ulx3s-85f \
        --core-only $PIPE $opts
done
# The student for 4-input fabrics (iCE40, ECP5): K = 4, one LUT4 per neuron.
$T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-k4" --k 4 --group 50 --epochs 20 --threads 2
$T $BIN/lutnet build "$OUT/mnist-k4" -o "$OUT/mnist-k4/build"
$T $BIN/lutnet build "$OUT/mnist-k4" -o "$OUT/mnist-k4/icebreaker" --board icebreaker --verify 10
$T $BIN/lutnet build "$OUT/mnist-k4" -o "$OUT/mnist-k4/ulx3s" --board ulx3s-85f $PIPE
$T $BIN/lutnet build "$OUT/mnist-k4" -o "$OUT/mnist-k4/ecp5-core" --board ulx3s-85f --core-only $PIPE --stall-free
# The K = 4 student trained local (every input within 0.1 of its neuron on the shared layout), its
# ECP5 core, and a probe of that core's neurons locked where the layout puts them (BEL attributes),
# four a tile, the rest placed by nextpnr; then the core placed by lutnet (--place: a neuron and its
# relay flip-flops a tile, the one-LUT head's counters among them) and its arrivals by distance,
# the one-LUT head and relays without lutnet's placement, --place with hops on the head's long
# routes, and --place with no output buffer.
$T $BIN/lutnet distill "$OUT/mnist-1500" -o "$OUT/mnist-k4-local" --k 4 --group 50 --epochs 20 --local 0.1 --threads 2
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-core" --board ulx3s-85f --core-only $PIPE --stall-free
$T $BIN/python bench/locked_placement.py "$OUT/mnist-k4-local/ecp5-core" --per-tile 4
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-placed" --board ulx3s-85f --core-only $PIPE --place
$BIN/python bench/locked_placement.py "$OUT/mnist-k4-local/ecp5-placed"
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-one-lut" --board ulx3s-85f --core-only $PIPE \
    --stall-free --relays --one-lut-head
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-hops" --board ulx3s-85f --core-only $PIPE --place --hops 8
# The placed core without the output buffer and its backpressure (--always-ready), without and
# with hops (10 tiles a hop; the argmax relayed and placed by lutnet); the latter checked on the
# whole test set with random input gaps.
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-always-ready" --board ulx3s-85f --core-only \
    $PIPE --place --always-ready
$T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-always-ready-hops" --board ulx3s-85f \
    --core-only $PIPE --place --always-ready --hops
$T $BIN/lutnet sim "$OUT/mnist-k4-local/ecp5-always-ready-hops" --data-dir "$DATA" --random-ready
# per stage, and every route between flip-flops by its length; then nextpnr seeds 1-4 (routed for
# 0.8 of the ceiling with rip-up, as the build); the goal alone, the board clock's goal, and a
# goal out of reach
B="$OUT/mnist-k4-local/ecp5-always-ready-hops"
$BIN/python bench/locked_placement.py "$B" --seeds 4
$BIN/python bench/locked_placement.py "$B" --seeds 1 --no-ripup | grep "seeds 1-"
$BIN/python bench/locked_placement.py "$B" --seeds 1 --goal 25 | grep "seeds 1-"
$BIN/python bench/locked_placement.py "$B" --seeds 1 --goal 475 | grep "seeds 1-"
# the layout's constants, placed again on this netlist without place and route
$BIN/python bench/layout_routes.py "$B"
$BIN/python bench/layout_routes.py "$B" --set NEURON_WEIGHT=2 --set ROOT_WEIGHT=1 --set ARGMAX_WEIGHT=1 \
    --set ROOT_RING=0 --set TILE_FILL=1 --set CHAIN_ROOM=0
for s in ROOT_RING=0 ROOT_RING=0.2 ROOT_RING=0.3 CHAIN_ROOM=1 TILE_FILL=1 TILE_FILL=0.9 TILE_FILL=0.7 TILE_FILL=0.6 \
        HOP_SWEEPS=0 HOP_SWEEPS=1 HOP_SWEEPS=2 HOP_SWEEPS=5; do
    $BIN/python bench/layout_routes.py "$B" --set $s
done
# a fuller square, built (it plans more hops): TILE_FILL 0.9, and 1.0, which has too few free
# flip-flops for them (the build stops with that error)
for f in 0.9 1.0; do
    $T $BIN/python -c "import sys; from lutnet import placement; placement.TILE_FILL = $f
from lutnet.cli import main; sys.exit(main(sys.argv[1:]))" build "$OUT/mnist-k4-local" \
        -o "$OUT/mnist-k4-local/ecp5-always-ready-hops-fill$f" --board ulx3s-85f --core-only $PIPE --place \
        --always-ready --hops || true
done
# the hops' length: 8, 9, 11, 12, 16 and 20 tiles a hop (10, the default, above)
for t in 8 9 11 12 16 20; do
    $T $BIN/lutnet build "$OUT/mnist-k4-local" -o "$OUT/mnist-k4-local/ecp5-always-ready-hops$t" --board ulx3s-85f \
        --core-only $PIPE --place --always-ready --hops $t
done
$BIN/lutnet report "$OUT/mnist-1500" "$OUT/mnist-distill" "$OUT/mnist-k4" "$OUT/mnist-k4-local"
