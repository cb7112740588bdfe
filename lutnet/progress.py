"""Progress lines while a long step runs (a tool, a simulation): the seconds so far and what
the step says it is doing."""
from __future__ import annotations

import contextlib
import threading
import time

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
