"""Add a results folder's layers to a viewer without blocking it.

Reading the tables, sampling frames for the contrast and building the napari
layer objects (the slow part: tens of thousands of track points, the markers
of every death) happens in a napari ``thread_worker``; the GUI thread then
adds one layer per turn of its event loop, so the viewer keeps drawing and
answering between them. When all are in, an image layer becomes the active
layer (not the ``deaths`` layer, whose rings must not be edited by accident).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import QObject, QTimer, Signal

from . import _layers
from ._workarounds import freeze_long_lived, thaw, warm_text_glyphs

logger = logging.getLogger(__name__)

__all__ = ["ResultsLoader", "make_read_only", "shown_stacks"]


def make_read_only(layer) -> None:
    """Keep a deaths Points layer from being edited in the viewer (no add/select/move mode).

    napari turns ``editable`` back on when a layer's data change; this turns it off again.
    """
    layer.editable = False
    if getattr(layer, "_deathtrack_read_only", False):
        return

    def keep_off(event=None) -> None:
        if layer.editable:
            layer.editable = False

    layer.events.editable.connect(keep_off)
    layer._deathtrack_read_only = True


def _meta(layer) -> dict:
    return (getattr(layer, "metadata", None) or {}).get("deathtrack") or {}


def shown_stacks(viewer) -> set[str]:
    """Resolved paths of the stacks shown as deathtrack image layers."""
    return {
        str(Path(_meta(layer)["stack"]).resolve())
        for layer in viewer.layers
        if _meta(layer).get("kind") == "image" and _meta(layer).get("stack")
    }


def _results_labels(viewer, exclude: str) -> set[str]:
    return {
        _meta(layer).get("label") or ""
        for layer in viewer.layers
        if _meta(layer).get("results") and _meta(layer).get("results") != exclude
    }


def _build_layers(folder: str, include_image: bool, label: str) -> list:
    """Worker thread: the layer objects of a results folder (no Qt here)."""
    from napari.layers import Layer

    layers = [
        Layer.create(data, kwargs, layer_type)
        for data, kwargs, layer_type in _layers.results_layer_data(
            folder, include_image=include_image, label=label
        )
    ]
    for layer in layers:
        _layers.apply_display(layer)
    return layers


class ResultsLoader(QObject):
    """Loads results folders into one viewer, one at a time.

    Signals
    -------
    finished(str)
        The folder whose layers are all in the viewer.
    failed(str)
        A message saying why the folder could not be shown.
    """

    finished = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.worker = None
        self._queue: list = []
        self._folder: str | None = None
        self._on_done: Callable | None = None
        self._finishing = False  # all layers in, the image not made active yet

    @property
    def busy(self) -> bool:
        return self.worker is not None or bool(self._queue) or self._finishing

    def load(self, folder: str | Path, on_done: Callable[[str], None] | None = None) -> bool:
        """Start adding (or replacing) the layers of ``folder``; False if it is not one."""
        from napari.qt.threading import create_worker

        folder = str(Path(folder).resolve())
        run = _layers.read_run_info(folder)
        if run is None:
            self.failed.emit(f"{folder}: not a deathtrack results folder (no readable run.json)")
            return False
        stack = _layers.find_stack(folder, run)
        include_image = stack is None or str(Path(stack).resolve()) not in shown_stacks(self.viewer)
        label = _layers.results_label(folder, _results_labels(self.viewer, folder))
        self._folder, self._on_done = folder, on_done
        self.worker = create_worker(
            _build_layers, folder, include_image, label, _ignore_errors=True
        )
        self.worker.returned.connect(self._on_built)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_worker_finished)
        self.worker.start()
        warm_text_glyphs(self.viewer, _layers.TEXT_CHARS)
        return True

    def _on_worker_finished(self) -> None:
        self.worker = None

    def _on_error(self, err: Exception) -> None:
        self.failed.emit(f"{self._folder}: cannot show the results ({type(err).__name__}: {err})")

    def _on_built(self, layers: list) -> None:
        old = [layer for layer in self.viewer.layers if _meta(layer).get("results") == self._folder]
        self._queue = [("remove", layer) for layer in old] + [("add", layer) for layer in layers]
        QTimer.singleShot(0, self._next)

    def _next(self) -> None:
        if not self._queue:
            return
        action, layer = self._queue.pop(0)
        self._finishing = not self._queue  # busy until _done has made an image active
        if action == "remove":
            if layer in self.viewer.layers:
                thaw()  # the removed layer's reference cycles are collected again
                self.viewer.layers.remove(layer)
        else:
            if _meta(layer).get("kind") == "events":
                make_read_only(layer)
            self.viewer.add_layer(layer)
        if self._queue:
            # a short pause: napari draws the layer just added before the next one comes
            QTimer.singleShot(10, self._next)
        else:
            QTimer.singleShot(0, self._done)

    def _done(self) -> None:
        folder = self._folder
        self.select_image(folder)
        self._finishing = False
        freeze_long_lived()  # the session's objects are in: full GCs skip them
        if self._on_done is not None:
            self._on_done(folder)
        self.finished.emit(folder)

    def select_image(self, folder: str) -> None:
        """Make the stack's cells image the active layer (never the deaths layer)."""
        run = _layers.read_run_info(folder) or {}
        stack = _layers.find_stack(folder, run)
        stack = str(Path(stack).resolve()) if stack else None
        images = [layer for layer in self.viewer.layers if _meta(layer).get("kind") == "image"]
        mine = [layer for layer in images if _meta(layer).get("stack") == stack] or images
        cells = [layer for layer in mine if _meta(layer).get("role") == "cells"] or mine
        if cells:
            self.viewer.layers.selection.active = cells[0]
