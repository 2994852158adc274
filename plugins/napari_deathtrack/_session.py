"""What the plugin's panels of one viewer share: the classifier to use in the next runs.

The review panel's *Retrain* sets it (the ``classifier.json`` it saved); the
Analyze panel shows it in its *classifier* field and uses it for every later
run until the user changes the field.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from qtpy.QtCore import QObject, Signal

__all__ = ["Session", "session"]


class Session(QObject):
    """State shared by the deathtrack panels of one viewer."""

    #: (path of the classifier, where it comes from)
    classifier_changed = Signal(str, str)

    def __init__(self):
        super().__init__()
        self.classifier: str | None = None
        self.classifier_origin = ""

    def set_classifier(self, path: str | Path, origin: str = "") -> None:
        """Use ``path`` as ``death.classifier`` in the following runs."""
        self.classifier = str(path)
        self.classifier_origin = origin
        self.classifier_changed.emit(self.classifier, origin)


_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session(viewer) -> Session:
    """The :class:`Session` of a viewer (made on first use)."""
    state = _sessions.get(viewer)
    if state is None:
        state = _sessions[viewer] = Session()
    return state
