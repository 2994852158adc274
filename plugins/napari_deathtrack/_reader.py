"""napari reader: a stack (OME-TIFF, TIFF, OME-Zarr, folder of TIFFs) or a results folder.

``napari_get_reader(path)`` returns a reader function only for what deathtrack
can open: a results folder it recognises (one with a readable ``run.json``, or
that ``run.json`` itself) and a stack whose axes it can tell
(:func:`deathtrack.io.open_stack` opens it). For anything else it returns None,
so napari can ask another reader; when the path looked like ours (a TIFF, a
Zarr, a folder), the reason is logged and, inside napari, shown as a warning,
since napari picked deathtrack for it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from . import _layers

logger = logging.getLogger(__name__)

__all__ = ["napari_get_reader", "read_path", "refusal_reason"]

_STACK_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".zarr")
#: files that mark a deathtrack results folder (even one whose run.json is missing)
_RESULT_FILES = ("run.json", "events.csv", "tracks.csv", "labels_cells.tif")
RUN_JSON = "run.json"


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


def _results_folder(path: Path) -> Path | None:
    """The results folder ``path`` stands for (the folder, or the folder of its run.json)."""
    if path.is_file() and path.name == RUN_JSON and _layers.is_results_folder(path.parent):
        return path.parent
    if _layers.is_results_folder(path):
        return path
    return None


def refusal_reason(path: str | Path) -> str | None:
    """Why deathtrack cannot open ``path`` (None when it can)."""
    from deathtrack.errors import AxesError, DeathtrackError

    from . import _lazy

    path = Path(path)
    if not path.exists():
        return "no such file or folder"
    if _results_folder(path) is not None:
        return None
    if path.name == RUN_JSON:
        return "this run.json is not readable JSON: the run did not finish; re-run the stack"
    if path.is_dir() and not _is_zarr(path):
        if any((path / f).exists() for f in _RESULT_FILES):
            return (
                "a deathtrack results folder without a readable run.json (the run did not "
                "finish): run the stack again into it"
            )
        if not any(p.suffix.lower() in _STACK_SUFFIXES[:-1] for p in path.iterdir()):
            return "neither a results folder (no run.json) nor a folder of TIFF frames"
    elif path.is_file() and path.suffix.lower() not in _STACK_SUFFIXES:
        return f"{path.suffix or 'no suffix'}: not a stack deathtrack reads (TIFF, OME-Zarr)"
    try:
        _lazy.open_movie(path)
    except AxesError as err:
        return (
            f"{err}. In napari: Plugins > deathtrack > Analyze, Load TOML… a config with "
            '[input] axes = "TCYX" (your order), then Browse… the stack'
        )
    except DeathtrackError as err:
        return str(err)
    except Exception as err:  # a reader must never raise for a file it does not know
        return f"{type(err).__name__}: {err}"
    return None


def _tell(path: Path, reason: str) -> None:
    """Log why ``path`` was refused; inside napari, show it as a warning too."""
    message = f"deathtrack cannot open {path.name}: {reason}"
    logger.warning(message)
    if "napari" in sys.modules:  # never import napari here: the reader stays cheap
        try:
            from napari.utils.notifications import show_warning

            show_warning(message)
        except Exception as err:  # pragma: no cover - a notification is only a help
            logger.debug("could not show the notification: %s", err)


def read_path(path: str | Path) -> list[_layers.LayerData]:
    """Layer data of a results folder (or its run.json) or a stack (raises if neither)."""
    path = Path(path)
    folder = _results_folder(path)
    if folder is not None:
        return _layers.results_layer_data(folder)
    return _layers.stack_layer_data(path)


def napari_get_reader(path) -> Callable | None:
    """Return a reader for a stack or a deathtrack results folder, else None."""
    p = _single_path(path)
    if p is None or not p.exists():
        return None
    if _results_folder(p) is not None:
        return _read_results
    reason = refusal_reason(p)
    if reason is None:
        return _read_stack
    _tell(p, reason)
    return None


def _read_results(path) -> list[_layers.LayerData]:
    return _layers.results_layer_data(_results_folder(_single_path(path)))


def _read_stack(path) -> list[_layers.LayerData]:
    return _layers.stack_layer_data(_single_path(path))
