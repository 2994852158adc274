"""How deathtrack's own processes hand memory back to the system (Linux, glibc).

glibc's ``malloc`` keeps freed memory for reuse, and it counts in a process's resident
size. Blocks of 128 KiB or more are mapped apart and unmapped when freed, but glibc raises
that threshold to the size of every mapped block freed since, up to 32 MiB: after the
first frame, a frame's 1-16 MiB arrays all come from the heap and stay there. With the
threshold fixed at :data:`MMAP_THRESHOLD`, each is given back as soon as it is freed:
the 1024² x 60-frame benchmark's process tree peaked ~165 MB lower (1051 -> 885 MB).

Only processes deathtrack starts itself are set so (the command line's, its helper
processes): a library call in someone else's process (a notebook, napari) leaves their
allocator, and their imports, alone.
Elsewhere than glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: blocks of at least this many bytes (a 1024² frame of bytes) are mapped apart
MMAP_THRESHOLD = 1 << 20

#: the same setting for a process not started yet (glibc reads it at start-up)
HELPER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}

_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)

_OWN_PROCESS = False


def claim_process() -> None:
    """Mark this process as deathtrack's own (the command line's): large blocks are
    handed back at once (:func:`return_large_blocks`) and trackpy is imported without
    the optional modules it would load (:func:`deathtrack.track.import_trackpy`)."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    return_large_blocks()


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


def return_large_blocks() -> bool:
    """Fix glibc's threshold for mapping blocks apart at :data:`MMAP_THRESHOLD` in this
    process (see the module's text); whether it was set."""
    libc = _libc()
    try:
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except AttributeError:  # not glibc after all
        return False


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
