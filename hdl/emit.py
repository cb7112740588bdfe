"""Write a network's Verilog and a JSON description of its interface.

``generate`` writes two files into ``out_dir``:

* ``lutnet_top.v``: module ``lutnet_top`` with ports ``clk``, ``rst`` (synchronous, active
  high), ``i_stream__payload``, ``i_stream__valid``, ``i_stream__ready``, ``o_stream__payload``,
  ``o_stream__valid``, ``o_stream__ready`` (no ``*__ready`` with ``always_ready``);
* ``design.json``: the interface (widths, latency, pipeline options, submodule names).

The same IR and options always give byte-identical files (no source locations, no timestamps).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Signal

from lutnet import ir
from .options import PipelineOptions
from .top import LutnetTop

__all__ = ["TOP_NAME", "VERILOG_FILE", "DESIGN_FILE", "PORTS", "ports", "generate", "to_verilog",
           "design_description"]

TOP_NAME = "lutnet_top"
VERILOG_FILE = "lutnet_top.v"
DESIGN_FILE = "design.json"
#: Verilog port name -> (direction, what); widths are in design.json.
PORTS = {
    "clk": "input",
    "rst": "input",
    "i_stream__payload": "input",
    "i_stream__valid": "input",
    "i_stream__ready": "output",
    "o_stream__payload": "output",
    "o_stream__valid": "output",
    "o_stream__ready": "input",
}


def _stream_signals(top: LutnetTop) -> list:
    """The streams' signals: an ``always_ready`` stream's ready is a constant, not a port."""
    return [value for _, _, value in top.signature.flatten(top) if isinstance(value, Signal)]


def ports(top: LutnetTop) -> dict:
    """The ports of ``top``'s Verilog, as in :data:`PORTS` (no ready ports with ``always_ready``)."""
    names = {"clk", "rst"} | {signal.name for signal in _stream_signals(top)}
    return {k: v for k, v in PORTS.items() if k in names}


def to_verilog(top: LutnetTop, *, emit_src: bool = False) -> str:
    """Verilog text of ``top`` as module ``lutnet_top``."""
    return verilog.convert(top, name=TOP_NAME, emit_src=emit_src, ports=_stream_signals(top))


def design_description(top: LutnetTop) -> dict:
    """The contents of ``design.json`` for ``top``."""
    net = top.net
    return {
        "top": TOP_NAME,
        "verilog": VERILOG_FILE,
        "ports": ports(top),
        "n_features": net.encoder.n_features,
        "input_bits": net.encoder.input_bits,
        "levels": net.encoder.levels,
        "widths": net.widths(),
        "n_classes": net.n_classes,
        "class_bits": top.class_bits,
        "score_bits": top.score_bits,
        "payload_in_bits": top.payload_in_bits,
        "payload_out_bits": top.payload_out_bits,
        "latency": top.latency,
        "pipeline": top.options.to_dict(),
        "submodules": {name: f"{TOP_NAME}.{name}" for name in top.stages()},
        "submodule_latency": {name: stage.latency for name, stage in top.stages().items()},
    }


def generate(net: ir.Network, out_dir, options: PipelineOptions | dict | None = None) -> dict:
    """Write ``lutnet_top.v`` and ``design.json`` into ``out_dir``; return the design dict.

    ``options`` may also be a dict of :class:`PipelineOptions` fields. Files are written
    atomically (temporary file, then rename).
    """
    if isinstance(options, dict):
        options = PipelineOptions.from_dict(options)
    top = LutnetTop(net, options=options)
    if top.latency == 0:
        # Without a register Amaranth drops the clock domain, and with it the clk/rst ports.
        raise ValueError("pipeline options place no register: the streaming top needs at least one "
                         "(e.g. register_output=True)")
    text = to_verilog(top)
    design = design_description(top)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / VERILOG_FILE, text)
    _write(out_dir / DESIGN_FILE, json.dumps(design, indent=2, sort_keys=True) + "\n")
    return design


def _write(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
