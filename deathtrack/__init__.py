"""deathtrack: find, classify and contextualise cell deaths in live-cell movies.

The engine never imports napari, Qt or magicgui; the napari plugin lives in
``plugins/napari_deathtrack``. Submodules are imported on first use so that
``import deathtrack`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_SUBMODULES = {
    "columns",
    "config",
    "errors",
    "io",
    "measure",
    "motility",
    "simulate",
}

__all__ = ["__version__", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
