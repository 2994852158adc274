"""Lazy arrays over stacks and label images: one frame is read when napari shows it.

Layers hold :class:`FrameArray` objects: arrays (T, [Z], Y, X) that read one
frame when indexed. A frame is read from a file handle kept in a small
registry of open files (keyed by path and modification time), so a frame read
costs one page read, not a re-parse of the file, and the arrays themselves
hold only a path. (Not dask arrays: napari reads one frame per frame change,
and dask's task graph and thread pool cost milliseconds per frame and channel
on the GUI thread, more when the machine is busy and the pool's thread waits
for a core; a frame from the cache here costs microseconds.) Evicted or closed
handles are re-opened on the next read; :func:`close_all` closes everything
(it also runs at exit, so no file is left to the garbage collector).

Frames read once stay in a small cache (:data:`CACHE_BYTES`), shared by the
layers and the review panel's crops. :func:`prefetch` reads frames into it in
a background thread, so that the frames of the next and previous deaths are
in memory before the viewer jumps to them and the GUI thread does not wait
for the disk.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "FrameArray",
    "OpenMovie",
    "channel_array",
    "close_all",
    "label_array",
    "open_movie",
    "prefetch",
    "read_frame",
]

#: how many files stay open at once; older ones are closed and re-opened when needed
MAX_OPEN = 8
#: bytes of decoded frames kept in memory (least recently used first out)
CACHE_BYTES = 384 * 2**20

_lock = threading.RLock()
_open: OrderedDict[tuple, _Entry] = OrderedDict()


@dataclass
class _Entry:
    obj: Any
    closed: bool = False
    # one read at a time per file: file handles are not shared between threads
    read_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.read_lock:
            self.closed = True
            self.obj.close()


class _FrameCache:
    """Decoded frames by (file key, channel, frame), least recently used evicted first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._frames: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            frame = self._frames.get(key)
            if frame is None:
                self.misses += 1
                return None
            self._frames.move_to_end(key)
            self.hits += 1
            return frame

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._frames

    def put(self, key: tuple, frame: np.ndarray) -> None:
        if frame.nbytes > self.max_bytes:
            return
        frame.flags.writeable = False  # shared by every reader: nobody may change it
        with self._lock:
            old = self._frames.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._frames[key] = frame
            self._bytes += frame.nbytes
            while self._bytes > self.max_bytes and self._frames:
                _, dropped = self._frames.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._bytes = 0


_cache = _FrameCache(CACHE_BYTES)


@dataclass(frozen=True)
class OpenMovie:
    """A :class:`deathtrack.io.Movie` from the registry, and whether its roles are known.

    ``roles_known`` is False when the file does not say which channel shows the
    target cells (multi-channel, no channel named ``cells``): the data can be
    shown, but layers are named by channel name and the user picks the roles.
    """

    movie: Any
    roles_known: bool


def _key(kind: str, path: str | Path, extra: tuple = ()) -> tuple:
    p = Path(path).expanduser().resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        mtime = None
    return (kind, str(p), mtime, extra)


def _get(key: tuple, opener: Callable[[], Any]) -> _Entry:
    with _lock:
        entry = _open.get(key)
        if entry is not None and not entry.closed:
            _open.move_to_end(key)
            return entry
        entry = _Entry(opener())
        _open[key] = entry
        while len(_open) > MAX_OPEN:
            _, old = _open.popitem(last=False)
            old.close()
        return entry


def close_all() -> None:
    """Close every file the lazy layers opened (they re-open on the next read).

    Cached frames are dropped too.
    """
    with _lock:
        while _open:
            _, entry = _open.popitem()
            entry.close()
    _cache.clear()


atexit.register(close_all)


class _MovieHandle:
    """A Movie and whether its roles were resolved from the file (see :class:`OpenMovie`)."""

    def __init__(self, movie, roles_known: bool):
        self.movie = movie
        self.roles_known = roles_known

    def close(self) -> None:
        self.movie.close()


def _open_movie_handle(path: str, axes: str | None) -> _MovieHandle:
    from deathtrack.errors import ChannelRoleError
    from deathtrack.io import open_stack

    try:
        return _MovieHandle(open_stack(path, axes=axes), True)
    except ChannelRoleError:
        # the data is readable, only the 'cells' role is unknown: open it to show it
        return _MovieHandle(open_stack(path, axes=axes, channels={"cells": 0}), False)


def open_movie(path: str | Path, *, axes: str | None = None) -> OpenMovie:
    """The registry's open Movie for ``path`` (opened on first use).

    Raises the :mod:`deathtrack.errors` of :func:`deathtrack.io.open_stack` when the
    file cannot be read. Do not close the returned movie: the registry owns it.
    """
    entry = _get(_key("movie", path, (axes,)), lambda: _open_movie_handle(str(path), axes))
    return OpenMovie(entry.obj.movie, entry.obj.roles_known)


def _read_with_retry(key: tuple, opener: Callable[[], Any], read: Callable[[Any], np.ndarray]):
    """Read from a registry handle; if another thread closed it meanwhile, re-open once."""
    for _attempt in (0, 1):
        entry = _get(key, opener)
        with entry.read_lock:
            if not entry.closed:
                return read(entry.obj)
    raise RuntimeError(f"{key[1]}: the file was closed while reading")  # pragma: no cover


def read_frame(path: str | Path, channel: int, t: int, *, axes: str | None = None) -> np.ndarray:
    """Frame ``t`` of one channel of a stack, (Y, X) or (Z, Y, X), from the frame cache.

    The returned array is shared and read-only. Raises what
    :func:`deathtrack.io.open_stack` raises for a file it cannot read.
    """
    key = _key("movie", path, (axes,))
    frame_key = (key, int(channel), int(t))
    frame = _cache.get(frame_key)
    if frame is None:
        path = str(path)
        frame = np.asarray(
            _read_with_retry(
                key,
                lambda: _open_movie_handle(path, axes),
                lambda h: h.movie.read(int(channel), int(t)),
            )
        )
        if not frame.flags.owndata:
            frame = frame.copy()
        _cache.put(frame_key, frame)
    return frame


def is_cached(path: str | Path, channel: int, t: int, *, axes: str | None = None) -> bool:
    """Whether frame ``t`` of ``channel`` is in the frame cache."""
    return (_key("movie", path, (axes,)), int(channel), int(t)) in _cache


_prefetch_pool = None
_prefetch_generation = 0


def prefetch(
    path: str | Path,
    frames: Iterable[tuple[int, int]],
    *,
    axes: str | None = None,
) -> None:
    """Read ``(channel, frame)`` pairs into the frame cache in a background thread.

    A newer call supersedes an older one: frames of the older request not read
    yet are skipped (the reviewer has moved on). Errors are logged, not raised.
    """
    global _prefetch_pool, _prefetch_generation
    from concurrent.futures import ThreadPoolExecutor

    with _lock:
        if _prefetch_pool is None:
            _prefetch_pool = ThreadPoolExecutor(1, thread_name_prefix="deathtrack-prefetch")
        _prefetch_generation += 1
        generation = _prefetch_generation
    wanted = [(int(c), int(t)) for c, t in frames]

    def job():
        for c, t in wanted:
            if generation != _prefetch_generation:
                return
            try:
                read_frame(path, c, t, axes=axes)
            except Exception as err:  # a help only: the viewer reads it again if needed
                logger.debug("prefetch of %s channel %d frame %d failed: %s", path, c, t, err)
                return

    _prefetch_pool.submit(job)


class FrameArray:
    """A read-only array (T, ...) whose frames are read when indexed, one at a time.

    What napari needs of layer data (``shape``, ``dtype``, ``ndim``, ``size``,
    indexing, ``numpy.asarray``): ``array[t]`` reads frame ``t`` (through the frame
    cache) and ``array[t, y0:y1, x0:x1]`` a part of it; a range of frames is read
    frame by frame and stacked.

    Parameters
    ----------
    read
        ``read(t)`` -> frame ``t`` as a numpy array of ``frame_shape`` and ``dtype``.
    n_frames, frame_shape, dtype
        The shape (``(n_frames, *frame_shape)``) and type of the whole array.
    name
        What the array shows (in its repr).
    """

    def __init__(
        self,
        read: Callable[[int], np.ndarray],
        *,
        n_frames: int,
        frame_shape: tuple[int, ...],
        dtype: Any,
        name: str = "",
    ):
        self._read = read
        self.shape = (int(n_frames), *(int(s) for s in frame_shape))
        self.dtype = np.dtype(dtype)
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"FrameArray({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` (negative counts from the end)."""
        n = self.shape[0]
        t = int(t)
        if t < 0:
            t += n
        if not 0 <= t < n:
            raise IndexError(f"frame {t} out of range for {n} frames")
        frame = np.asarray(self._read(t))
        if frame.dtype != self.dtype:
            frame = frame.astype(self.dtype)
        return frame

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1 :]
        if not key:
            key = (slice(None),)
        t, rest = key[0], key[1:]
        if isinstance(t, (int, np.integer)):
            frame = self.frame(int(t))
            return frame[rest] if rest else frame
        if isinstance(t, slice):
            frames = range(self.shape[0])[t]
        else:  # a list or array of frame numbers (or booleans)
            t = np.asarray(t)
            frames = np.flatnonzero(t) if t.dtype == bool else t.ravel()
        if len(frames):
            stack = np.stack([self.frame(int(f)) for f in frames])
        else:
            stack = np.empty((0, *self.shape[1:]), self.dtype)
        return stack[(slice(None), *rest)] if rest else stack

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype)


def channel_array(
    path: str | Path,
    channel: int,
    *,
    n_frames: int,
    frame_shape: tuple[int, ...],
    dtype: Any,
    axes: str | None = None,
) -> FrameArray:
    """Lazy array (T, [Z], Y, X) of one channel; a frame is read when napari shows it."""
    path = str(path)

    def read(t: int) -> np.ndarray:
        return read_frame(path, channel, t, axes=axes)

    return FrameArray(
        read,
        n_frames=n_frames,
        frame_shape=tuple(frame_shape),
        dtype=dtype,
        name=f"{Path(path).name} channel {channel}",
    )


class _LabelFile:
    def __init__(self, path: str):
        import tifffile

        self.tif = tifffile.TiffFile(path)
        series = self.tif.series[0]
        self.shape = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)
        # a (T, Z, Y, X) stack of a 3D run: Z pages per frame
        self.n_z = self.shape[1] if len(self.shape) == 4 else 1

    def frame(self, t: int) -> np.ndarray:
        if self.n_z == 1:
            return self.tif.pages[t].asarray()
        first = t * self.n_z
        return np.stack([self.tif.pages[first + k].asarray() for k in range(self.n_z)])

    def close(self) -> None:
        self.tif.close()


def label_array(path: str | Path, *, max_label: int | None = None) -> FrameArray | None:
    """Lazy array (T, Y, X), or (T, Z, Y, X) for a 3D run, of a label TIFF written by
    deathtrack; a frame read when indexed.

    ``max_label``: the largest label in the file, when known (the largest track_id):
    labels up to 65535 are served as uint16, which napari draws with a small colour
    table instead of a hashed one (adding the layer is three times faster).
    Returns None when the file is not a (T, Y, X) or (T, Z, Y, X) label stack.
    """
    key = _key("labels", path)
    path = str(path)

    def opener():
        return _LabelFile(path)

    info = _get(key, opener).obj
    if len(info.shape) == 2:
        shape = (1, *info.shape)
    elif len(info.shape) in (3, 4):
        shape = info.shape
    else:
        return None
    if len(info.tif.pages) != shape[0] * info.n_z:
        return None
    dtype = info.dtype
    if max_label is not None and 0 <= max_label < 2**16 and dtype.itemsize > 2:
        dtype = np.dtype(np.uint16)

    def read(t: int) -> np.ndarray:
        frame = _cache.get((key, 0, t))
        if frame is None:
            frame = _read_with_retry(key, opener, lambda f: f.frame(t))
            if frame.dtype != dtype:
                frame = frame.astype(dtype)
            _cache.put((key, 0, t), frame)
        return frame

    return FrameArray(
        read, n_frames=shape[0], frame_shape=tuple(shape[1:]), dtype=dtype, name=Path(path).name
    )


def sample_frames(n_frames: int, k: int = 5) -> list[int]:
    """Up to ``k`` evenly spaced frame indices (first and last included)."""
    if n_frames <= 0:
        return []
    return sorted({int(round(t)) for t in np.linspace(0, n_frames - 1, min(k, n_frames))})


def contrast_limits(read: Callable[[int], np.ndarray], n_frames: int) -> tuple[float, float]:
    """Robust display range (0.5 and 99.8 percentiles) from a few sampled frames."""
    samples = []
    for t in sample_frames(n_frames):
        a = np.asarray(read(t))
        step = max(1, int(np.sqrt(a.size / 250_000)))  # about 250 000 pixels per frame
        samples.append(a[..., ::step, ::step].ravel())
    if not samples:
        return (0.0, 1.0)
    values = np.concatenate(samples).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(values, [0.5, 99.8])
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def mapping_or_empty(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}
