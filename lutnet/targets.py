"""Board and part descriptions: one TOML file per target in the ``boards`` folder (package
``lutnet.boards``). Adding a target is adding a file; users may keep their own board files in
folders named by ``$LUTNET_BOARDS`` (``os.pathsep``-separated), searched before the package.

A board file names the part and its capacity; a board with pins (``[clock]`` and ``[uart]``,
optionally ``[leds]``) can also carry a complete design (``lutnet build --board NAME``), a
part-only target (no pins) is for core figures only."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class TargetError(ValueError):
    """An unknown or malformed target description; the message is one line."""


class FitError(TargetError):
    """The design needs more LUTs than the part has; the message (one line) gives the estimate,
    the capacity and what to do instead."""

    @classmethod
    def make(cls, target: "Target", estimated: int, how: str) -> "FitError":
        available = target.capacity["luts"]
        larger = []
        for name in known():
            try:
                t = load(name)
            except TargetError:
                continue
            if t.has_pins and t.lut_size == target.lut_size and t.capacity["luts"] >= estimated:
                larger.append((t.capacity["luts"], name))
        board = f"a larger board ({', '.join(n for _, n in sorted(larger))})" if larger else "a larger part"
        return cls(f"design does not fit {target.name} ({target.part}): estimated {estimated} vs available "
                   f"{available} LUT{target.lut_size} ({how}); use --core-only for figures without place "
                   f"and route, {board}, or a smaller net")


#: Required top-level fields and their TOML types.
_FIELDS = {"name": str, "description": str, "vendor": str, "family": str, "part": str,
           "device": str, "package": str, "speed_grade": str, "lut_size": int}
#: Tables: required?, {field: (type, required)}.
_TABLES = {
    "capacity": (True, {"luts": (int, True), "ffs": (int, True), "bram_kbits": (int, True)}),
    "clock": (False, {"pin": (str, True), "hz": (int, True), "iostandard": (str, False)}),
    "uart": (False, {"rx": (str, True), "tx": (str, True), "baud": (int, True), "iostandard": (str, False)}),
    "leds": (False, {"pins": (list, True), "active_low": (bool, True), "iostandard": (str, False)}),
    "fabric": (False, {"no_slice_rows": (list, False)}),
}
#: vendor -> families it has, and the LUT size of those families.
_FAMILIES = {"lattice": {"ice40": 4, "ecp5": 4}, "xilinx": {"xc7": 6, "xcup": 6}}
_VENDORS = tuple(_FAMILIES)


#: Yosys commands, run before mapping, that keep the relay registers of LUT neurons
#: (``PipelineOptions.relay_inputs``: registers named ``relay{j}``, and the argmax's
#: ``relay_argmax_*``) and of the one-LUT head's counters (``sum{c}_r{s}``, their hops
#: ``sum{c}_h{s}_{k}``) apart. Neurons reading the same bit have equal relays, which ``opt_merge``
#: would merge back into one register whose output fans out again (two equal head members, merged,
#: left one class's counter reading a relay in another class's tile, 32 tiles away). A ``keep`` on
#: the wire does not stop it (measured: digits K = 4 core, 818 instead of 1,078 flip-flops); on
#: the flip-flop cell it does.
KEEP_RELAYS = "proc\nsetattr -set keep 1 w:relay* w:sum*_r* w:sum*_h* %u %u %ci1:+[Q] t:$*dff* %i"


@dataclass(frozen=True)
class Target:
    """One target from a board file. ``capacity`` has ``luts``, ``ffs`` and ``bram_kbits``;
    ``clock`` (``pin``, ``hz``), ``uart`` (``rx``, ``tx``, ``baud``; the FPGA's view: it receives
    on ``rx``) and ``leds`` (``pins``, ``active_low``) are None on a part-only target; ``fabric``
    (``no_slice_rows``) is optional anywhere."""
    name: str
    description: str
    vendor: str
    family: str
    part: str
    device: str
    package: str
    speed_grade: str
    lut_size: int
    capacity: dict
    clock: dict | None = None
    uart: dict | None = None
    leds: dict | None = None
    fabric: dict | None = None

    @property
    def no_slice_rows(self) -> list:
        """Rows (Y) of the part's grid without logic slices (``[fabric] no_slice_rows``, known
        from nextpnr's errors): ``lutnet build --place`` leaves them out from the start instead
        of learning them one failed nextpnr run at a time."""
        return list((self.fabric or {}).get("no_slice_rows", []))

    @property
    def has_pins(self) -> bool:
        """True on a board (clock and UART pins known), False on a part-only target."""
        return self.clock is not None and self.uart is not None

    @property
    def n_leds(self) -> int:
        return len(self.leds["pins"]) if self.leds else 0

    def summary(self) -> dict:
        """The ``target`` entry of a build summary."""
        return {"name": self.name, "vendor": self.vendor, "family": self.family, "part": self.part,
                "device": self.device, "capacity": dict(self.capacity)}

    def synth_script(self, top: str) -> str:
        """Yosys commands (one per line) that map the design to this fabric, keeping the hierarchy.

        Xilinx: ``synth_xilinx`` with its LUT mapping step (ABC9 with its default script) replaced
        by ABC with a short area script. On popcount trees this is about 5x faster and gives
        fewer LUTs; adders go to LUTs (``-nocarry``), which ABC packs better than CARRY4 chains.

        Lattice: Yosys's own ``synth_ice40`` / ``synth_ecp5`` with the hierarchy kept (per-stage
        figures); place and route (:mod:`lutnet.pnr`) synthesizes flat on its own.
        """
        if self.vendor == "xilinx":
            flow = f"synth_xilinx -top {top} -family {self.family} -noiopad -nocarry"
            return "\n".join([
                KEEP_RELAYS,
                f"{flow} -run begin:map_luts",
                "opt_expr -mux_undef -noclkinv",
                f"abc -script +strash;dch,-f;if,-K,{self.lut_size},-a;mfs2 -lut {self.lut_size}",
                "clean",
                f"techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH={self.lut_size}",
                "xilinx_dffopt",
                "opt_lut_ins -tech xilinx",
                f"{flow} -run map_luts:",
            ])
        if self.vendor == "lattice":
            return f"{KEEP_RELAYS}\nsynth_{self.family} -top {top} -noflatten"
        raise TargetError(f"target {self.name}: no synthesis flow for vendor {self.vendor!r}")


def _search_path(search_path=None) -> list:
    """Folders holding board files, first match wins: ``search_path`` (a list of folders), then
    ``$LUTNET_BOARDS``, then the boards shipped with the package."""
    dirs = [Path(d) for d in (search_path or [])]
    env = os.environ.get("LUTNET_BOARDS")
    if env:
        dirs += [Path(d) for d in env.split(os.pathsep) if d]
    return dirs + [resources.files("lutnet.boards")]


def known(search_path=None) -> list[str]:
    """Names of every board file found (user folders and the package)."""
    names = set()
    for d in _search_path(search_path):
        if d.is_dir():
            names.update(p.name[:-5] for p in d.iterdir() if p.name.endswith(".toml"))
    return sorted(names)


def _type_name(kind) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean (true/false)", list: "a list",
            dict: "a table"}[kind]


def _check(value, kind, where: str) -> None:
    # TOML booleans are Python ints: an integer field must refuse ``true``
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise TargetError(f"{where} must be {_type_name(kind)}, not {type(value).__name__} {value!r}")


def parse(data: dict, where: str) -> Target:
    """A :class:`Target` from the parsed TOML ``data``; ``where`` names the file in messages."""
    fields = {}
    for key, kind in _FIELDS.items():
        if key not in data:
            raise TargetError(f"{where}: missing field {key!r}")
        _check(data[key], kind, f"{where}: field {key!r}")
        fields[key] = data[key]
    for table, (required, spec) in _TABLES.items():
        if table not in data:
            if required:
                raise TargetError(f"{where}: missing table [{table}]")
            fields[table] = None
            continue
        _check(data[table], dict, f"{where}: [{table}]")
        t = data[table]
        for key, (kind, needed) in spec.items():
            if key not in t:
                if needed:
                    raise TargetError(f"{where}: missing field {table}.{key}")
                continue
            _check(t[key], kind, f"{where}: field {table}.{key}")
        extra = sorted(set(t) - set(spec))
        if extra:
            raise TargetError(f"{where}: unknown field {table}.{extra[0]} (known: {', '.join(spec)})")
        fields[table] = dict(t)
    extra = sorted(set(data) - set(_FIELDS) - set(_TABLES))
    if extra:
        raise TargetError(f"{where}: unknown field {extra[0]!r}")

    vendor, family = fields["vendor"], fields["family"]
    if vendor not in _FAMILIES:
        raise TargetError(f"{where}: field 'vendor' is {vendor!r}, not one of {', '.join(_VENDORS)}")
    if family not in _FAMILIES[vendor]:
        raise TargetError(f"{where}: field 'family' is {family!r}, not one of {', '.join(_FAMILIES[vendor])} "
                          f"(vendor {vendor})")
    if fields["lut_size"] != _FAMILIES[vendor][family]:
        raise TargetError(f"{where}: field 'lut_size' is {fields['lut_size']}, but {family} has "
                          f"{_FAMILIES[vendor][family]}-input LUTs")
    for key in ("luts", "ffs", "bram_kbits"):
        if fields["capacity"][key] < (1 if key == "luts" else 0):
            raise TargetError(f"{where}: field capacity.{key} must be positive, not {fields['capacity'][key]}")
    if fields["clock"] is not None and fields["clock"]["hz"] < 1:
        raise TargetError(f"{where}: field clock.hz must be positive, not {fields['clock']['hz']}")
    if fields["uart"] is not None and fields["uart"]["baud"] < 1:
        raise TargetError(f"{where}: field uart.baud must be positive, not {fields['uart']['baud']}")
    if (fields["clock"] is None) != (fields["uart"] is None):
        have, lack = ("clock", "uart") if fields["uart"] is None else ("uart", "clock")
        raise TargetError(f"{where}: has [{have}] but no [{lack}] (a board needs both; a part-only target neither)")
    for i, row in enumerate((fields["fabric"] or {}).get("no_slice_rows", [])):
        _check(row, int, f"{where}: field fabric.no_slice_rows[{i}]")
    if fields["leds"] is not None:
        pins = fields["leds"]["pins"]
        for i, p in enumerate(pins):
            _check(p, str, f"{where}: field leds.pins[{i}]")
        if fields["clock"] is None:
            raise TargetError(f"{where}: has [leds] but no [clock]/[uart]")
    return Target(**fields)


def load(name: str, search_path=None) -> Target:
    """The target ``name`` (a board file ``NAME.toml`` on the search path, see :func:`known`)."""
    dirs = _search_path(search_path)
    for i, d in enumerate(dirs):
        path = d / f"{name}.toml"
        if path.is_file():
            break
    else:
        raise TargetError(f"unknown board {name!r} (known: {', '.join(known(search_path))})")
    # a user's file is named by its path, a shipped one by its name
    where = f"board file {name}.toml" if i == len(dirs) - 1 else f"board file {path}"
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{where}: {e}") from None
    target = parse(data, where)
    if target.name != name:
        raise TargetError(f"{where}: field 'name' is {target.name!r}, but the file is {name}.toml")
    return target
