"""napari reader: a stack (OME-TIFF, TIFF, OME-Zarr, folder of TIFFs) or a results folder.

``napari_get_reader(path)`` returns a reader function, or None for anything
deathtrack cannot read (napari then asks other readers). Stacks open lazily
through :func:`deathtrack.io.open_stack`; a results folder (one with
``run.json``) opens as its stack, label images, tracks and death events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from . import _layers

logger = logging.getLogger(__name__)

__all__ = ["napari_get_reader", "read_path"]

_STACK_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".zarr")
#: files that mark a deathtrack results folder (even one whose run.json is missing)
_RESULT_FILES = ("run.json", "events.csv", "tracks.csv", "labels_cells.tif")


def _single_path(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None  # deathtrack reads one stack or folder at a time
        path = path[0]
    try:
        return Path(path)
    except TypeError:
        return None


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and (
        path.suffix.lower() == ".zarr"
        or (path / ".zattrs").is_file()
        or (path / "zarr.json").is_file()
    )


def _looks_like_stack(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in _STACK_SUFFIXES
    if _is_zarr(path):
        return True
    if path.is_dir():
        if any((path / f).exists() for f in _RESULT_FILES):
            return False  # an unfinished or damaged results folder is not a stack
        return any(p.suffix.lower() in _STACK_SUFFIXES[:-1] for p in path.iterdir())
    return False


def _can_open_stack(path: Path) -> bool:
    from deathtrack.errors import DeathtrackError

    from . import _lazy

    try:
        _lazy.open_movie(path)
    except DeathtrackError as err:
        logger.info("deathtrack cannot read %s: %s", path, err)
        return False
    except Exception as err:  # a reader must never raise for a file it does not know
        logger.info("deathtrack cannot read %s (%s: %s)", path, type(err).__name__, err)
        return False
    return True


def read_path(path: str | Path) -> list[_layers.LayerData]:
    """Layer data of a results folder or a stack (raises if neither can be read)."""
    path = Path(path)
    if _layers.is_results_folder(path):
        return _layers.results_layer_data(path)
    return _layers.stack_layer_data(path)


def napari_get_reader(path) -> Callable | None:
    """Return a reader for a stack or a deathtrack results folder, else None."""
    p = _single_path(path)
    if p is None or not p.exists():
        return None
    if _layers.is_results_folder(p):
        return _read_results
    if _looks_like_stack(p) and _can_open_stack(p):
        return _read_stack
    return None


def _read_results(path) -> list[_layers.LayerData]:
    return _layers.results_layer_data(_single_path(path))


def _read_stack(path) -> list[_layers.LayerData]:
    return _layers.stack_layer_data(_single_path(path))
