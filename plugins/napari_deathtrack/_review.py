"""The review panel: go through the deaths of a results folder, label them, retrain.

Keys (napari actions bound at the viewer level, see :mod:`._keys`; they work
whatever has the focus and can be changed in *File > Preferences > Shortcuts*):

==================  =====================================================
key                 action
==================  =====================================================
A                   reviewed label ``apoptotic``
N                   reviewed label ``necroptotic``
X                   reviewed label ``not_death`` (not a death)
U                   reviewed label ``uncertain``
Backspace / Delete  clear the reviewed label (the automatic call counts)
J or .              next death (↓ in the table too)
K or ,              previous death (↑ in the table too)
Ctrl+Z              undo the last label (also on disk, with autosave)
Ctrl+Shift+Z        redo
==================  =====================================================

Labels go to ``reviewed_mode``, ``reviewer`` and ``reviewed_at`` of
``events.csv`` (see :mod:`._review_model`); the automatic ``mode`` and
``p_necroptotic`` are left as the pipeline called them.

Nothing slow runs on napari's GUI thread: loading a results folder, reading
and drawing crops (with the next and previous deaths prepared ahead),
autosaving and retraining run in napari ``thread_worker`` threads; the GUI
thread only updates the table, the markers and the pictures.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QKeyEvent, QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from deathtrack import columns as col

from . import _keys, _layers, _lazy
from ._docking import tabify_with_siblings
from ._loader import ResultsLoader, make_read_only
from ._review_model import EventReview, ReviewError, default_reviewer
from ._session import session
from ._strip import CropStrip, RecruitmentPlot, StripData, StripRow, compute_strip
from ._workarounds import freeze_long_lived, thaw, warm_text_glyphs, watch_activity_indicator

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

__all__ = ["ReviewWidget"]

ERROR_STYLE = "color: #ff8080;"
SHORTCUT_HELP = (
    "Keys (anywhere in the viewer): <b>A</b> apoptotic · <b>N</b> necroptotic · "
    "<b>X</b> not a death · <b>U</b> uncertain · <b>⌫</b> clear · <b>J</b>/<b>.</b> next · "
    "<b>K</b>/<b>,</b> previous · <b>Ctrl+Z</b> undo · <b>Ctrl+Shift+Z</b> redo"
)
COLUMNS = ("#", "frame", "min", "call", "dye", "reviewed")
CALL_COLUMN, REVIEWED_COLUMN = 3, 5
#: fields of view the viewer zooms to around the selected death, µm
FIELDS_UM = (60, 120, 250, 500)
#: strips kept in memory (the next and previous deaths are prepared ahead)
STRIP_CACHE = 24
#: an autosave starts this long after the edit: after the viewer has drawn the key press
#: (the write runs in a thread, but shares the CPU and Python's lock with the drawing)
AUTOSAVE_DELAY_MS = 100
#: a save still running after this long says "saving…" (a quick one changes nothing on screen)
SAVING_SHOWN_MS = 800
#: lines of the status text under the buttons (a longer message makes room for itself)
STATUS_LINES = 3
#: channels shown in the crop strip, in this order, and their tint when no layer says
STRIP_ROLES = {col.ROLE_CELLS: "gray", col.ROLE_DYE: "magenta", col.ROLE_CASPASE: "yellow"}


def _camera(viewer):
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _blank(value) -> bool:
    """Missing (None, NaN, pd.NA) or empty."""
    if value is None or (isinstance(value, str) and not value):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _set_style(widget: QWidget, style: str) -> None:
    """Set a style sheet only when it changes (each call restyles the widget: ms)."""
    if widget.styleSheet() != style:
        widget.setStyleSheet(style)


def _steady(label: QLabel, *, lines: int) -> None:
    """Give a label whose text changes at every key press a size that does not.

    A label sized by its text asks the dock for a new layout at each new text; the
    window is then laid out and drawn again, the canvas included (on software OpenGL a
    second redraw of tens of ms after the one of the key press). Fixed height (room
    for ``lines`` lines, more only for a text that needs it, see :func:`_fit`), width
    from the dock: a new text is only painted.
    """
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setProperty("deathtrack_lines", lines)
    _fit(label)


def _fit(label: QLabel) -> None:
    """Height of a :func:`_steady` label: its lines, or what a longer text needs."""
    lines = int(label.property("deathtrack_lines") or 1)
    metrics = label.fontMetrics()
    height = lines * metrics.lineSpacing()
    if label.wordWrap() and label.text():
        width = max(label.width(), 200)
        needed = metrics.boundingRect(
            0, 0, width, 10_000, int(Qt.TextFlag.TextWordWrap.value), label.text()
        ).height()
        height = max(height, needed)
    margins = label.contentsMargins()
    height += margins.top() + margins.bottom() + 2
    if label.minimumHeight() != height or label.maximumHeight() != height:
        label.setFixedHeight(height)


def _meta(layer) -> dict:
    return (getattr(layer, "metadata", None) or {}).get("deathtrack") or {}


#: flags of a table cell: selectable, not editable (made once: enum arithmetic is slow)
ITEM_FLAGS = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled


class _Item(QTableWidgetItem):
    """A table cell that sorts by a key (numbers numerically, blanks last)."""

    def __init__(self, text: str, key: Any):
        super().__init__(text)
        self.sort_key = key
        self.setFlags(ITEM_FLAGS)

    def __lt__(self, other) -> bool:
        a, b = self.sort_key, getattr(other, "sort_key", None)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def _review_key_names() -> set[str]:
    """The review keys as Qt writes them ("A", ".", "Ctrl+Z", "Del"...)."""
    from napari.utils.key_bindings import coerce_keybinding

    names = set()
    for key in _keys.REVIEW_KEYS:
        for shortcut in _keys.shortcuts(key):
            name = str(coerce_keybinding(shortcut))
            names.add("Del" if name == "Delete" else name)
    return names


class _EventTable(QTableWidget):
    """The events table; the review keys are left to the viewer (not used for search)."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        combo = event.keyCombination() if hasattr(event, "keyCombination") else event.key()
        name = QKeySequence(combo).toString(QKeySequence.SequenceFormat.PortableText)
        if name in _review_key_names():
            event.ignore()  # napari's main window passes it to the viewer's keymap
            return
        super().keyPressEvent(event)


def _release(viewer_ref) -> None:
    """The panel is gone: its keys stop acting on deathtrack's layers; nothing stays frozen."""
    thaw()
    viewer = viewer_ref()
    if viewer is None:
        return
    _keys.set_panel(viewer, None)
    for layer in list(viewer.layers):
        if _meta(layer):
            _keys.unbind_layer(layer)


def _load_review(folder: str):
    """Worker: the events table under review and its recruitment rows by event."""
    review = EventReview(folder)
    rec = review.recruitment()
    by_event: dict[int, pd.DataFrame] = {}
    if rec is not None and col.EVENT_ID in rec.columns:
        by_event = {int(k): g for k, g in rec.groupby(col.EVENT_ID, sort=False)}
    return review, rec is not None, by_event


def _fit_and_save(events: pd.DataFrame, margin: float, folder: Path):
    """Worker: fit the classifier on a copy of the table and save it; a ReviewError is returned."""
    from deathtrack.classify import save_model

    from ._review_model import MODEL_FILE, fit_retrain

    try:
        plan = fit_retrain(events, margin)
    except ReviewError as err:
        return err
    return plan, save_model(plan.model, Path(folder) / MODEL_FILE)


def _write(snapshot: pd.DataFrame, path: Path, table_format: str, generation: int):
    from deathtrack.io import results_lock

    from ._review_model import write_events

    # under the lock of the results folder's --out (``<out>/<stem>/events.csv``), as every
    # run that writes there: a label is never written while a run rewrites the folder (the
    # save then fails with the run's name, and the labels stay in the panel, unsaved)
    with results_lock(Path(path).parent.parent, command="napari review: save labels"):
        return write_events(snapshot, path, table_format), generation


class ReviewWidget(QWidget):
    """Review, correct and retrain the death calls of a results folder.

    Parameters
    ----------
    napari_viewer
        The viewer holding a results folder's layers (opened with the deathtrack
        reader, the analysis panel or *Open results…*).
    """

    #: marks the plugin's panels (see :mod:`._docking`)
    deathtrack_panel = True

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._tabified = False
        self.review: EventReview | None = None
        self.layer = None  # the deaths Points layer of the current results folder
        self.folder: str | None = None
        self.has_recruitment = False
        self._recruitment: dict[int, pd.DataFrame] = {}
        self._markers: pd.DataFrame | None = None
        self._items: dict[int, QTableWidgetItem] = {}
        self._strips: OrderedDict[int, StripData] = OrderedDict()
        self._strip_jobs: set[int] = set()
        self._limits: dict[int, tuple[float, float]] = {}
        self.load_worker = None
        self.retrain_worker = None
        self.save_worker = None
        self._save_pending: tuple | None = None
        self._save_generation = 0
        self.save_error: str | None = None
        self._adding = False
        self._follow_pending = False
        self._layer_update_pending = False
        self._saving_timer = QTimer(self)
        self._saving_timer.setSingleShot(True)
        self._saving_timer.setInterval(SAVING_SHOWN_MS)
        self._saving_timer.timeout.connect(self._show_saving)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(functools.partial(self.save, quiet=True))
        #: events whose markers wait for a restyle (None: the whole layer)
        self._restyle_ids: set[int] | None = set()
        self.loader = ResultsLoader(napari_viewer, self)
        self.loader.failed.connect(lambda text: self.show_message(text, error=True))
        self._build()
        _keys.register_actions()
        watch_activity_indicator(napari_viewer)
        warm_text_glyphs(napari_viewer, _layers.TEXT_CHARS)
        _keys.set_panel(napari_viewer, self)
        self.destroyed.connect(functools.partial(_release, weakref.ref(napari_viewer)))
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in list(self.viewer.layers):
            self._adopt(layer)
        active = self.viewer.layers.selection.active
        if _meta(active).get("kind") == "events":  # opened by napari's reader: not the rings
            self.loader.select_image(_meta(active).get("results"))
        self._refresh_sources()

    # -- layout ---------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        top = QGridLayout()
        self.source_combo = QComboBox()
        self.source_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.source_combo.setToolTip("Results folder (its 'deaths' layer)")
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        open_button = QPushButton("Open results…")
        open_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        open_button.clicked.connect(self._open_results_dialog)
        top.addWidget(QLabel("results"), 0, 0)
        top.addWidget(self.source_combo, 0, 1)
        top.addWidget(open_button, 0, 2)
        self.reviewer = QLineEdit(default_reviewer())
        self.reviewer.setToolTip("Your name, saved with every label you give (reviewer column)")
        top.addWidget(QLabel("reviewer"), 1, 0)
        top.addWidget(self.reviewer, 1, 1, 1, 2)
        top.setColumnStretch(1, 1)
        layout.addLayout(top)

        self.help = QLabel(SHORTCUT_HELP)
        self.help.setWordWrap(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        self.help.setToolTip("Change them in File > Preferences > Shortcuts (deathtrack review)")
        layout.addWidget(self.help)

        self.table = _EventTable(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # sorted when a column header is clicked, never while labelling: with Qt's
        # sorting on, every changed cell re-sorts the whole table (a Python comparison
        # per pair of rows) and the labelled row may jump away from the reviewer
        self.table.setSortingEnabled(False)
        self.table.horizontalHeader().setSectionsClickable(True)
        self.table.horizontalHeader().setSortIndicatorShown(True)
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.AscendingOrder)  # time
        self.table.horizontalHeader().sortIndicatorChanged.connect(self._sort)
        tips = {
            2: "time of death, minutes from the start",
            3: "the automatic call and its own confidence (p for necroptotic, 1 - p for "
            "apoptotic); sorts by call, then confidence",
            4: "dead-cell dye: minutes from death to dye uptake (necroptosis: at once; "
            "apoptosis: late)",
            5: "your label (reviewed_mode)",
        }
        for c, tip in tips.items():
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        header = self.table.horizontalHeader()
        for c, name in enumerate(COLUMNS):
            stretch = name in ("call", "reviewed")
            header.setSectionResizeMode(
                c,
                QHeaderView.ResizeMode.Stretch
                if stretch
                # sized once after each fill: ResizeToContents would measure every row
                # again on every change (half a second for a table of 100 deaths)
                else QHeaderView.ResizeMode.Interactive,
            )
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumHeight(110)
        self.table.itemSelectionChanged.connect(self._on_selection)

        self.strip = CropStrip()
        self.strip.frame_clicked.connect(self._show_frame)
        self.plot = RecruitmentPlot()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        for w in (self.table, self.strip, self.plot):
            self.splitter.addWidget(w)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 6)
        self.splitter.setStretchFactor(2, 1)
        self.splitter.setSizes([180, 400, 120])
        layout.addWidget(self.splitter, stretch=1)

        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add missed death")
        self.add_button.setCheckable(True)
        self.add_button.setToolTip(
            "Then click the dying cell in the viewer: a new event at that place and the "
            "current frame (mode empty, reviewed as uncertain until you press A/N)"
        )
        self.add_button.toggled.connect(self._on_add_toggled)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last label (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(self.redo)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Write the reviewed labels to events.csv")
        self.save_button.clicked.connect(self.save)
        self.retrain_button = QPushButton("Retrain and re-classify")
        self.retrain_button.setToolTip(
            "Train the classifier on your A/N labels (at least 3 of each), then re-classify "
            "every detected event; the model is saved as classifier.json in the results "
            "folder and the Analyze panel uses it for the next runs"
        )
        self.retrain_button.clicked.connect(self.retrain)
        for b in (
            self.add_button,
            self.undo_button,
            self.redo_button,
            self.save_button,
            self.retrain_button,
        ):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(b)
        layout.addLayout(buttons)

        opts = QHBoxLayout()
        self.advance = QCheckBox("next after label")
        self.advance.setToolTip("Select the next event after A/N/X/U")
        self.advance.setChecked(True)
        self.autosave = QCheckBox("autosave")
        self.autosave.setToolTip("Write events.csv after every label (in the background)")
        self.autosave.setChecked(True)
        self.field_combo = QComboBox()
        for um in FIELDS_UM:
            self.field_combo.addItem(f"{um} µm", float(um))
        self.field_combo.setCurrentIndex(FIELDS_UM.index(120))
        self.field_combo.setToolTip("Field of view the viewer zooms to around the selected death")
        for w in (self.advance, self.autosave, self.field_combo):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.save_state = QLabel("")
        self.save_state.setToolTip("State of events.csv on disk")
        _steady(self.save_state, lines=1)
        opts.addWidget(self.advance)
        opts.addWidget(self.autosave)
        opts.addWidget(self.save_state, stretch=1)
        opts.addWidget(QLabel("zoom"))
        opts.addWidget(self.field_combo)
        layout.addLayout(opts)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        _steady(self.status, lines=STATUS_LINES)
        layout.addWidget(self.status)
        self._update_undo_buttons()

    def show_message(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        _fit(self.status)
        _set_style(self.status, ERROR_STYLE if error else "")

    def _flush_autosave(self) -> None:
        """Start an autosave that waits for its delay now."""
        if self._autosave_timer.isActive():
            self.save(quiet=True)

    def hideEvent(self, event) -> None:
        self._flush_autosave()  # closing the panel or the viewer: nothing is left unsaved
        super().hideEvent(event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._tabified:
            self._tabified = True
            tabify_with_siblings(self)

    @property
    def field_um(self) -> float:
        return float(self.field_combo.currentData())

    # -- layers and results folders -------------------------------------------

    def _adopt(self, layer) -> None:
        """Review keys on a deathtrack layer; a deaths layer becomes read-only."""
        meta = _meta(layer)
        if not meta:
            return
        _keys.bind_layer(self.viewer, layer)
        _layers.apply_display(layer)
        if meta.get("kind") == "events":
            make_read_only(layer)

    def _on_inserted(self, event) -> None:
        layer = event.value
        self._adopt(layer)
        if _meta(layer).get("kind") == "events" and not self.loader.busy:
            # opened by napari's reader: it is the active layer; give that to an image
            folder = _meta(layer).get("results")
            QTimer.singleShot(0, functools.partial(self.loader.select_image, folder))
        self._refresh_sources()

    def _on_removed(self, event) -> None:
        if _meta(event.value):
            thaw()  # collect the removed layer's reference cycles (see _workarounds)
        self._refresh_sources()

    def _events_layers(self) -> list:
        return [
            layer
            for layer in self.viewer.layers
            if _meta(layer).get("kind") == "events" and _meta(layer).get("results")
        ]

    def _refresh_sources(self, *_: Any) -> None:
        current = self.source_combo.currentData()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for layer in self._events_layers():
            meta = _meta(layer)
            folder = meta["results"]
            if self.source_combo.findData(folder) < 0:
                self.source_combo.addItem(meta.get("label") or Path(folder).name, folder)
                self.source_combo.setItemData(
                    self.source_combo.count() - 1, folder, Qt.ItemDataRole.ToolTipRole
                )
        self.source_combo.blockSignals(False)
        index = self.source_combo.findData(current) if current else -1
        if index < 0 and self.source_combo.count():
            index = self.source_combo.count() - 1  # the newest results
        if index >= 0:
            self.source_combo.setCurrentIndex(index)
        if self.source_combo.currentData() != current or (
            self.layer is not None and self.layer not in self.viewer.layers
        ):
            self._on_source_changed()

    def _open_results_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "deathtrack results folder")
        if path:
            self.open_results(path)

    def open_results(self, folder: str | Path) -> bool:
        """Add a results folder's layers (in the background) and review it."""
        folder = Path(folder)
        if not _layers.is_results_folder(folder):
            self.show_message(
                f"{folder}: not a deathtrack results folder (no run.json)", error=True
            )
            return False
        self.show_message(f"Opening {folder.name}…")
        return self.loader.load(folder, on_done=self._review_folder)

    def _review_folder(self, folder: str) -> None:
        """Review ``folder`` (its deaths layer is in the viewer)."""
        index = self.source_combo.findData(str(Path(folder).resolve()))
        if index >= 0:
            self.source_combo.setCurrentIndex(index)

    def _on_source_changed(self, *_: Any) -> None:
        from napari.qt.threading import create_worker

        self._flush_autosave()  # the labels of the folder shown until now
        folder = self.source_combo.currentData()
        self.layer = None
        for layer in self._events_layers():
            if _meta(layer)["results"] == folder:
                self.layer = layer
        if folder == self.folder and self.review is not None:
            return  # the same results (e.g. a layer added beside them)
        if self.review is not None and self.review.dirty and str(self.review.folder) != folder:
            self.show_message(
                f"Unsaved labels of {self.review.folder.name} were not written.", error=True
            )
        self.review, self.folder, self._markers = None, folder, None
        self._set_save_state("")  # the state of the folder shown, not of the last one
        self._strips.clear()
        self._limits.clear()
        self._fill_table()
        self.strip.set_data(None)
        self.plot.set_data(None)
        if not folder:
            return
        self.show_message(f"Loading the deaths of {Path(folder).name}…")
        worker = create_worker(_load_review, folder, _ignore_errors=True)
        worker.returned.connect(functools.partial(self._on_review_loaded, folder))
        worker.errored.connect(lambda err: self.show_message(str(err), error=True))
        worker.finished.connect(functools.partial(self._loading_done, worker))
        self.load_worker = worker
        worker.start()

    def _loading_done(self, worker) -> None:
        if self.load_worker is worker:
            self.load_worker = None

    def _on_review_loaded(self, folder: str, loaded) -> None:
        if folder != self.folder:
            return  # another folder was chosen meanwhile
        self.review, self.has_recruitment, self._recruitment = loaded
        self._markers = None
        freeze_long_lived()
        self._fill_table()
        self._update_undo_buttons()
        n = len(self.review)
        done = sum(self.review.review_counts().values())
        note = (
            ""
            if self.has_recruitment
            else " No recruitment.csv in this results folder: immune recruitment was not "
            "measured (it needs an immune channel), so no recruitment curve is shown."
        )
        self.plot.set_data(None, note=note.strip())
        self.show_message(
            f"{n} events, {done} reviewed; J / K or a click on a row steps through them.{note}"
        )

    # -- table ----------------------------------------------------------------

    def _row_cells(self, ev) -> list[_Item]:
        def num(v, fmt):
            return ("", np.inf) if _blank(v) else (fmt.format(v), float(v))

        interval = (self.review.interval_s if self.review else None) or 0
        t_s = ev.get(col.T_S)
        if _blank(t_s) and interval:
            t_s = float(ev[col.FRAME]) * interval
        t_text, t_key = num(None if _blank(t_s) else float(t_s) / 60.0, "{:.0f}")
        mode = "" if _blank(ev.get(col.MODE)) else str(ev[col.MODE])
        p = ev.get(col.P_NECROPTOTIC)
        conf = _layers.call_confidence(mode, p)
        call = _layers.call_text(mode, p) if mode else ""
        dye = ev.get(col.DYE_FRAME)
        if _blank(dye):
            dye_text, dye_key = "—", np.inf
        else:
            lag = float(dye) - float(ev[col.FRAME])
            dye_text = f"{lag * interval / 60:+.0f} min" if interval else f"{lag:+.0f} fr"
            dye_key = lag
        reviewed = "" if _blank(ev.get(col.REVIEWED_MODE)) else str(ev[col.REVIEWED_MODE])
        cells = [
            _Item(str(int(ev[col.EVENT_ID])), int(ev[col.EVENT_ID])),
            _Item(str(int(ev[col.FRAME])), int(ev[col.FRAME])),
            _Item(t_text, t_key),
            _Item(call, (mode or "~", -(conf if conf is not None else -1.0))),
            _Item(dye_text, dye_key),
            _Item(reviewed.replace("_", " "), reviewed or "~"),
        ]
        for c, value in ((CALL_COLUMN, mode), (REVIEWED_COLUMN, reviewed)):
            if value:
                cells[c].setForeground(QColor(_layers.MODE_COLORS.get(value, "#ffffff")))
        cells[0].setData(Qt.ItemDataRole.UserRole, int(ev[col.EVENT_ID]))
        return cells

    def _sort(self, column: int, order: Qt.SortOrder) -> None:
        """Sort the rows by a column (a click on its header); the selection stays."""
        self.table.sortItems(column, order)
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.table.scrollTo(rows[0])

    def _fill_table(self, select: int | None = None) -> None:
        table = self.table
        table.blockSignals(True)
        table.clearContents()
        self._items = {}
        events = self.review.events if self.review is not None else []
        table.setRowCount(len(events))
        if self.review is not None:
            for r, ev in enumerate(self.review.events.to_dict("records")):
                cells = self._row_cells(ev)
                for c, item in enumerate(cells):
                    table.setItem(r, c, item)
                self._items[int(ev[col.EVENT_ID])] = cells[0]
        header = table.horizontalHeader()
        table.sortItems(header.sortIndicatorSection(), header.sortIndicatorOrder())
        table.blockSignals(False)
        for c, name in enumerate(COLUMNS):
            if name not in ("call", "reviewed"):
                table.resizeColumnToContents(c)
        if select is not None:
            self.select_event(select)

    def _row_of(self, event_id: int) -> int:
        item = self._items.get(int(event_id))
        return -1 if item is None else item.row()

    def _update_row(self, event_id: int) -> None:
        r = self._row_of(event_id)
        if r < 0 or self.review is None:
            return
        self.table.blockSignals(True)  # the row stays where it is (see _sort)
        cells = self._row_cells(self.review.event(event_id).to_dict())
        for c in (CALL_COLUMN, REVIEWED_COLUMN):
            self.table.setItem(r, c, cells[c])
        self.table.blockSignals(False)

    def _update_calls(self) -> None:
        """Refresh the call column of every row (after a retrain), rows staying in place."""
        if self.review is None:
            return
        self.table.blockSignals(True)
        for ev in self.review.events.to_dict("records"):
            r = self._row_of(int(ev[col.EVENT_ID]))
            if r >= 0:
                self.table.setItem(r, CALL_COLUMN, self._row_cells(ev)[CALL_COLUMN])
        self.table.blockSignals(False)

    @property
    def current_event(self) -> int | None:
        """event_id of the selected row, or None."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def select_event(self, event_id: int) -> None:
        """Select an event: the viewer jumps to it and the crop strip shows it."""
        r = self._row_of(event_id)
        if r >= 0:
            self.table.selectRow(r)
            self.table.scrollToItem(self.table.item(r, 0))

    def step(self, delta: int) -> None:
        """Select the next (+1) or previous (-1) event in the table's order."""
        n = self.table.rowCount()
        if not n:
            return
        rows = self.table.selectionModel().selectedRows()
        r = rows[0].row() + delta if rows else (0 if delta > 0 else n - 1)
        r = min(max(r, 0), n - 1)
        self.table.selectRow(r)
        self.table.scrollToItem(self.table.item(r, 0))

    def _on_selection(self) -> None:
        # the selection (what the keys act on) changes at once; the viewer follows in the
        # next turns of the event loop, so a key press is one short step of GUI work and
        # fast presses coalesce into one jump
        if not self._follow_pending:
            self._follow_pending = True
            QTimer.singleShot(0, self._follow_selection)

    def _follow_selection(self) -> None:
        self._follow_pending = False
        event_id = self.current_event
        if event_id is None or self.review is None:
            return
        ev = self.review.event(event_id).to_dict()
        self.jump_to(ev)
        # in the same turn: the canvas and the strip are drawn in one window update (with
        # software OpenGL each update of the window costs tens of ms, whatever changed)
        self._show_strip(ev)
        QTimer.singleShot(0, functools.partial(self._prepare_later, event_id))

    def _prepare_later(self, event_id: int) -> None:
        if event_id == self.current_event and self.review is not None:
            self._prepare_neighbours()

    # -- navigation -----------------------------------------------------------

    def jump_to(self, ev) -> None:
        """Show the event's death frame, centred, at the chosen field of view."""
        px = (self.review.pixel_size_um if self.review else None) or 1.0
        coords = np.array([float(ev[col.FRAME]), float(ev[col.Y]), float(ev[col.X])])
        if self.layer is not None and self.layer in self.viewer.layers and self.layer.ndim == 3:
            world = np.asarray(self.layer.data_to_world(coords), dtype=float)
        else:
            world = coords * np.array([1.0, px, px])
        if self.viewer.dims.ndim >= 3:
            axis = max(self.viewer.dims.ndim - 3, 0)
            # the same frame: no new slice of every layer, only the camera moves
            if not np.isclose(self.viewer.dims.point[axis], world[0]):
                self.viewer.dims.set_point(axis, world[0])
        camera = _camera(self.viewer)
        canvas = getattr(self.viewer, "canvas", None)
        size = getattr(canvas, "size", None)
        view = {"center": (float(world[1]), float(world[2]))}
        if size is not None:
            view["zoom"] = float(min(size)) / self.field_um
        camera.update(view)  # one camera update, not one per attribute

    def _show_frame(self, frame: int) -> None:
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_point(max(self.viewer.dims.ndim - 3, 0), float(frame))

    # -- crop strip -----------------------------------------------------------

    def _stack(self) -> tuple[str | None, str | None, list[StripRow]]:
        """The stack of the results, its axes and the rows of the strip."""
        review = self.review
        if review is None:
            return None, None, []
        run = review.run
        stack = _layers.find_stack(review.folder, run)
        if stack is None:
            return None, None, []
        stack = str(Path(stack).resolve())
        axes = ((run.get("config") or {}).get("input") or {}).get("axes")
        roles = dict((run.get("input") or {}).get("roles") or {})
        shown = {}
        for layer in self.viewer.layers:
            meta = _meta(layer)
            if meta.get("kind") == "image" and meta.get("stack") == stack:
                shown[meta.get("channel")] = layer
                if meta.get("role") and meta["role"] not in roles:
                    roles[meta["role"]] = meta.get("channel")
        rows = []
        for role, tint in STRIP_ROLES.items():
            if role not in roles or roles[role] is None:
                continue
            c = int(roles[role])
            layer = shown.get(c)
            if layer is not None:
                limits = tuple(float(v) for v in layer.contrast_limits)
                name = getattr(layer.colormap, "name", tint)
                tint = name if name in ("gray", "magenta", "yellow", "green", "blue") else tint
            else:
                limits = self._limits.get(c)
            rows.append(StripRow(role, c, limits, tint))
        return stack, axes, rows

    def _strip_title(self, ev) -> tuple[str, str]:
        mode = "" if _blank(ev.get(col.MODE)) else str(ev[col.MODE])
        reviewed = "" if _blank(ev.get(col.REVIEWED_MODE)) else str(ev[col.REVIEWED_MODE])
        call = reviewed or mode  # the call shown (see _layers.effective_calls)
        text = _layers.call_text(mode, ev.get(col.P_NECROPTOTIC)) if mode else "added by hand"
        if reviewed:
            text += f" → reviewed {reviewed.replace('_', ' ')}"
        title = f"#{int(ev[col.EVENT_ID])}  frame {int(ev[col.FRAME])}  {text}"
        return title, _layers.MODE_COLORS.get(call, "#d6d6d6")

    def _strip_job(self, ev) -> dict:
        stack, axes, rows = self._stack()
        title, color = self._strip_title(ev)
        return {
            "event": {k: ev[k] for k in (col.EVENT_ID, col.FRAME, col.Y, col.X)},
            "stack": stack,
            "axes": axes,
            "rows": rows,
            "pixel_size_um": self.review.pixel_size_um,
            "interval_s": self.review.interval_s,
            "n_frames": (self.review.run.get("counts") or {}).get("n_frames"),
            "title": title,
            "color": color,
            "recruitment": self._recruitment.get(int(ev[col.EVENT_ID])),
        }

    def _show_strip(self, ev) -> None:
        event_id = int(ev[col.EVENT_ID])
        data = self._strips.get(event_id)
        if data is not None:
            self._strips.move_to_end(event_id)
            data.title, data.color = self._strip_title(ev)
            self.strip.set_data(data)
            self.plot.set_data(data, note="" if self.has_recruitment else self.plot.note)
            return
        title, color = self._strip_title(ev)
        self.strip.set_data(
            StripData(event_id, title + "  (reading…)", color, (), (), message="reading…")
        )
        self._start_strip(ev)

    def _start_strip(self, ev) -> None:
        from napari.qt.threading import create_worker

        event_id = int(ev[col.EVENT_ID])
        if event_id in self._strip_jobs or self.review is None:
            return
        self._strip_jobs.add(event_id)
        job = self._strip_job(ev)
        worker = create_worker(_strip_with_limits, job, _ignore_errors=True)
        worker.returned.connect(functools.partial(self._on_strip, self.folder))
        worker.errored.connect(functools.partial(self._on_strip_error, event_id))
        worker.start()

    def _on_strip_error(self, event_id: int, err: Exception) -> None:
        self._strip_jobs.discard(event_id)
        logger.warning("crops of event %s: %s", event_id, err)
        if self.current_event == event_id:
            self.strip.set_data(
                StripData(event_id, f"#{event_id}", "#d6d6d6", (), (), message=str(err))
            )

    def _on_strip(self, folder: str, result) -> None:
        data, limits = result
        self._strip_jobs.discard(data.event_id)
        if folder != self.folder:
            return
        self._limits.update(limits)
        self._strips[data.event_id] = data
        while len(self._strips) > STRIP_CACHE:
            self._strips.popitem(last=False)
        if self.current_event == data.event_id and self.review is not None:
            self._show_strip(self.review.event(data.event_id).to_dict())

    def _prepare_neighbours(self) -> None:
        """Crops of the next and previous deaths, and their frames for the viewer."""
        if self.review is None:
            return
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        r = rows[0].row()
        stack, axes, _ = self._stack()
        frames = []
        channels = [
            _meta(layer)["channel"]
            for layer in self.viewer.layers
            if _meta(layer).get("kind") == "image" and _meta(layer).get("stack") == stack
        ]
        for nr in (r + 1, r - 1):
            item = self.table.item(nr, 0) if 0 <= nr < self.table.rowCount() else None
            if item is None:
                continue
            ev = self.review.event(item.data(Qt.ItemDataRole.UserRole)).to_dict()
            frames += [(c, int(ev[col.FRAME])) for c in channels]
            if int(ev[col.EVENT_ID]) not in self._strips:
                self._start_strip(ev)
        if stack is not None and frames:
            _lazy.prefetch(stack, frames, axes=axes)

    # -- labelling ------------------------------------------------------------

    def label_current(self, label: str) -> None:
        """Give the selected event the reviewed label ``label`` (what A/N/X/U do)."""
        event_id = self.current_event
        if self.review is None or event_id is None:
            self.show_message("Select an event in the table first.", error=True)
            return
        self.review.set_review(event_id, label, reviewer=self.reviewer.text().strip())
        self._after_edit(event_id, f"#{event_id} reviewed as {label}.")
        if self.advance.isChecked():
            self.step(+1)

    def clear_current(self) -> None:
        """Remove the selected event's reviewed label (what Backspace / Delete do)."""
        event_id = self.current_event
        if self.review is None or event_id is None:
            self.show_message("Select an event in the table first.", error=True)
            return
        self.review.clear_review(event_id)
        self._after_edit(event_id, f"#{event_id}: label cleared (the automatic call counts).")

    def undo(self) -> None:
        """Take back the last label (Ctrl+Z); with autosave, events.csv follows."""
        self._undo_redo(self.review.undo if self.review else None, "Undone")

    def redo(self) -> None:
        """Make the last undone label again (Ctrl+Shift+Z)."""
        self._undo_redo(self.review.redo if self.review else None, "Redone")

    def _undo_redo(self, action, verb: str) -> None:
        if action is None:
            return
        n_before = len(self.review)
        event_id = action()
        if event_id is None:
            self.show_message(f"Nothing to {verb.lower()[:-2]}.")
            return
        if len(self.review) != n_before:  # an added death came or went
            self._fill_table()
            self._markers = None
            self._update_layer()
            self._autosave()
            self._update_undo_buttons()
            self.show_message(f"{verb}: the added death #{event_id}.")
            if len(self.review) > n_before:
                self.select_event(event_id)
            return
        label = self.review.event(event_id).get(col.REVIEWED_MODE)
        self._after_edit(
            event_id, f"{verb}: #{event_id} is {'unreviewed' if _blank(label) else label}."
        )
        self.select_event(event_id)

    def _after_edit(self, event_id: int, text: str) -> None:
        self._update_row(event_id)
        self._schedule_layer_update(event_id)
        self._autosave()
        self._update_undo_buttons()
        counts = self.review.review_counts()
        done = ", ".join(f"{n} {m.replace('_', ' ')}" for m, n in counts.items() if n)
        self.show_message(f"{text} Reviewed: {done or 'none'}")
        if self.current_event == event_id:
            ev = self.review.event(event_id).to_dict()
            data = self._strips.get(event_id)
            if data is not None:
                data.title, data.color = self._strip_title(ev)
                self.strip.update()

    def _update_undo_buttons(self) -> None:
        self.undo_button.setEnabled(bool(self.review and self.review.can_undo))
        self.redo_button.setEnabled(bool(self.review and self.review.can_redo))

    # -- saving ---------------------------------------------------------------

    @property
    def is_saved(self) -> bool:
        """events.csv holds every label (no save running or waiting, nothing unsaved)."""
        return (
            self.save_worker is None
            and not self._autosave_timer.isActive()
            and self._save_pending is None
            and (self.review is None or not self.review.dirty)
        )

    def _autosave(self) -> bool:
        """Save soon (after the key press's redraw; quick presses make one save)."""
        if self.autosave.isChecked() and self.review is not None:
            self._autosave_timer.start()
            return True
        if self.review is not None and self.review.dirty:
            self._set_save_state("unsaved changes: press Save")
        return False

    def save(self, *_: Any, quiet: bool = False) -> bool:
        """Write the labels to events.csv in the background (atomically). False if nothing."""
        self._autosave_timer.stop()  # this save writes what it would have
        if self.review is None:
            self.show_message("No results to save.", error=True)
            return False
        self._save_generation += 1
        job = (
            self.review.snapshot(),
            self.review.path,
            self.review.table_format,
            self._save_generation,
        )
        self._saving_timer.start()  # "saving…" only if the save is still running then
        if self.save_worker is not None:
            self._save_pending = job  # written when the running save ends: newest wins
        else:
            self._start_save(job)
        if not quiet:
            n = sum(self.review.review_counts().values())
            self.show_message(f"Saving {self.review.path} ({n} reviewed events)…")
        return True

    def _start_save(self, job) -> None:
        from napari.qt.threading import create_worker

        review = self.review
        worker = create_worker(_write, *job, _ignore_errors=True)
        worker.returned.connect(functools.partial(self._on_saved, review))
        worker.errored.connect(self._on_save_error)
        worker.finished.connect(self._on_save_finished)
        self.save_worker = worker
        worker.start()

    def _on_saved(self, review, result) -> None:
        _path, generation = result
        self.save_error = None
        if review is self.review and generation == self._save_generation:
            review.dirty = False
            n = sum(review.review_counts().values())
            # the same words after every save: the label is not painted again for each
            # key press (on software OpenGL each repaint of the window costs tens of ms)
            self._set_save_state(
                "all labels saved",
                tooltip=f"events.csv written at {datetime.now():%H:%M:%S} with {n} reviewed events",
            )

    def _on_save_error(self, err: Exception) -> None:
        self.save_error = f"could not save: {err}"
        self._set_save_state(self.save_error, error=True)
        self.show_message(f"Could not save the labels: {err}", error=True)

    def _on_save_finished(self) -> None:
        self.save_worker = None
        if self._save_pending is not None:
            job, self._save_pending = self._save_pending, None
            self._start_save(job)

    def _show_saving(self) -> None:
        if not self.is_saved and self.save_error is None:
            self._set_save_state("saving…")

    def _set_save_state(self, text: str, *, error: bool = False, tooltip: str = "") -> None:
        if self.save_state.text() != text:
            self.save_state.setText(text)
        self.save_state.setToolTip(tooltip or f"State of events.csv on disk: {text}")
        _set_style(self.save_state, ERROR_STYLE if error else "color: #9a9a9a;")

    # -- the deaths layer -----------------------------------------------------

    def _layer_markers(self) -> pd.DataFrame | None:
        """The markers of the deaths layer (one row per point), or None."""
        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            return None
        features = layer.features
        if "offset" not in features.columns or len(features) != len(layer.data):
            return None
        data = np.asarray(layer.data)
        return pd.DataFrame(
            {
                col.EVENT_ID: features[col.EVENT_ID].to_numpy(),
                col.FRAME: np.rint(data[:, 0]).astype(int) if len(data) else [],
                "offset": features["offset"].to_numpy(),
                col.Y: data[:, -2] if len(data) else [],
                col.X: data[:, -1] if len(data) else [],
            }
        )

    def _schedule_layer_update(self, event_id: int | None = None) -> None:
        """Restyle the markers in the next turn, with the jump to the next death: the
        canvas is then drawn once for both.

        ``event_id``: only this event's markers changed (a label); None: every marker
        (after a retrain, or a death added or removed).
        """
        if event_id is None:
            self._restyle_ids = None
        elif self._restyle_ids is not None:
            self._restyle_ids.add(int(event_id))
        if not self._layer_update_pending:
            self._layer_update_pending = True
            QTimer.singleShot(0, self._flush_layer_update)

    def _flush_layer_update(self) -> None:
        if self._layer_update_pending:
            self._layer_update_pending = False
            ids, self._restyle_ids = self._restyle_ids, set()
            if ids is None or not self._restyle(ids):
                self._update_layer()

    def _restyle(self, event_ids: set[int]) -> bool:
        """Recolour and re-label the markers of ``event_ids`` only, in place.

        A label changes the ring colour and the text of one event's markers (a handful
        of the layer's ~1000): setting the whole layer's features and colours would make
        napari rebuild every marker's text and colour (tens of ms). Here the rows of
        those markers are changed in the layer's own features table and colour array
        (the opacity, the dye fill and the widths stay: they follow the frame, not the
        label), and the canvas is told once. False when the layer's markers are not the
        ones this panel knows (the caller then restyles the whole layer).
        """
        layer, review = self.layer, self.review
        if review is None or layer is None or layer not in self.viewer.layers:
            return True
        markers = self._markers if self._markers is not None else self._layer_markers()
        features = layer.features
        columns = (col.REVIEWED_MODE, "call", "label", "dye")
        if (
            markers is None
            or len(markers) != len(layer.data)
            or any(c not in features.columns for c in columns)
        ):
            return False
        self._markers = markers
        marker_ids = markers[col.EVENT_ID].to_numpy()
        dye = features["dye"].to_numpy()
        where = {c: features.columns.get_loc(c) for c in columns}
        border = layer.border_color
        for event_id in event_ids:
            rows = np.flatnonzero(marker_ids == event_id)
            if not len(rows):
                continue
            try:
                ev = review.event(event_id)
            except ReviewError:  # the event went meanwhile (an added death undone)
                return False
            mode = "" if _blank(ev.get(col.MODE)) else str(ev[col.MODE])
            reviewed = "" if _blank(ev.get(col.REVIEWED_MODE)) else str(ev[col.REVIEWED_MODE])
            call = reviewed or mode
            text = _layers.call_text(mode, ev.get(col.P_NECROPTOTIC), reviewed)
            features.iloc[rows, where[col.REVIEWED_MODE]] = reviewed
            features.iloc[rows, where["call"]] = call
            features.iloc[rows, where["label"]] = [
                _layers.marker_label(event_id, text, bool(d)) for d in dye[rows]
            ]
            border[rows, :3] = _layers.mode_colors([call])[0, :3]
        # the canvas redraws the markers on screen and their text once, on the colour's
        # event (the text's own event would lay the text out a second time)
        with layer.text.events.blocker_all():
            layer.text.refresh(features)
        layer.events.border_color()
        return True

    def _update_layer(self) -> None:
        """Recolour (and after an added or removed death, re-place) every marker."""
        self._layer_update_pending = False
        self._restyle_ids = set()
        layer, review = self.layer, self.review
        if review is None or layer is None or layer not in self.viewer.layers:
            return
        markers = self._markers if self._markers is not None else self._layer_markers()
        ids = set(review.event_ids())
        moved = False
        if markers is None:
            markers = _layers.event_markers(review.events)
            moved = True
        else:
            known = set(markers[col.EVENT_ID])
            if known - ids:
                markers = markers[markers[col.EVENT_ID].isin(ids)]
                moved = True
            new = review.events[review.events[col.EVENT_ID].isin(ids - known)]
            if len(new):
                markers = pd.concat([markers, _layers.event_markers(new)], ignore_index=True)
                moved = True
        self._markers = markers.reset_index(drop=True)
        style = _layers.marker_style(review.events, self._markers)
        if moved:
            layer.data = _layers.markers_data(self._markers, layer.ndim)
        layer.features = style["features"]
        if len(self._markers):
            # a label changes the colour and the text only; dye fill and widths follow
            # the markers, which move only when a death is added or removed
            layer.border_color = style["border_color"]
            if moved:
                layer.face_color = style["face_color"]
                layer.border_width = style["border_width"]

    # -- missed deaths --------------------------------------------------------

    def _on_add_toggled(self, checked: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if checked:
            if self.review is None:
                self.add_button.setChecked(False)
                self.show_message("Open a results folder first.", error=True)
                return
            if self._on_viewer_click not in callbacks:
                callbacks.append(self._on_viewer_click)
            self.show_message("Click the dying cell in the viewer (the current frame is used).")
        elif self._on_viewer_click in callbacks:
            callbacks.remove(self._on_viewer_click)

    def _on_viewer_click(self, viewer, event) -> None:
        if event.type != "mouse_press":
            return
        self.add_missed_at(event.position)

    def add_missed_at(self, world_position) -> int | None:
        """Add a missed death at a viewer (world) position; the mode stays empty."""
        if self.review is None:
            return None
        pos = np.asarray(world_position, dtype=float)
        if self.layer is not None and self.layer in self.viewer.layers:
            frame, y, x = np.asarray(self.layer.world_to_data(pos[-3:]), dtype=float)[-3:]
        else:
            px = self.review.pixel_size_um or 1.0
            frame, y, x = pos[-3], pos[-2] / px, pos[-1] / px
        new_id = self.review.add_missed(
            int(round(frame)), float(y), float(x), reviewer=self.reviewer.text().strip()
        )
        self.add_button.setChecked(False)
        self._fill_table()
        self._update_layer()
        self._autosave()
        self._update_undo_buttons()
        self.select_event(new_id)
        self.show_message(
            f"Added missed death #{new_id} at frame {int(round(frame))}; press A or N to say "
            "how it died (it is 'uncertain' until then)."
        )
        return new_id

    # -- retraining -----------------------------------------------------------

    def retrain(self) -> bool:
        """Retrain on the reviewed labels, in the background. False if it cannot start."""
        from napari.qt.threading import create_worker

        if self.review is None:
            self.show_message("Open a results folder first.", error=True)
            return False
        if self.retrain_worker is not None:
            return False
        review = self.review
        self.retrain_button.setEnabled(False)
        self.show_message("Retraining…")
        worker = create_worker(
            _fit_and_save,
            review.snapshot(),
            review.uncertain_margin(),
            review.folder,
            _ignore_errors=True,
        )
        worker.returned.connect(functools.partial(self._on_retrained, review))
        worker.errored.connect(
            lambda err: self.show_message(f"Retraining failed: {err}", error=True)
        )
        worker.finished.connect(self._on_retrain_finished)
        self.retrain_worker = worker
        worker.start()
        return True

    def _on_retrain_finished(self) -> None:
        self.retrain_worker = None
        self.retrain_button.setEnabled(True)

    def _on_retrained(self, review, outcome) -> None:
        if isinstance(outcome, ReviewError):
            self.show_message(str(outcome), error=True)
            return
        if review is not self.review:
            return
        plan, model_path = outcome
        result = review.apply_calls(plan, model_path)
        self._update_calls()
        self._update_layer()
        self._autosave()
        session(self.viewer).set_classifier(model_path, origin=f"retrained on {review.folder.name}")
        self.show_message(result.summary() + " The Analyze panel uses it for the next runs.")


def _strip_with_limits(job: dict):
    """Worker: the strip of one event; display ranges not known yet are computed here."""
    limits = {}
    rows = []
    for row in job["rows"]:
        if row.limits is None:
            lim = _lazy.contrast_limits(
                lambda t, c=row.channel: _lazy.read_frame(job["stack"], c, t, axes=job["axes"]),
                int(job["n_frames"] or 1),
            )
            limits[row.channel] = lim
            row = StripRow(row.role, row.channel, lim, row.tint)
        rows.append(row)
    return compute_strip(**{**job, "rows": rows}), limits
