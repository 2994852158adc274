"""Open time-lapse stacks lazily, with calibration and channel roles.

Every reader gives a :class:`Movie` whose axes are normalised to
``(T, C, Y, X)`` or ``(T, C, Z, Y, X)`` and which reads one frame at a time:
memory does not grow with the number of frames. Readable:

- OME-TIFF (calibration and channel names from the OME-XML),
- ImageJ hyperstack TIFF (pixel size from the resolution tags and unit,
  frame interval ``finterval``, z step ``spacing``),
- plain multi-page TIFF (pages are frames),
- a folder of single-frame TIFFs (Cell Tracking Challenge ``t000.tif`` ...),
- OME-Zarr (NGFF 0.4 and 0.5; level 0).

Examples
--------
>>> from deathtrack.io import open_stack
>>> with open_stack("sample_data/demo.ome.tif") as movie:  # doctest: +SKIP
...     print(movie.axes, movie.shape, movie.calibration.pixel_size_um)
TCYX (48, 3, 256, 256) 0.65
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .columns import ROLE_CELLS, ROLES
from .config import AXES_RULE, INTERVAL_HARD_S, PIXEL_SIZE_HARD_UM, InputConfig, valid_axes
from .errors import (
    AxesError,
    CalibrationError,
    ChannelRoleError,
    DeathtrackError,
    StackNotFoundError,
    StackReadError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "Movie",
    "atomic_write",
    "ensure_folder",
    "open_input",
    "open_stack",
    "remove_stale_work",
    "results_lock",
    "stack_stem",
    "write_labels",
    "write_ome_tiff",
]

SUPPORTED = "OME-TIFF, ImageJ TIFF, multi-page TIFF, a folder of TIFFs (t000.tif, ...) or OME-Zarr"
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
_LENGTH_UNITS_UM = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}
_TIME_UNITS_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "µs": 1e-6,
    "us": 1e-6,
}
#: plausible calibration: outside these a value is refused unless forced
PIXEL_SIZE_RANGE_UM = (0.01, 50.0)
INTERVAL_RANGE_S = (0.1, 86400.0)

_FLAGS = {
    "pixel_size_um": "--pixel-size UM",
    "interval_s": "--interval S",
    "z_step_um": "--z-step UM",
}


@dataclass(frozen=True)
class Calibration:
    """Physical calibration of a stack; ``None`` where unknown.

    ``source`` says where each known value came from: ``ome``, ``imagej``,
    ``ome-zarr`` or ``override`` (a command-line flag or config value).
    """

    pixel_size_um: float | None = None
    interval_s: float | None = None
    z_step_um: float | None = None
    source: Mapping[str, str] = field(default_factory=dict)
    #: the pixel size along Y when the file gives one (``pixel_size_um`` is along X)
    pixel_size_y_um: float | None = None
    #: why a value the file gives could not be used (e.g. ``PhysicalSizeX='abc'``)
    notes: Mapping[str, str] = field(default_factory=dict)


def stack_stem(path: str | Path) -> str:
    """File name without its stack suffix (.ome.tif, .ome.tiff, .tif, .tiff, .ome.zarr, .zarr)."""
    name = Path(path).name.rstrip("/")
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".btf"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class _BadMetadata(ValueError):
    """A calibration value in a file's metadata that is not a positive number."""


def _positive(value: Any, factor: float) -> float:
    try:
        v = float(value) * factor
    except (TypeError, ValueError, OverflowError):
        raise _BadMetadata(f"{value!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise _BadMetadata(f"{value!r} is not a positive finite number")
    return v


def _length_um(value: Any, unit: str | None) -> float | None:
    """``value`` in ``unit`` as µm; None if absent or of unknown unit; :class:`_BadMetadata`
    if it is not a positive number."""
    if value is None:
        return None
    factor = _LENGTH_UNITS_UM.get(str(unit or "µm").strip().lower().replace("μ", "µ"))
    if factor is None:
        return None
    return _positive(value, factor)


def _time_s(value: Any, unit: str | None) -> float | None:
    """``value`` in ``unit`` as seconds (see :func:`_length_um`)."""
    if value is None:
        return None
    factor = _TIME_UNITS_S.get(str(unit or "s").strip().lower().replace("μ", "µ"))
    if factor is None:
        return None
    return _positive(value, factor)


def _read_cal(cal: dict, notes: dict, key: str, what: str, func, value, unit) -> None:
    """``cal[key] = func(value, unit)``, or a note in ``notes[key]`` saying why not."""
    try:
        cal[key] = func(value, unit)
    except _BadMetadata as err:
        cal[key] = None
        notes[key] = f"{what} = {err}"


# ---------------------------------------------------------------------------
# sources: something with .shape, .dtype, .axes (raw order) and [index] reads


class _FolderSource:
    """A folder of single-frame TIFFs read one file per frame."""

    def __init__(self, path: Path):
        import tifffile

        files = [p for p in path.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES and p.is_file()]
        if not files:
            raise StackReadError(
                f"{path}: folder has no TIFF files; expected one TIFF per frame "
                "(t000.tif, t001.tif, ...)"
            )
        self.files = sorted(files, key=_natural_key)
        shapes = {}
        for f in self.files:
            try:
                with tifffile.TiffFile(f) as tif:
                    s = tif.series[0]
                    shapes[f] = (tuple(s.shape), np.dtype(s.dtype), s.axes)
            except Exception as err:  # tifffile raises many types for broken files
                raise StackReadError(
                    f"{f}: cannot read this frame of folder {path} ({err}); "
                    "re-export it or remove it from the folder"
                ) from None
        first = shapes[self.files[0]]
        for f in self.files[1:]:
            if shapes[f][:2] != first[:2]:
                raise StackReadError(
                    f"{f}: frame has shape {shapes[f][0]} {shapes[f][1]} but "
                    f"{self.files[0].name} has {first[0]} {first[1]}; all frames of a folder "
                    "must have the same shape and type"
                )
        frame_axes = first[2]
        if len(first[0]) == 2:
            frame_axes = "YX"
        self.axes = "T" + frame_axes
        self.shape = (len(self.files), *first[0])
        self.dtype = first[1]

    def __getitem__(self, index):
        import tifffile

        t, rest = index[0], index[1:]
        f = self.files[t]
        try:
            data = tifffile.imread(f)
        except Exception as err:
            raise StackReadError(
                f"{f}: cannot read frame {t} ({err}); the file may be corrupt"
            ) from None
        return data[rest]

    def close(self):
        pass


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


class _TifffileProblems(logging.Handler):
    """Collect what tifffile logs while opening a file (it logs, not raises, broken offsets)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("tifffile").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("tifffile").removeHandler(self)


class _TiffSource:
    def __init__(self, path: Path):
        import tifffile
        import zarr

        problems = _TifffileProblems()
        try:
            with problems:
                self.tif = tifffile.TiffFile(path)
                try:
                    series = self.tif.series[0]
                    n_pages = len(self.tif.pages)
                except BaseException:
                    self.tif.close()  # opened, then found broken: do not leak the handle
                    raise
        except tifffile.TiffFileError as err:
            raise StackReadError(
                f"{path}: not a readable TIFF ({err}); supported: {SUPPORTED}"
            ) from None
        except Exception as err:
            raise StackReadError(
                f"{path}: cannot open: the file looks truncated or corrupt ({err}); "
                "re-export or copy it again"
            ) from None
        size = path.stat().st_size
        last = self.tif.pages[n_pages - 1] if n_pages else None
        ends = [o + b for o, b in zip(last.dataoffsets, last.databytecounts)] if last else []
        # OME-XML that does not parse is the metadata's problem, not the pixels': open_stack
        # refuses it unless the axes and calibration are given
        problems.messages = [m for m in problems.messages if "OME series raised" not in m]
        if problems.messages or (ends and max(ends) > size):
            self.tif.close()
            detail = "; ".join(problems.messages) or f"image data ends past the file's {size} bytes"
            raise StackReadError(
                f"{path}: the file looks truncated or corrupt ({detail}); re-export it or copy "
                "it again"
            )
        try:
            self.axes = series.axes
            self.shape = tuple(series.shape)
            self.dtype = np.dtype(series.dtype)
            self.arr = zarr.open(series.aszarr(), mode="r")
        except Exception as err:
            self.tif.close()
            raise StackReadError(
                f"{path}: cannot read the image data: the file looks truncated or corrupt "
                f"({err}); re-export or copy it again"
            ) from None
        self.path = path
        # frames may be read from several threads; one file handle must not seek under another
        self._lock = threading.RLock()
        self._pages = _plane_pages(series, self.tif)

    def __getitem__(self, index):
        try:
            if self._pages is not None and (planes := self._plane_grid(index)) is not None:
                return self._read_planes(*planes)
            with self._lock:
                return np.asarray(self.arr[index])
        except Exception as err:
            raise StackReadError(
                f"{self.path}: cannot read the data at index {index} ({type(err).__name__}: "
                f"{err}); the file looks truncated or corrupt — re-export or copy it again"
            ) from None

    def _plane_grid(self, index) -> tuple[np.ndarray, tuple, tuple] | None:
        """For an index of integers and whole axes before Y and X (what :class:`Movie`
        asks), the pages to read (in the result's order), the result's leading shape and
        the index within a plane; None for any other index (read through zarr)."""
        if not isinstance(index, tuple) or len(index) != len(self.shape):
            return None
        lead, plane = index[:-2], index[-2:]
        axes, shape = [], []
        for i, n in zip(lead, self.shape[:-2]):
            if isinstance(i, (int, np.integer)) and not isinstance(i, bool) and -n <= i < n:
                axes.append([int(i) % n])
            elif isinstance(i, slice) and i == slice(None):
                axes.append(range(n))
                shape.append(n)
            else:
                return None
        grid = np.ix_(*axes) if axes else ()
        pages = np.ravel_multi_index(grid, self.shape[:-2]).ravel() if axes else np.zeros(1, int)
        return pages, tuple(shape), plane

    def _read_planes(self, pages: np.ndarray, shape: tuple, plane: tuple) -> np.ndarray:
        """Pages read one by one with tifffile: the file handle is locked only to seek and
        read, each page decoded by the calling thread (threads decode in parallel; zarr's
        reads of a TIFF take turns and hand each chunk to its own event-loop thread, which
        waits for Python's lock while other threads are busy)."""
        planes = [
            self._pages[k].asarray(lock=self._lock, maxworkers=1)[plane] for k in pages.tolist()
        ]
        data = np.stack(planes) if len(planes) > 1 else planes[0]
        return data.reshape(shape + planes[0].shape)

    def close(self):
        self.tif.close()


def _plane_pages(series, tif) -> list | None:
    """The pages of ``series`` in order when it is a plain grid of single-channel planes of
    this file (one page per Y, X plane; page k is plane k in C order of the leading axes),
    else None (e.g. RGB samples, an ImageJ file with one page for all its planes, planes
    in other files of a multi-file OME-TIFF, missing pages)."""
    import tifffile

    try:
        shape = tuple(series.shape)
        pages = list(series.pages)
        key = series.keyframe
        if (
            len(shape) < 2
            or tuple(key.shape) != shape[-2:]
            or series.axes[-2:] != "YX"
            or len(pages) != math.prod(shape[:-2])
            or any(p is None or p.parent is not tif for p in pages)
            or np.dtype(key.dtype) != np.dtype(series.dtype)
        ):
            return None
        # a TiffFrame has its key frame's shape; a page has its own
        if any(tuple(p.shape) != shape[-2:] for p in pages if isinstance(p, tifffile.TiffPage)):
            return None
    except Exception:  # tifffile raises many types on odd files: zarr reads those
        return None
    return pages


def _codec_names(node: Any) -> set[str]:
    """Every codec ``id`` (Zarr 2) or ``name`` (Zarr 3) in array metadata, nested ones too."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key in ("id", "name"):
            if isinstance(node.get(key), str):
                out.add(node[key].lower())
        for value in node.values():
            out |= _codec_names(value)
    elif isinstance(node, list):
        for value in node:
            out |= _codec_names(value)
    return out


def _zarr_array_problem(folder: Path) -> str | None:
    """Why deathtrack refuses the Zarr array stored in ``folder``, from its JSON metadata
    alone (before zarr reads anything): values that are Python objects, or a codec that
    unpickles (reading such an array could run code)."""
    import json

    for name in (".zarray", "zarr.json"):
        meta_file = folder / name
        if not meta_file.is_file():
            continue
        try:
            text = meta_file.read_text(encoding="utf-8")
            meta = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            return f"its array metadata {meta_file.name} is not readable JSON ({err})"
        if not isinstance(meta, dict):
            return f"its array metadata {meta_file.name} is not a JSON object"
        if "pickle" in _codec_names({k: v for k, v in meta.items() if k != "attributes"}):
            return (
                "its array uses the 'pickle' codec, which deathtrack never reads (unpickling "
                "can run code)"
            )
        dtype = meta.get("dtype", meta.get("data_type"))
        if isinstance(dtype, str) and ("O" in dtype or dtype in ("object", "string")):
            return f"its array holds Python objects or strings (dtype {dtype!r}), not pixels"
    return None


class _ZarrSource:
    def __init__(self, path: Path):
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
        except Exception as err:
            raise StackReadError(
                f"{path}: not a readable OME-Zarr group ({err}); supported: {SUPPORTED}"
            ) from None
        ome = attrs.get("ome", attrs)
        ms = ome.get("multiscales") if isinstance(ome, dict) else None
        if not ms or not isinstance(ms, list) or not isinstance(ms[0], dict):
            raise StackReadError(
                f"{path}: Zarr group has no OME 'multiscales' metadata; write it as OME-Zarr "
                "(NGFF) or export a TIFF"
            )
        ms = ms[0]
        axes = ms.get("axes")
        if not axes:
            raise AxesError(
                f"{path}: OME-Zarr multiscales has no 'axes'; cannot tell T, C, Z, Y, X apart"
            )
        try:
            names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
            self.units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
            ds = ms["datasets"][0]
            ds_path = str(ds["path"])
            scale = [1.0] * len(names)
            transforms = ms.get("coordinateTransformations", []) + ds.get(
                "coordinateTransformations", []
            )
            for tr in transforms:
                if tr.get("type") == "scale":
                    scale = [a * float(b) for a, b in zip(scale, tr["scale"])]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
            raise StackReadError(
                f"{path}: malformed OME-Zarr 'multiscales' metadata ({type(err).__name__}: "
                f"{err}); re-write it as OME-Zarr (NGFF 0.4 or 0.5) or export a TIFF"
            ) from None
        letters = ""
        for n in names:
            n = n.lower()
            letters += {
                "t": "T",
                "c": "C",
                "z": "Z",
                "y": "Y",
                "x": "X",
                "time": "T",
                "channel": "C",
            }.get(n, "?")
        self.axes = letters
        problem = _zarr_array_problem(path / ds_path)
        if problem is None:
            try:
                self.arr = group[ds_path]
                self.dtype = np.dtype(self.arr.dtype)
            except Exception as err:
                problem = f"its array {ds_path!r} cannot be opened ({type(err).__name__}: {err})"
            else:
                if self.dtype.kind not in "biuf":
                    problem = f"its array holds {self.dtype} values, not pixels"
        if problem is not None:
            raise StackReadError(
                f"{path}: {problem}; write the image as integers or floats (OME-Zarr) or "
                "export a TIFF"
            )
        self.shape = tuple(self.arr.shape)
        self.scale = scale
        omero = ome.get("omero") or attrs.get("omero") or {}
        channels = omero.get("channels", []) if isinstance(omero, dict) else []
        self.channel_names = [c.get("label") if isinstance(c, dict) else None for c in channels]
        self.path = path

    def __getitem__(self, index):
        try:
            return np.asarray(self.arr[index])
        except Exception as err:
            raise StackReadError(f"{self.path}: cannot read chunk {index} ({err})") from None

    def close(self):
        pass


# ---------------------------------------------------------------------------


class Movie:
    """A lazily read stack with axes (T, C, [Z], Y, X), calibration and channel roles.

    Create with :func:`open_stack`. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        source,
        raw_axes: str,
        fmt: str,
        calibration: Calibration,
        channel_names: list[str],
        channels: Mapping[str, int | str] | None,
    ):
        self.path = path
        self.format = fmt
        self._src = source
        self._raw_axes = raw_axes
        raw_shape = dict(zip(raw_axes, source.shape))
        t = raw_shape.get("T", 1)
        c = raw_shape.get("C", 1)
        z = raw_shape.get("Z", 1)
        ny, nx = raw_shape["Y"], raw_shape["X"]
        self.is_3d = z > 1
        self.axes = "TCZYX" if self.is_3d else "TCYX"
        self.shape = (t, c, z, ny, nx) if self.is_3d else (t, c, ny, nx)
        self.dtype = np.dtype(source.dtype)
        self.n_frames = t
        self.n_channels = c
        self.calibration = calibration
        names = list(channel_names or [])
        if len(names) != c or not all(isinstance(n, str) and n for n in names):
            names = [f"channel {i}" for i in range(c)]
        self.channel_names = names
        #: what a run should know about how the stack was read (kept in run.json)
        self.warnings: list[str] = []
        self.roles = self._resolve_roles(channels or {})

    # -- roles ------------------------------------------------------------

    def _channel_list(self, most: int = 8) -> str:
        shown = [f"{i}: {n!r}" for i, n in enumerate(self.channel_names[:most])]
        if self.n_channels > most:
            shown.append(f"... {self.n_channels} in all")
        return ", ".join(shown)

    def _resolve_one(self, role: str, value: int | str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= value < self.n_channels:
                raise ChannelRoleError(
                    f"{self.path}: role {role!r} points at channel {value}, but the stack has "
                    f"{self.n_channels} channel(s) ({self._channel_list()}); use an index from "
                    f"0 to {self.n_channels - 1} or a channel name"
                )
            return int(value)
        matches = [i for i, n in enumerate(self.channel_names) if n.lower() == str(value).lower()]
        if not matches:
            raise ChannelRoleError(
                f"{self.path}: role {role!r} names channel {value!r}, which does not exist; "
                f"channels are {self._channel_list()}"
            )
        if len(matches) > 1:
            raise ChannelRoleError(
                f"{self.path}: role {role!r} names channel {value!r}, which matches channels "
                f"{matches}; give the index instead (--channel {role}=INDEX)"
            )
        return matches[0]

    def _resolve_roles(self, channels: Mapping[str, int | str]) -> dict[str, int]:
        unknown = sorted(set(channels) - set(ROLES))
        if unknown:
            raise ChannelRoleError(
                f"unknown channel role(s) {', '.join(map(repr, unknown))}; "
                f"allowed roles: {', '.join(ROLES)}"
            )
        roles = {role: self._resolve_one(role, v) for role, v in channels.items()}
        by_channel: dict[int, list[str]] = {}
        for role, idx in roles.items():
            by_channel.setdefault(idx, []).append(role)
        for idx, shared in by_channel.items():
            if len(shared) > 1:
                raise ChannelRoleError(
                    f"{self.path}: roles {' and '.join(map(repr, shared))} both point at channel "
                    f"{idx} ({self.channel_names[idx]!r}); a channel has one role: give each "
                    f"role its own channel (channels are {self._channel_list()})"
                )
        for role in ROLES:
            if role in roles:
                continue
            hits = [i for i, n in enumerate(self.channel_names) if n.lower() == role]
            if len(hits) == 1 and hits[0] not in roles.values():
                roles[role] = hits[0]
        if ROLE_CELLS not in roles:
            if self.n_channels == 1:
                roles[ROLE_CELLS] = 0
            else:
                raise ChannelRoleError(
                    f"{self.path}: which channel shows the target cells? The stack has "
                    f"{self.n_channels} channels ({self._channel_list()}) and none is named "
                    "'cells'; pass --channel cells=INDEX|NAME (and immune=, dye= for the others)"
                )
        return {r: roles[r] for r in ROLES if r in roles}

    def channel_index(self, role_or_index: str | int) -> int:
        """Channel index of a role name, a channel name, or an index."""
        if isinstance(role_or_index, str) and role_or_index in self.roles:
            return self.roles[role_or_index]
        if isinstance(role_or_index, str) and role_or_index in ROLES:
            raise ChannelRoleError(
                f"{self.path}: no channel has the role {role_or_index!r}; channels are "
                f"{self._channel_list()}; pass --channel {role_or_index}=INDEX|NAME"
            )
        return self._resolve_one(str(role_or_index), role_or_index)

    # -- reading ----------------------------------------------------------

    def _check_t(self, t: int) -> int:
        if not isinstance(t, (int, np.integer)) or not 0 <= t < self.n_frames:
            raise StackReadError(
                f"{self.path}: frame {t} does not exist; frames are 0 to {self.n_frames - 1}"
            )
        return int(t)

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as an array (C, [Z], Y, X)."""
        t = self._check_t(t)
        index = tuple(t if a == "T" else slice(None) for a in self._raw_axes)
        data = self._src[index]
        rest = [a for a in self._raw_axes if a != "T"]
        for a in "CZ":
            if a not in rest:
                data = data[np.newaxis]
                rest.insert(0, a)
        order = [rest.index(a) for a in "CZYX"]
        data = np.transpose(data, order)
        if not self.is_3d:
            data = data[:, 0]
        return data

    def read(self, role_or_index: str | int, t: int) -> np.ndarray:
        """One channel of frame ``t``: ([Z], Y, X)."""
        c = self.channel_index(role_or_index)
        t = self._check_t(t)
        index = tuple(t if a == "T" else (c if a == "C" else slice(None)) for a in self._raw_axes)
        data = self._src[index]
        rest = [a for a in self._raw_axes if a not in "TC"]
        if "Z" not in rest:
            data = data[np.newaxis]
            rest.insert(0, "Z")
        data = np.transpose(data, [rest.index(a) for a in "ZYX"])
        return data if self.is_3d else data[0]

    def iter_frames(self, role_or_index: str | int | None = None) -> Iterator[np.ndarray]:
        """Yield frames (C, [Z], Y, X), or one channel's ([Z], Y, X), one at a time."""
        for t in range(self.n_frames):
            yield self.frame(t) if role_or_index is None else self.read(role_or_index, t)

    def to_dask(self):
        """A dask array with the normalised axes, one chunk per frame and channel."""
        import dask
        import dask.array as da

        per_channel = self.shape[2:]
        frames = []
        for t in range(self.n_frames):
            chans = [
                da.from_delayed(dask.delayed(self.read)(c, t), shape=per_channel, dtype=self.dtype)
                for c in range(self.n_channels)
            ]
            frames.append(da.stack(chans))
        return da.stack(frames)

    # -- calibration ------------------------------------------------------

    def require_calibration(self, *names: str, reason: str) -> None:
        """Raise :class:`CalibrationError` naming the missing values and the flags to pass."""
        missing = [n for n in names if getattr(self.calibration, n) is None]
        if missing:
            what = ", ".join(missing)
            flags = " and ".join(_FLAGS[n] for n in missing)
            notes = [self.calibration.notes[n] for n in missing if n in self.calibration.notes]
            said = f"the file says {'; '.join(notes)}" if notes else "the file does not say"
            raise CalibrationError(
                f"{self.path}: {what} unknown ({said}) and needed because {reason}; pass {flags}"
            )

    def check_calibration(self, *, force: bool = False) -> list[str]:
        """Refuse implausible calibration and non-square pixels; return warnings.

        The pixel size must lie within :data:`PIXEL_SIZE_RANGE_UM` and the frame
        interval within :data:`INTERVAL_RANGE_S` (such values are nearly always a
        metadata or unit mistake) unless ``force``; even then within the hard
        bounds of :mod:`deathtrack.config`. Pixels must be square (X and Y sizes
        within 1 %); ``--pixel-size`` sets both.

        Raises
        ------
        CalibrationError
            Naming the value, where it came from, the range and what to do.
        """
        cal = self.calibration
        out: list[str] = []
        checks = (
            ("pixel_size_um", "pixel size", "µm", PIXEL_SIZE_RANGE_UM, PIXEL_SIZE_HARD_UM),
            ("interval_s", "frame interval", "s", INTERVAL_RANGE_S, INTERVAL_HARD_S),
        )
        for key, what, unit, (lo, hi), (hard_lo, hard_hi) in checks:
            value = getattr(cal, key)
            if value is None:
                continue
            origin = cal.source.get(key, "")
            where = "given" if origin == "override" else f"from the {origin or 'file'} metadata"
            flag = _FLAGS[key]
            if not hard_lo <= value <= hard_hi:
                raise CalibrationError(
                    f"{self.path}: {what} {value:g} {unit} ({where}) is outside {hard_lo:g}-"
                    f"{hard_hi:g} {unit}, which deathtrack cannot analyse even with "
                    f"--force-calibration; check the metadata's unit, or pass {flag}"
                )
            if not lo <= value <= hi:
                if not force:
                    raise CalibrationError(
                        f"{self.path}: {what} {value:g} {unit} ({where}) is outside the "
                        f"plausible range {lo:g}-{hi:g} {unit} (a unit or metadata mistake?); "
                        f"pass {flag}, or --force-calibration (input.force_calibration = true) "
                        "if the value is right"
                    )
                out.append(
                    f"{what} {value:g} {unit} is outside the plausible range {lo:g}-{hi:g} "
                    f"{unit}; used because of --force-calibration"
                )
        py, px = cal.pixel_size_y_um, cal.pixel_size_um
        if py is not None and px is not None and abs(py - px) > 0.01 * max(px, py):
            raise CalibrationError(
                f"{self.path}: pixels are not square ({py:g} µm along Y, {px:g} µm along X, "
                f"from the {cal.source.get('pixel_size_um') or 'file'} metadata) and deathtrack "
                "measures with one pixel size: resample the stack to square pixels (e.g. Fiji "
                "Image > Scale), or pass --pixel-size UM if the metadata is wrong"
            )
        return out

    def info(self) -> dict:
        """What deathtrack reads from the file (for ``deathtrack info``)."""
        cal = self.calibration
        return {
            "path": str(self.path),
            "format": self.format,
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "n_frames": self.n_frames,
            "calibration": {
                "pixel_size_um": cal.pixel_size_um,
                "pixel_size_y_um": cal.pixel_size_y_um,
                "interval_s": cal.interval_s,
                "z_step_um": cal.z_step_um,
                "source": dict(cal.source),
                "notes": dict(cal.notes),
            },
            "channel_names": list(self.channel_names),
            "roles": dict(self.roles),
            "warnings": list(self.warnings),
        }

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> Movie:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Movie({str(self.path)!r}, axes={self.axes!r}, shape={self.shape})"


# ---------------------------------------------------------------------------
# metadata


class _OmeXmlError(ValueError):
    """OME-XML that does not parse."""


def _ome_metadata(xml: str) -> tuple[dict, list[str], dict[str, str]]:
    """Calibration, channel names and notes (values that could not be used) of OME-XML.

    Raises :class:`_OmeXmlError` when the XML does not parse.
    """
    cal: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    names: list[str] = []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise _OmeXmlError(str(err)) from None
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    pixels = root.find(".//ome:Pixels", ns) if ns else root.find(".//Pixels")
    if pixels is None:
        return cal, names, notes
    a = pixels.attrib
    for key, attr in (
        ("pixel_size_um", "PhysicalSizeX"),
        ("pixel_size_y_um", "PhysicalSizeY"),
        ("z_step_um", "PhysicalSizeZ"),
    ):
        _read_cal(cal, notes, key, attr, _length_um, a.get(attr), a.get(f"{attr}Unit"))
    _read_cal(
        cal, notes, "interval_s", "TimeIncrement", _time_s, a.get("TimeIncrement"),
        a.get("TimeIncrementUnit"),
    )  # fmt: skip
    if cal["interval_s"] is None and "interval_s" not in notes:
        planes = pixels.findall("ome:Plane", ns) if ns else pixels.findall("Plane")
        try:
            times = sorted(
                {
                    float(p.attrib["DeltaT"])
                    for p in planes
                    if "DeltaT" in p.attrib
                    and p.attrib.get("TheC", "0") == "0"
                    and p.attrib.get("TheZ", "0") == "0"
                }
            )
        except ValueError:
            times = []
            notes["interval_s"] = "Plane DeltaT = a value that is not a number"
        if len(times) > 1:
            unit = planes[0].attrib.get("DeltaTUnit")
            _read_cal(
                cal, notes, "interval_s", "Plane DeltaT", _time_s,
                float(np.median(np.diff(times))), unit,
            )  # fmt: skip
    channels = pixels.findall("ome:Channel", ns) if ns else pixels.findall("Channel")
    names = [ch.attrib.get("Name", "") for ch in channels]
    return cal, names, notes


def _imagej_metadata(tif, n_channels: int) -> tuple[dict, list[str], dict[str, str]]:
    meta = tif.imagej_metadata or {}
    cal: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    unit = meta.get("unit")
    page = tif.pages[0]
    if unit not in (None, "", "pixel", "pixels", "inch"):
        for key, tag in (("pixel_size_um", "XResolution"), ("pixel_size_y_um", "YResolution")):
            res = page.tags.get(tag)
            if res is None:
                continue
            num, den = res.value
            if num > 0:
                _read_cal(cal, notes, key, tag, _length_um, den / num, unit)
    if "spacing" in meta and unit not in (None, "", "pixel", "pixels"):
        _read_cal(cal, notes, "z_step_um", "spacing", _length_um, meta["spacing"], unit)
    if meta.get("finterval"):
        _read_cal(
            cal, notes, "interval_s", "finterval", _time_s, meta["finterval"],
            meta.get("tunit", "s"),
        )  # fmt: skip
    names: list[str] = []
    labels = meta.get("Labels")
    if isinstance(labels, (list, tuple)) and labels:
        if len(labels) == n_channels:
            names = list(labels)
        elif len(labels) % max(n_channels, 1) == 0:
            names = list(labels[:n_channels])
    return cal, names, notes


#: frames narrower than this (pixels) are refused: a sign of axes read the wrong way round
MIN_SIDE_PX = 8


def _guess_axes(raw_axes: str) -> str | None:
    """The file's axes as letters of TCZYX (colour samples ``S`` are channels; one unknown
    first axis is time), or None when that does not give valid axes."""
    axes = raw_axes.upper()
    if "S" in axes and "C" not in axes:
        axes = axes.replace("S", "C")
    unknown = [a for a in axes if a not in "TCZYX"]
    if len(unknown) == 1 and axes[0] == unknown[0] and "T" not in axes:
        axes = "T" + axes[1:]
    return axes if valid_axes(axes) else None


def _normalise_axes(raw_axes: str, shape: tuple[int, ...], path: Path, override: str | None) -> str:
    """Map file axes to letters of TCZYX, or raise AxesError saying how to fix it."""
    guess = _guess_axes(raw_axes)
    if override:
        axes = override.upper()
        if len(axes) != len(shape):
            raise AxesError(
                f"{path}: axes {override!r} have {len(axes)} letters but the stored array has "
                f"{len(shape)} dimensions {shape} (file axes {raw_axes!r}); give one letter "
                "per dimension, e.g. --axes TCYX"
            )
        if not valid_axes(axes):
            raise AxesError(f"{path}: axes {override!r} {AXES_RULE} (--axes)")
    elif guess is None:
        raise AxesError(
            f"{path}: cannot tell which axis is which: the file says axes {raw_axes!r} for "
            f"shape {shape}; tell deathtrack with --axes (e.g. --axes TCYX or TZCYX, one letter "
            "per dimension; TYXC for an RGB movie) or set input.axes in the config"
        )
    else:
        axes = guess
        if axes != raw_axes.upper():
            logger.info("%s: file axes %r read as %s", path, raw_axes, axes)
    sizes = dict(zip(axes, shape))
    if min(sizes["Y"], sizes["X"]) < MIN_SIDE_PX:
        samples = "S" in raw_axes.upper()
        hint = (
            f"the file stores colour (RGB) samples in its axis {raw_axes.upper().index('S')} "
            f"(file axes {raw_axes!r}): use --axes {guess}"
            if samples and guess and guess != axes
            else f"check the axes (the file says {raw_axes!r}) and pass --axes"
        )
        raise AxesError(
            f"{path}: axes {axes} make frames of {sizes['Y']} x {sizes['X']} pixels "
            f"(shape {shape}), too small to analyse (at least {MIN_SIDE_PX} pixels a side); "
            f"{hint}"
        )
    return axes


def open_input(path: str | Path, config: InputConfig) -> Movie:
    """:func:`open_stack` with the roles, calibration and axes of an ``[input]`` config."""
    return open_stack(
        path,
        channels=config.channels,
        pixel_size_um=config.pixel_size_um,
        interval_s=config.interval_s,
        z_step_um=config.z_step_um,
        axes=config.axes,
    )


def open_stack(
    path: str | Path,
    *,
    channels: Mapping[str, int | str] | None = None,
    pixel_size_um: float | None = None,
    interval_s: float | None = None,
    z_step_um: float | None = None,
    axes: str | None = None,
) -> Movie:
    """Open a stack lazily.

    Parameters
    ----------
    path
        OME-TIFF, ImageJ TIFF, multi-page TIFF, a folder of single-frame
        TIFFs, or an OME-Zarr folder.
    channels
        Role -> channel index or name (roles: cells, immune, dye, caspase,
        nuclei). Roles not given are taken from channel names equal to the role.
    pixel_size_um, interval_s, z_step_um
        Calibration overrides (win over the file's metadata).
    axes
        Axes of the stored array when the file does not say (e.g. ``"TCYX"``).

    Returns
    -------
    Movie

    Raises
    ------
    StackNotFoundError, StackReadError, AxesError, ChannelRoleError, CalibrationError
        With a message naming the file, what is wrong and what to do.
    """
    path = Path(path)
    for name, value in (
        ("pixel_size_um", pixel_size_um),
        ("interval_s", interval_s),
        ("z_step_um", z_step_um),
    ):
        if value is not None and not (float(value) > 0 and math.isfinite(float(value))):
            raise CalibrationError(
                f"{_FLAGS[name].split()[0]} must be a positive number, got {value}"
            )
    if not path.exists():
        raise StackNotFoundError(f"{path}: no such file or folder")
    meta_cal: dict[str, float | None] = {}
    meta_notes: dict[str, str] = {}
    warnings_: list[str] = []
    names: list[str] = []
    origin = ""
    is_zarr = path.is_dir() and (
        path.suffix.lower() == ".zarr"
        or (path / ".zattrs").exists()
        or (path / "zarr.json").exists()
    )
    if is_zarr:
        src = _ZarrSource(path)
        fmt, origin = "ome-zarr", "ome-zarr"
        names = [n if isinstance(n, str) else "" for n in src.channel_names]
        for letter, unit, sc in zip(src.axes, src.units, src.scale):
            key = {"X": "pixel_size_um", "Y": "pixel_size_y_um", "Z": "z_step_um"}.get(letter)
            if key:
                _read_cal(meta_cal, meta_notes, key, f"{letter} scale", _length_um, sc,
                          unit or "micrometer")  # fmt: skip
            elif letter == "T" and unit:
                _read_cal(meta_cal, meta_notes, "interval_s", "T scale", _time_s, sc, unit)
        raw = src.axes
    elif path.is_dir():
        src = _FolderSource(path)
        fmt = "tiff-folder"
        raw = src.axes
    else:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] not in (b"II", b"MM"):
            raise StackReadError(
                f"{path}: not a TIFF file (it starts with {head!r}); supported: {SUPPORTED}"
            )
        src = _TiffSource(path)
        raw = src.axes
        tif = src.tif
        description = tif.pages[0].description if len(tif.pages) else ""
        try:
            if tif.is_ome and tif.ome_metadata:
                fmt, origin = "ome-tiff", "ome"
                meta_cal, names, meta_notes = _ome_metadata(tif.ome_metadata)
            elif "<OME" in description[:4096]:
                _ome_metadata(description)  # OME-XML that tifffile did not take: cut short?
                fmt = "tiff"
            elif tif.is_imagej:
                fmt, origin = "imagej-tiff", "imagej"
            else:
                fmt = "tiff"
        except _OmeXmlError as err:
            given = axes is not None and pixel_size_um is not None and interval_s is not None
            if not given:
                src.close()
                example = _guess_axes(raw) or "TCYX"
                raise StackReadError(
                    f"{path}: its OME-XML metadata does not parse ({err}): the axes, channels "
                    "and calibration it should give are unknown; re-export the file, or give "
                    f"them all: --axes (one letter per dimension of the stored array, shape "
                    f"{tuple(src.shape)}, e.g. {example}), --pixel-size UM and --interval S"
                ) from None
            fmt = "tiff"
            warnings_.append(
                f"{path.name}: its OME-XML metadata does not parse ({err}); read with "
                f"--axes {axes} and the calibration given"
            )
    try:
        if src.dtype.kind not in "biuf":
            raise StackReadError(
                f"{path}: holds {src.dtype} values; deathtrack reads integer or floating-point "
                "images: re-export the stack as 8/16-bit integers or 32-bit floats"
            )
        norm = _normalise_axes(raw, tuple(src.shape), path, axes)
        n_channels = dict(zip(norm, src.shape)).get("C", 1)
        if fmt == "imagej-tiff":
            meta_cal, names, meta_notes = _imagej_metadata(src.tif, n_channels)
    except DeathtrackError:
        src.close()
        raise
    source: dict[str, str] = {}
    values: dict[str, float | None] = {}
    for key, override in (
        ("pixel_size_um", pixel_size_um),
        ("interval_s", interval_s),
        ("z_step_um", z_step_um),
    ):
        if override is not None:
            values[key], source[key] = float(override), "override"
            meta_notes.pop(key, None)
        elif meta_cal.get(key) is not None:
            values[key], source[key] = float(meta_cal[key]), origin
        else:
            values[key] = None
    # the pixel size along Y: the override sets both; else the file's, if it gives one
    if pixel_size_um is not None:
        values["pixel_size_y_um"] = float(pixel_size_um)
        meta_notes.pop("pixel_size_y_um", None)
    else:
        values["pixel_size_y_um"] = meta_cal.get("pixel_size_y_um")
    notes = {k: f"{v} (in the {fmt} metadata)" for k, v in meta_notes.items()}
    cal = Calibration(source=source, notes=notes, **values)
    try:
        movie = Movie(path, src, norm, fmt, cal, names, channels)
    except DeathtrackError:
        src.close()
        raise
    movie.warnings.extend(warnings_)
    return movie


# ---------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    An interrupted or failed write leaves no half-written file (the temporary
    one is removed) and the previous ``path``, if any, untouched. The file
    gets the usual permissions (0666 minus the umask), not mkstemp's 0600, so
    results on a shared server stay readable by the group.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_write(target) as tmp:
    ...     _ = tmp.write_text("a,b\n1,2\n")
    >>> target.read_text()
    'a,b\n1,2\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_csv(df, path: str | Path) -> Path:
    """Write ``df`` to ``path`` exactly as ``df.to_csv(path, index=False)`` does, twice as
    fast for tables of numbers.

    Python writes a float's shortest round-trip digits (``repr``) ~3x faster than the
    NumPy formatting pandas uses, for the same text; tracks.csv of a large movie is
    ~30 floats a row, tens of thousands of rows. Columns of float64, integers, booleans
    and plain strings are written here, a chunk of rows at a time (the memory pandas
    takes); a table with anything else (other dtypes, strings CSV must quote, a single
    column) is written by pandas.
    """
    path = Path(path)
    cols = list(df.columns)
    if len(cols) < 2 or not all(_plain(c) for c in cols):
        df.to_csv(path, index=False)
        return path
    step = max(1, 100_000 // len(cols))  # rows per chunk, as pandas
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(map(str, cols)) + os.linesep)
        for start in range(0, len(df), step):
            chunk = df.iloc[start : start + step]
            fields = [_csv_fields(chunk.iloc[:, k]) for k in range(len(cols))]
            if any(f is None for f in fields):  # not covered here: pandas writes it all
                fh.seek(0)
                fh.truncate()
                df.to_csv(fh, index=False)
                return path
            fh.write(os.linesep.join(map(",".join, zip(*fields))) + os.linesep)
    return path


def _plain(x) -> bool:
    """A string CSV writes as it is: not empty, no separator, quote or line break."""
    return isinstance(x, str) and bool(x) and not any(c in x for c in ',"\r\n')


def _csv_fields(s) -> list[str] | None:
    """A column's CSV fields as ``DataFrame.to_csv`` writes them (missing values empty),
    or None where :func:`write_csv` leaves the column to pandas."""
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype == np.float64:
        v = s.to_numpy()
        out = list(map(repr, v.tolist()))  # NumPy's str of a float64, ~3x faster
        for i in np.flatnonzero(np.isnan(v)).tolist():
            out[i] = ""
        return out
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return list(map(str, s.to_numpy().tolist()))
    if (isinstance(dtype, np.dtype) and dtype.kind == "O") or isinstance(dtype, pd.StringDtype):
        out = []
        for x in s.tolist():
            if isinstance(x, str):
                if not _plain(x):  # CSV quotes it (an empty string, maybe): pandas writes it
                    return None
                out.append(x)
            elif x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
                out.append("")
            else:
                return None
        return out
    return None


#: the lock file of a results folder, and the file that names its holder
LOCK_FILE = ".deathtrack.lock"
LOCK_HOLDER_FILE = ".deathtrack.lock.json"
#: the prefix of a run's temporary work folder inside a stack's results folder
WORK_PREFIX = ".work-"


def _read_holder(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe_holder(holder: dict) -> str:
    if not holder:
        return "a run that has not said who it is yet"
    what = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("started"):
        what += f", started {holder['started']}"
    if holder.get("command"):
        what += f": {holder['command']}"
    return what


@contextlib.contextmanager
def results_lock(out_dir: str | Path, *, command: str | None = None) -> Iterator[dict]:
    """Hold the lock of the results folder ``out_dir`` for one run.

    One run at a time writes into a results folder (``deathtrack run``, the
    napari plugin): the lock is an OS lock on ``out_dir/.deathtrack.lock``
    (``filelock``), which the operating system releases the moment its holder
    dies, so the lock of a killed run is taken over by the next one. Beside
    it, ``.deathtrack.lock.json`` names the holder (pid, host, start, command)
    for the message another run gets.

    Yields
    ------
    dict
        The holder record written for this run.

    Raises
    ------
    ResultsLockedError
        Another live run holds the lock; the message names it.
    OutputError
        ``out_dir`` cannot be created or written.
    """
    import getpass
    import json
    import socket
    import sys
    from datetime import datetime, timezone

    from filelock import FileLock, Timeout

    from .errors import OutputError, ResultsLockedError

    out = Path(out_dir)
    ensure_folder(out, "results folder")
    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    holder_path = out / LOCK_HOLDER_FILE
    try:
        lock.acquire()
    except Timeout:
        raise ResultsLockedError(
            f"{out}: another deathtrack run is writing into this results folder "
            f"({_describe_holder(_read_holder(holder_path))}); wait until it ends, or use "
            "another --out folder"
        ) from None
    except OSError as err:
        raise OutputError(
            f"{out}: cannot lock the results folder ({err.strerror or err}); choose a folder "
            "you can write to with --out"
        ) from None
    try:
        stale = _read_holder(holder_path)
        if stale:
            logger.info(
                "%s: took over the lock of a run that ended without releasing it (%s)",
                out,
                _describe_holder(stale),
            )
        try:
            user = getpass.getuser()
        except Exception:  # no user name (containers): not worth failing for
            user = "?"
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": user,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        try:
            with atomic_write(holder_path) as tmp:
                tmp.write_text(json.dumps(holder, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            raise OutputError(
                f"{out}: cannot write in the results folder ({err.strerror or err}); choose a "
                "folder you can write to with --out"
            ) from None
        yield holder
    finally:
        try:
            if _read_holder(holder_path).get("pid") == os.getpid():
                holder_path.unlink(missing_ok=True)
        finally:
            lock.release()


def ensure_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) or raise :class:`OutputError` saying why
    not (a file is in the way, a read-only file system, no permission)."""
    from .errors import OutputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{path}: the {what} is a file, not a folder; give a folder (it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"{path}: cannot create the {what} ({err.strerror or err}); choose a folder you can "
            "write to"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"{path}: the {what} is not writable (no permission or a read-only file system); "
            "choose a folder you can write to"
        )
    return path


def remove_stale_work(folder: str | Path) -> list[Path]:
    """Remove what runs killed in ``folder`` left behind: ``.work-*`` folders and the
    temporary files of half-done writes (``.NAME.*.tmp``).

    Only call it while holding :func:`results_lock` of the results folder: then no
    other run is using them. Returns what was removed.
    """
    import shutil

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(WORK_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        elif p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _pages(
    frames: np.ndarray | Iterable[np.ndarray], shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Yield (Y, X) pages in storage order from frames of shape ``shape[1:]``."""
    per_frame = shape[1:]
    for t, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.shape != tuple(per_frame):
            raise ValueError(f"frame {t} has shape {frame.shape}, expected {tuple(per_frame)}")
        yield from frame.reshape(-1, *per_frame[-2:])


def write_ome_tiff(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
    channel_names: list[str],
    pixel_size_um: float,
    interval_s: float,
    z_step_um: float | None = None,
    compression: str | None = "zlib",
    uuid: str | None = None,
) -> Path:
    """Write a (T, C, [Z], Y, X) movie as OME-TIFF, streaming one frame at a time.

    Parameters
    ----------
    frames
        An array (T, C, [Z], Y, X), or an iterable of (C, [Z], Y, X) frames
        (then ``shape`` and ``dtype`` are required).
    channel_names, pixel_size_um, interval_s, z_step_um
        Written as OME metadata, read back by :func:`open_stack`.
    compression
        ``"zlib"`` (default, lossless), another tifffile codec, or ``None``.
    uuid
        The OME UUID; by default a new random one. Give a fixed one (e.g.
        derived from a simulation's parameters) for byte-identical files.

    The file is written to a temporary name and renamed when complete, so an
    interrupted write never leaves a partial file under ``path``.
    """
    import tifffile

    if isinstance(frames, np.ndarray):
        shape = frames.shape if shape is None else shape
        dtype = frames.dtype if dtype is None else dtype
    if shape is None or dtype is None:
        raise ValueError("`shape` and `dtype` are needed when `frames` is an iterable")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (4, 5):
        raise ValueError(f"`shape` must be (T, C, Y, X) or (T, C, Z, Y, X), got {shape}")
    axes = "TCYX" if len(shape) == 4 else "TCZYX"
    if len(channel_names) != shape[1]:
        raise ValueError(f"{len(channel_names)} channel names for {shape[1]} channels")
    dtype = np.dtype(dtype)
    meta: dict[str, Any] = {
        "axes": axes,
        "PhysicalSizeX": pixel_size_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": pixel_size_um,
        "PhysicalSizeYUnit": "µm",
        "TimeIncrement": interval_s,
        "TimeIncrementUnit": "s",
        "Channel": {"Name": list(channel_names)},
    }
    if z_step_um is not None:
        meta.update(PhysicalSizeZ=z_step_um, PhysicalSizeZUnit="µm")
    if uuid is not None:
        meta.update(UUID=f"urn:uuid:{uuid}", Creator="deathtrack")
    final = Path(path)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    with (
        atomic_write(final) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=nbytes > 2**31, ome=True) as tw,
    ):
        tw.write(
            _pages(frames, shape),
            shape=shape,
            dtype=dtype,
            metadata=meta,
            photometric="minisblack",
            compression=compression,
            predictor=bool(compression) and dtype.kind in "ui",
        )
    return final


def label_dtype(max_label: int) -> np.dtype:
    """The dtype of a label stack whose values go up to ``max_label``: uint16 when they
    fit (as Fiji, napari and the Cell Tracking Challenge store labels; half the bytes of
    int32 to compress and to store), int32 beyond 65535."""
    return np.dtype(np.uint16 if int(max_label) <= np.iinfo(np.uint16).max else np.int32)


def write_labels(
    path: str | Path,
    labels: np.ndarray | Iterable[np.ndarray],
    *,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
) -> Path:
    """Write a (T, Y, X) label stack, or a (T, Z, Y, X) one of a 3D movie, as a
    zlib-compressed TIFF, atomically.

    ``labels`` is an array or an iterable of (Y, X) or (Z, Y, X) frames (then give
    ``shape`` and ``dtype``); frames are streamed, not stacked in memory.
    """
    import tifffile

    if isinstance(labels, np.ndarray):
        shape = labels.shape if shape is None else shape
        dtype = labels.dtype if dtype is None else dtype
    if shape is None or dtype is None:
        raise ValueError("`shape` and `dtype` are needed when `labels` is an iterable")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"`shape` must be (T, Y, X) or (T, Z, Y, X), got {shape}")
    dtype = np.dtype(dtype)
    final = Path(path)

    def pages():
        for t, lab in enumerate(labels):
            lab = np.asarray(lab)
            if lab.shape != shape[1:]:
                raise ValueError(f"label frame {t} has shape {lab.shape}, expected {shape[1:]}")
            yield from lab.astype(dtype, copy=False).reshape(-1, *shape[-2:])

    big = int(np.prod(shape)) * dtype.itemsize > 2**31
    with atomic_write(final) as tmp, tifffile.TiffWriter(tmp, bigtiff=big) as tw:
        tw.write(
            pages(),
            shape=shape,
            dtype=dtype,
            metadata={"axes": "TYX" if len(shape) == 3 else "TZYX"},
            photometric="minisblack",
            compression="zlib",
            # no horizontal differencing: label images are flat runs of one value, which
            # deflate packs better as they are (13 % smaller files, a little faster)
            predictor=False,
        )
    return final
