"""Progress lines while a long step runs (a tool, a simulation): the seconds so far and what
the step says it is doing."""
from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

#: Seconds between progress lines.
PROGRESS_SECONDS = 20.0


@contextlib.contextmanager
def progress_lines(label: str, log, status=None):
    """While the block runs, every :data:`PROGRESS_SECONDS`, ``log`` gets ``  LABEL: N s`` and,
    if ``status`` is given and returns a text, ``, TEXT`` (e.g. the step a tool's log has
    reached). Nothing without ``log``. ``status`` runs on a watcher thread; an OSError in it
    leaves the text out."""
    if log is None:
        yield
        return
    done, start = threading.Event(), time.perf_counter()

    def watch():
        while not done.wait(PROGRESS_SECONDS):
            said = None
            if status is not None:
                try:
                    said = status()
                except OSError:
                    pass
            log(f"  {label}: {time.perf_counter() - start:.0f} s" + (f", {said}" if said else ""))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_logged(cmd: list[str], cwd: Path, log_file: Path | None, label: str, log=None,
               step=None) -> tuple[int, str, str, float]:
    """Run ``cmd`` in ``cwd`` (no stdin, stdout and stderr captured) and return (exit code,
    stdout, stderr, seconds), with progress lines for ``log`` (:func:`progress_lines`)
    that say ``step(text of log_file so far)``: the step the tool is at. Interrupted, the tool
    is killed. OSError (no such program) is the caller's to turn into a message."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    status = None if step is None or log_file is None else \
        (lambda: step(Path(log_file).read_text(errors="replace")))
    try:
        with progress_lines(label, log, status):
            stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, stdout, stderr, time.perf_counter() - start
