"""Work around napari 0.9 (and CPython) behaviour that blocks the GUI thread for nothing.

After ``viewer.open`` (any file, any reader) napari 0.9.2 leaves its
*in progress…* GIF in the status bar spinning: the bar's ``destroyed`` handler
still counts the closing progress bar as visible. With nothing in progress the
GIF repaints the status bar 24 times a second, and each repaint composes the
whole window with the OpenGL canvas: about 25 ms of GUI thread each on a
software-OpenGL machine, more than half of its time, which every key press of
the review then waits behind. While a deathtrack panel is open, the indicator
is checked again once napari's progress bars are gone. Private napari
attributes are used defensively: when they change, nothing is done.
"""

from __future__ import annotations

import logging
import weakref

from qtpy.QtCore import QTimer

logger = logging.getLogger(__name__)

__all__ = ["freeze_long_lived", "thaw", "warm_text_glyphs", "watch_activity_indicator"]

_watched: weakref.WeakSet = weakref.WeakSet()


def _hide_stale_indicator(viewer_ref) -> None:
    viewer = viewer_ref()
    if viewer is None:
        return
    try:
        from napari.utils import progress

        if len(progress._all_instances):
            return  # something is in progress: the indicator is right
        dialog = viewer.window._qt_window._activity_dialog
        dialog.maybe_hide_progress_indicator()
    except Exception as err:  # pragma: no cover - napari internals changed: leave it
        logger.debug("activity indicator check skipped: %s", err)


def watch_activity_indicator(viewer) -> None:
    """Stop napari's *in progress…* GIF of ``viewer`` when nothing is in progress."""
    if viewer in _watched:
        return
    try:
        from napari.utils import progress

        instances = progress._all_instances
    except Exception:  # pragma: no cover
        return
    _watched.add(viewer)
    viewer_ref = weakref.ref(viewer)

    def on_change(event=None) -> None:
        # after napari's own handler has closed the bar and Qt has deleted it
        QTimer.singleShot(200, lambda: _hide_stale_indicator(viewer_ref))

    instances.events.changed.connect(on_change)
    on_change()


def warm_text_glyphs(viewer, text: str) -> None:
    """Make the canvas font's glyphs of ``text`` ahead of time, one per event-loop turn.

    napari renders each new character of canvas text once per viewer (a signed distance
    field at 256 pt: about 7 ms a glyph). The deaths layer's text needs some 30 of them,
    which would all be made in the first paint after the layer is added (a block of a
    quarter of a second); made one at a time while the layers are read, they cost
    nothing noticeable. Private napari attributes: when they change, nothing is done.
    """
    try:
        info = viewer.window._qt_viewer.canvas._font_info
        font = info.font_manager.get_font(info.face)
        todo = [c for c in dict.fromkeys(text) if c not in font._glyphs]
    except Exception as err:  # pragma: no cover - napari internals changed: leave it
        logger.debug("glyph warm-up skipped: %s", err)
        return

    def next_glyph() -> None:
        while todo:
            char = todo.pop(0)
            if char not in font._glyphs:
                try:
                    font[char]
                except Exception:  # pragma: no cover
                    return
                QTimer.singleShot(0, next_glyph)
                return

    QTimer.singleShot(0, next_glyph)


def freeze_long_lived() -> None:
    """Exempt the objects alive now from Python's full garbage collections (``gc.freeze``).

    A napari session with a results folder holds some 400 000 objects tracked by the
    garbage collector; every full collection walks all of them, about 200 ms on the
    GUI thread, and allocations (a key press, a crop) set one off every few seconds of
    review. Once a results folder is in, its objects, napari's and Qt's live for the
    session: frozen, they are no longer walked, and the collections of the review take
    ~10 ms. Frozen objects are still freed by reference counting; only reference
    cycles among them wait, until :func:`thaw` (called when a deathtrack layer is
    removed, so removed layers are collected as before).
    """
    import gc

    gc.freeze()


def thaw() -> None:
    """Give frozen objects back to the garbage collector (see :func:`freeze_long_lived`)."""
    import gc

    if gc.get_freeze_count():
        gc.unfreeze()
