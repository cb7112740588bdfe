"""A tiny compile cache for make's ``OBJCACHE`` hook in Verilator builds (like ccache, for one job).

Every Verilator build compiles the same runtime (``verilated.cpp``, ``verilated_vpi.cpp``, ...:
about 20 s of CPU) although it depends only on the toolchain. ``verilated.mk`` runs each compile as
``$(OBJCACHE) $(CXX) ... -c -o NAME.o SOURCE``; the runner sets ``OBJCACHE`` to this script, which
reuses the object (and its ``-MMD`` dependency file) when the compiler, the command line and the
source file are the same as before, and otherwise compiles and stores it.

Only sources under ``$VERILATOR_ROOT/include`` are cached: they include nothing from the build
folder. Everything else is compiled as usual. The cache folder is ``$LUTNET_OBJCACHE``.

Usage (by make): ``python objcache.py COMPILER ARGS...``
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _cacheable(args: list[str]) -> tuple[Path, Path] | None:
    """(source, object) if this is a compile of a Verilator runtime file, else None."""
    root, cache = os.environ.get("VERILATOR_ROOT"), os.environ.get("LUTNET_OBJCACHE")
    if not root or not cache or "-c" not in args or "-o" not in args:
        return None
    i = args.index("-o")
    if i + 1 >= len(args):
        return None
    obj = Path(args[i + 1])
    sources = [Path(a) for a in args if a.endswith((".cpp", ".cc", ".c"))]
    if len(sources) != 1 or obj.suffix != ".o" or obj.parent != Path("."):
        return None
    include = Path(root).resolve() / "include"
    src = sources[0].resolve()
    return (src, obj) if include in src.parents else None


def _key(args: list[str], src: Path) -> str:
    h = hashlib.sha256()
    compiler = shutil.which(args[0]) or args[0]
    st = os.stat(compiler)
    h.update(f"{compiler}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update("\0".join(args).encode() + b"\0")
    h.update(src.read_bytes())
    return h.hexdigest()[:32]


def main(args: list[str]) -> int:
    if not args:
        print("usage: objcache.py COMPILER ARGS...", file=sys.stderr)
        return 2
    job = _cacheable(args)
    if job is None:
        return subprocess.call(args)
    src, obj = job
    dep = obj.with_suffix(".d")
    entry = Path(os.environ["LUTNET_OBJCACHE"]) / _key(args, src)
    if (entry / "obj").is_file():
        shutil.copyfile(entry / "obj", obj)
        if (entry / "dep").is_file():
            shutil.copyfile(entry / "dep", dep)
        return 0
    rc = subprocess.call(args)
    if rc == 0 and obj.is_file():
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        shutil.copyfile(obj, tmp / "obj")
        if dep.is_file():
            shutil.copyfile(dep, tmp / "dep")
        try:
            os.rename(tmp, entry)
        except OSError:   # stored meanwhile by a parallel build
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
