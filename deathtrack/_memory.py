"""What deathtrack does in processes it owns (the command line's) to keep memory down.

- :func:`claim_process`: marks this process as deathtrack's own, so trackpy is imported
  without the optional modules it would load (:func:`deathtrack.track.import_trackpy`);
  a library call in someone else's process (a notebook, napari) leaves their imports
  alone.
- :func:`give_back_memory`: hands freed heap back to the system (Linux, glibc).

Tried and not kept: fixing glibc's threshold for mapping blocks apart at 1 MiB
(``mallopt(M_MMAP_THRESHOLD)``), so that each freed frame-sized array leaves the resident
size at once. It took the 1024² x 60-frame benchmark's peak ~60 MB lower and its CPU
time from ~72 to ~101-107 s (every large array mapped afresh and its pages faulted in).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_OWN_PROCESS = False


def claim_process() -> None:
    """Mark this process as deathtrack's own (the command line's): trackpy is imported
    without the optional modules it would load (:func:`deathtrack.track.import_trackpy`)."""
    global _OWN_PROCESS
    _OWN_PROCESS = True


def own_process() -> bool:
    """Whether :func:`claim_process` was called in this process."""
    return _OWN_PROCESS


def _libc():
    """glibc, or None elsewhere (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if not name or not name.startswith("libc.so"):
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def give_back_memory() -> None:
    """Hand the memory a finished analysis freed back to the system (glibc keeps freed
    heap for reuse, and it counts in the process's RSS: ~90 MB after the 60-frame 1024²
    benchmark). Elsewhere than glibc nothing is done."""
    import gc

    gc.collect()
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:  # not glibc after all
        pass
