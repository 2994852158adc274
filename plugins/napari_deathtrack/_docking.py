"""The two panels share one dock area as tabs, so neither squeezes the other.

napari docks each plugin widget on the right, the second one under the first:
with the Analyze and Review panels both open, each got half the height and
the Analyze form shrank to a sliver. When a deathtrack panel is shown and the
other one is docked in the same area, the new one becomes a tab beside it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

__all__ = ["dock_of", "raise_panel", "tabify_with_siblings"]


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The dock widget holding ``widget``, if any."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _panels(main: QMainWindow) -> list[tuple[QDockWidget, QWidget]]:
    out = []
    for dock in main.findChildren(QDockWidget):
        for w in dock.findChildren(QWidget):
            if getattr(w, "deathtrack_panel", False):
                out.append((dock, w))
                break
    return out


def tabify_with_siblings(widget: QWidget) -> bool:
    """Put ``widget``'s dock in a tab beside another deathtrack panel's; True if done."""
    dock = dock_of(widget)
    if dock is None or dock.isFloating():
        return False
    main = dock.parentWidget()
    if not isinstance(main, QMainWindow):
        return False
    area = main.dockWidgetArea(dock)
    for other, _ in _panels(main):
        if other is dock or other.isFloating() or not other.isVisible():
            continue
        if main.dockWidgetArea(other) != area or dock in main.tabifiedDockWidgets(other):
            continue
        main.tabifyDockWidget(other, dock)
        dock.raise_()
        return True
    return False


def raise_panel(widget: QWidget) -> None:
    """Bring ``widget``'s tab to the front."""
    dock = dock_of(widget)
    if dock is not None:
        dock.raise_()
