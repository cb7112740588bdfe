"""Check that a design has at most one LUT4 between registers once mapped to ECP5.

:func:`lut_depth_violations` maps a design with Yosys's ``synth_ecp5`` (the project's flags, plus
``-noccu2`` so comparators and adders become LUTs rather than carry chains, and ``-nodffe`` so
an enable shows up as logic), then reads the JSON netlist: every flip-flop (``TRELLIS_FF``) must
load a flip-flop output, a top-level input, a constant, or one ``LUT4`` whose inputs are all
such. Anything else before a flip-flop (a LUT4 fed by a LUT4, a PFUMX/L6MUX21 wide multiplexer,
a CCU2C carry cell, distributed RAM) is a violation.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from amaranth.back import verilog

from lutnet.synth import run_yosys

__all__ = ["lut_depth_violations", "netlist_violations", "SYNTH_FLAGS"]

#: ``synth_ecp5`` options of the check (the project's ``-dff``, see ``lutnet.pnr.synth_script``).
SYNTH_FLAGS = "-dff -noccu2 -nodffe"

_FF, _LUT = "TRELLIS_FF", "LUT4"


def _bit_names(module: dict) -> dict:
    """Net bit -> a readable name (``name[k]``), user-visible names first."""
    names = {}
    ranked = sorted(module.get("netnames", {}).items(),
                    key=lambda item: (item[1].get("hide_name", 0), item[0].count("."), item[0]))
    for name, net in reversed(ranked):
        bits = net["bits"]
        for k, b in enumerate(bits):
            if isinstance(b, int):
                names[b] = name if len(bits) == 1 else f"{name}[{k}]"
    return names


def netlist_violations(netlist: dict, top: str) -> list[str]:
    """The violations (see the module docstring) of module ``top`` of a flat, mapped Yosys JSON
    netlist: one line per offending flip-flop, naming the register bit it holds."""
    module = netlist["modules"].get(top)
    if module is None:
        raise ValueError(f"netlist has no module {top!r} "
                         f"(has: {', '.join(sorted(netlist['modules']))})")
    cells = {name: c for name, c in module.get("cells", {}).items() if c["type"] != "$scopeinfo"}
    driver = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output":
                driver.update((b, name) for b in bits if isinstance(b, int))
    inputs = {b for port in module.get("ports", {}).values() if port["direction"] == "input"
              for b in port["bits"] if isinstance(b, int)}
    names = _bit_names(module)

    def source(bit) -> bool:
        """A register, a top-level input or a constant."""
        return (not isinstance(bit, int) or bit in inputs
                or (bit in driver and cells[driver[bit]]["type"] == _FF))

    def what(bit) -> str:
        if bit not in driver:
            return f"undriven net {names.get(bit, bit)}"
        return f"{cells[driver[bit]]['type']} {driver[bit]}"

    out = []
    for name, cell in sorted(cells.items()):
        if cell["type"] != _FF:
            continue
        (d,), (q,) = cell["connections"]["DI"], cell["connections"]["Q"]
        if source(d):
            continue
        reg = names.get(q, name)
        if d not in driver:
            out.append(f"{reg}: loads {what(d)}")
            continue
        lut = cells[driver[d]]
        if lut["type"] != _LUT:
            out.append(f"{reg}: loads {what(d)}, not a LUT4")
            continue
        bad = [b for port in "ABCD" for b in lut["connections"].get(port, []) if not source(b)]
        if bad:
            out.append(f"{reg}: loads LUT4 {driver[d]}, which reads {what(bad[0])}")
    return out


def lut_depth_violations(elaboratable_or_verilog, *, top: str, workdir, ports=None,
                         log=None) -> list[str]:
    """Map a design to ECP5 with Yosys in ``workdir`` and return its violations of "one LUT4
    between registers" (see :func:`netlist_violations`); ``[]`` when it has none.

    ``elaboratable_or_verilog`` is Verilog text with a module ``top``, or an Amaranth
    elaboratable converted as module ``top`` (``ports`` as for ``amaranth.back.verilog.convert``:
    needed unless it is a ``wiring.Component``). The top-level inputs count as registers;
    give the design a register on every input that is not one in the real circuit."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(elaboratable_or_verilog, str):
        text = elaboratable_or_verilog
    else:
        kwargs = {} if ports is None else {"ports": ports}
        text = verilog.convert(elaboratable_or_verilog, name=top, **kwargs)
    (workdir / f"{top}.v").write_text(text)
    start = time.perf_counter()
    # YoWASP sees only its working folder: relative names.
    run_yosys(f"read_verilog {top}.v\nsynth_ecp5 -top {top} {SYNTH_FLAGS} -json {top}.json",
              workdir, name="onelut", what=f"synth_ecp5 {top}", log=log)
    if log is not None:
        log(f"  yosys (synth_ecp5 {top}): {time.perf_counter() - start:.1f} s")
    return netlist_violations(json.loads((workdir / f"{top}.json").read_text()), top)
