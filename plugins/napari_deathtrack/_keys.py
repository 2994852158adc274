"""Review keys as napari actions: bound at the viewer level, listed in napari's shortcuts.

Each key of the review (A/N/X/U labels, clear, next/previous, undo/redo) is a
napari action registered with ``action_manager`` on the viewer's keymap, so it
shows under *File > Preferences > Shortcuts* (group *Viewer key bindings*),
can be changed there, and works whatever widget has the keyboard focus: the
canvas, the layer list (it passes keys up to the viewer), the crop strip or
the events table (both leave the keys to the viewer).

napari asks the *active layer's* keymap first, and layers bind some of these
keys themselves (Points: A selects all points, Delete removes them; Image and
Labels: X). So the same keys are also bound on every deathtrack layer while a
review panel is open (:func:`bind_layer`), and the ``deaths`` layer's own
selection and deletion keys are blocked: a key press never selects or deletes
a ring. Layers that are not deathtrack's keep their own keys.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from napari.components import ViewerModel
from napari.utils.action_manager import action_manager

__all__ = ["REVIEW_KEYS", "ReviewKey", "bind_layer", "register_actions", "unbind_layer"]


@dataclass(frozen=True)
class ReviewKey:
    """One review action: its napari action name, help text, default keys, what it does."""

    name: str
    description: str
    keys: tuple[str, ...]
    method: str
    args: tuple = ()


REVIEW_KEYS = (
    ReviewKey("deathtrack:label_apoptotic", "deathtrack review: label the death apoptotic",
              ("A",), "label_current", ("apoptotic",)),
    ReviewKey("deathtrack:label_necroptotic", "deathtrack review: label the death necroptotic",
              ("N",), "label_current", ("necroptotic",)),
    ReviewKey("deathtrack:label_not_death", "deathtrack review: not a death",
              ("X",), "label_current", ("not_death",)),
    ReviewKey("deathtrack:label_uncertain", "deathtrack review: label the death uncertain",
              ("U",), "label_current", ("uncertain",)),
    ReviewKey("deathtrack:clear_label", "deathtrack review: clear the label (automatic call)",
              ("Backspace", "Delete"), "clear_current"),
    ReviewKey("deathtrack:next_event", "deathtrack review: next death",
              ("J", "."), "step", (1,)),
    ReviewKey("deathtrack:previous_event", "deathtrack review: previous death",
              ("K", ","), "step", (-1,)),
    ReviewKey("deathtrack:undo_label", "deathtrack review: undo the last label",
              ("Ctrl-Z",), "undo"),
    ReviewKey("deathtrack:redo_label", "deathtrack review: redo the label",
              ("Ctrl-Shift-Z",), "redo"),
)  # fmt: skip

#: keys of the deaths Points layer that would select or delete rings: blocked
BLOCKED_ON_DEATHS = ("Shift-A", "Ctrl-A", "1", "2", "3", "P", "S")

#: viewer -> its review panel (the actions act on it)
_panels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_registered = False


def set_panel(viewer, panel) -> None:
    """Make ``panel`` the review panel the keys of ``viewer`` act on (None: none)."""
    if panel is None:
        _panels.pop(viewer, None)
    else:
        _panels[viewer] = weakref.ref(panel)


def panel_of(viewer):
    """The review panel of ``viewer``, or None."""
    ref = _panels.get(viewer)
    return ref() if ref is not None else None


def _run(viewer, key: ReviewKey) -> None:
    panel = panel_of(viewer)
    if panel is not None:
        getattr(panel, key.method)(*key.args)


def _command(key: ReviewKey) -> Callable:
    def command(viewer: ViewerModel) -> None:
        _run(viewer, key)

    command.__name__ = command.__qualname__ = "deathtrack_" + key.name.split(":")[1]
    command.__doc__ = key.description
    return command


def shortcuts(key: ReviewKey) -> tuple[str, ...]:
    """The keys of an action: the user's from napari's settings, else the defaults."""
    try:
        from napari.settings import get_settings

        user = get_settings().shortcuts.shortcuts.get(key.name)
    except Exception:  # pragma: no cover - settings unreadable: defaults
        user = None
    return tuple(str(k) for k in user) if user else key.keys


def register_actions() -> None:
    """Register the review actions with napari (once per process) and bind their keys."""
    global _registered
    if _registered:
        return
    for key in REVIEW_KEYS:
        action_manager.register_action(key.name, _command(key), key.description, ViewerModel)
        for shortcut in shortcuts(key):
            action_manager.bind_shortcut(key.name, shortcut)
    _registered = True


def _layer_function(viewer, key: ReviewKey) -> Callable:
    viewer_ref = weakref.ref(viewer)

    def on_layer(layer) -> None:
        v = viewer_ref()
        if v is not None:
            _run(v, key)

    on_layer.__name__ = on_layer.__qualname__ = "deathtrack_" + key.name.split(":")[1]
    return on_layer


def deathtrack_blocked_on_deaths(layer) -> None:
    """Nothing: the deaths layer is read-only (its rings are not selected or deleted)."""
    # a named no-op, not napari's Ellipsis blocker: napari reads __name__ of every binding


def bind_layer(viewer, layer) -> None:
    """Bind the review keys on a deathtrack layer (its keymap wins over its class's)."""
    for key in REVIEW_KEYS:
        for shortcut in shortcuts(key):
            layer.bind_key(shortcut, _layer_function(viewer, key), overwrite=True)
    meta = (getattr(layer, "metadata", None) or {}).get("deathtrack") or {}
    if meta.get("kind") == "events":
        for shortcut in BLOCKED_ON_DEATHS:
            layer.bind_key(shortcut, deathtrack_blocked_on_deaths, overwrite=True)


def unbind_layer(layer) -> None:
    """Remove what :func:`bind_layer` bound (the layer's own keys come back)."""
    for key in REVIEW_KEYS:
        for shortcut in shortcuts(key):
            layer.bind_key(shortcut, None)
    for shortcut in BLOCKED_ON_DEATHS:
        layer.bind_key(shortcut, None)
