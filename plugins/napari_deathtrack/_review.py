"""The review panel: go through the deaths of a results folder, label them, retrain.

Keyboard (click the event table first, so that napari's own layer shortcuts
are not triggered):

======  =====================================================
key     action
======  =====================================================
A       reviewed label ``apoptotic``
N       reviewed label ``necroptotic``
X       reviewed label ``not_death`` (not a death)
U       reviewed label ``uncertain``
. / J   next event (↓ too)
, / K   previous event (↑ too)
======  =====================================================

Labels go to ``reviewed_mode``, ``reviewer`` and ``reviewed_at`` of
``events.csv`` (see :mod:`._review_model`); the automatic ``mode`` and
``p_necroptotic`` are left as the pipeline called them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QKeyEvent
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from deathtrack import columns as col

from . import _layers, _lazy
from ._review_model import REVIEW_LABELS, EventReview, ReviewError, default_reviewer

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

__all__ = ["ReviewWidget"]

ERROR_STYLE = "color: #ff8080;"
#: frames relative to the death frame shown in the crop strip
CROP_FRAMES = (-6, -3, -1, 0, 1, 3, 8)
#: half the crop side, µm
CROP_HALF_UM = 20.0
LABEL_KEYS = {
    Qt.Key.Key_A: REVIEW_LABELS["A"],
    Qt.Key.Key_N: REVIEW_LABELS["N"],
    Qt.Key.Key_X: REVIEW_LABELS["X"],
    Qt.Key.Key_U: REVIEW_LABELS["U"],
}
NEXT_KEYS = (Qt.Key.Key_Period, Qt.Key.Key_J)
PREVIOUS_KEYS = (Qt.Key.Key_Comma, Qt.Key.Key_K)
SHORTCUT_HELP = (
    "Keys (click the table first): <b>A</b> apoptotic · <b>N</b> necroptotic · "
    "<b>X</b> not a death · <b>U</b> uncertain · <b>.</b>/<b>J</b> next · "
    "<b>,</b>/<b>K</b> previous"
)
COLUMNS = ("#", "frame", "min", "mode", "p", "reviewed")
DARK = "#262930"
LIGHT = "#d6d6d6"


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


class _Item(QTableWidgetItem):
    """A table cell that sorts by a key (numbers numerically, blanks last)."""

    def __init__(self, text: str, key: Any):
        super().__init__(text)
        self.sort_key = key
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other) -> bool:
        a, b = self.sort_key, getattr(other, "sort_key", None)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class _EventTable(QTableWidget):
    """The events table; review shortcuts are passed on to the panel, not used for search."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        mods = event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier
            | Qt.KeyboardModifier.AltModifier
            | Qt.KeyboardModifier.MetaModifier
        )
        key = event.key()
        if not mods and (key in LABEL_KEYS or key in NEXT_KEYS or key in PREVIOUS_KEYS):
            event.ignore()  # the panel's keyPressEvent handles it
            return
        super().keyPressEvent(event)


class ReviewWidget(QWidget):
    """Review, correct and retrain the death calls of a results folder.

    Parameters
    ----------
    napari_viewer
        The viewer holding a results folder's layers (opened with the deathtrack
        reader or the analysis panel).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.review: EventReview | None = None
        self.layer = None  # the events Points layer of the current results folder
        self._recruitment = None
        self._movie_info: tuple | None = None
        self._limits: dict[int, tuple[float, float]] = {}
        self._adding = False
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_sources)
        self.viewer.layers.events.removed.connect(self._refresh_sources)
        self._refresh_sources()

    # -- layout ---------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        top = QGridLayout()
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Results folder (its 'deaths' layer)")
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        open_button = QPushButton("Open results…")
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
        layout.addWidget(self.help)

        self.table = _EventTable(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # by time
        self.table.horizontalHeaderItem(2).setToolTip("time of death, minutes from the start")
        self.table.horizontalHeaderItem(4).setToolTip("p_necroptotic of the automatic call")
        self.table.horizontalHeaderItem(5).setToolTip("your label (reviewed_mode)")
        header = self.table.horizontalHeader()
        for c, name in enumerate(COLUMNS):
            mode = (
                QHeaderView.ResizeMode.Stretch
                if name in ("mode", "reviewed")
                else (QHeaderView.ResizeMode.ResizeToContents)
            )
            header.setSectionResizeMode(c, mode)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumHeight(170)
        self.table.itemSelectionChanged.connect(self._on_selection)
        layout.addWidget(self.table, stretch=3)

        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add missed death")
        self.add_button.setCheckable(True)
        self.add_button.setToolTip(
            "Then click the dying cell in the viewer: a new event at that place and the "
            "current frame (mode empty, reviewed as uncertain until you press A/N)"
        )
        self.add_button.toggled.connect(self._on_add_toggled)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Write the reviewed labels to events.csv")
        self.save_button.clicked.connect(self.save)
        self.retrain_button = QPushButton("Retrain and re-classify")
        self.retrain_button.setToolTip(
            "Train the classifier on your A/N labels (at least 3 of each), then re-classify "
            "every detected event; the model is saved as classifier.json in the results folder"
        )
        self.retrain_button.clicked.connect(self.retrain)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.retrain_button)
        layout.addLayout(buttons)

        opts = QHBoxLayout()
        self.advance = QCheckBox("next after label")
        self.advance.setToolTip("Select the next event after A/N/X/U")
        self.advance.setChecked(True)
        self.autosave = QCheckBox("autosave")
        self.autosave.setToolTip("Write events.csv after every label")
        self.autosave.setChecked(True)
        self.field_um = QDoubleSpinBox()
        self.field_um.setRange(10.0, 5000.0)
        self.field_um.setValue(120.0)
        self.field_um.setDecimals(0)
        self.field_um.setToolTip("Field of view the viewer zooms to around the selected event")
        self.field_um.setMinimumWidth(90)
        opts.addWidget(self.advance)
        opts.addWidget(self.autosave)
        opts.addStretch(1)
        opts.addWidget(QLabel("zoom to (µm)"))
        opts.addWidget(self.field_um)
        layout.addLayout(opts)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), facecolor=DARK)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.canvas, stretch=2)
        self.recruitment_note = QLabel("")
        self.recruitment_note.setWordWrap(True)
        layout.addWidget(self.recruitment_note)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)

    def show_message(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")

    # -- results folders -----------------------------------------------------

    def _events_layers(self) -> list:
        out = []
        for layer in self.viewer.layers:
            meta = (layer.metadata or {}).get("deathtrack") or {}
            if meta.get("kind") == "events" and meta.get("results"):
                out.append(layer)
        return out

    def _refresh_sources(self, *_: Any) -> None:
        current = self.source_combo.currentData()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for layer in self._events_layers():
            folder = layer.metadata["deathtrack"]["results"]
            if self.source_combo.findData(folder) < 0:
                self.source_combo.addItem(Path(folder).name, folder)
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

    def open_results(self, folder: str | Path) -> None:
        """Add a results folder's layers (through the reader) and review it."""
        folder = Path(folder)
        if not _layers.is_results_folder(folder):
            self.show_message(
                f"{folder}: not a deathtrack results folder (no run.json)", error=True
            )
            return
        self.viewer.open(str(folder), plugin="deathtrack")

    def _on_source_changed(self, *_: Any) -> None:
        folder = self.source_combo.currentData()
        self.layer = None
        for layer in self._events_layers():
            if layer.metadata["deathtrack"]["results"] == folder:
                self.layer = layer
        if not folder:
            self.review = None
            self._fill_table()
            return
        if self.review is not None and self.review.dirty and str(self.review.folder) != folder:
            self.show_message(
                f"Unsaved labels of {self.review.folder.name} were not written.", error=True
            )
        try:
            self.review = EventReview(folder)
        except ReviewError as err:
            self.review = None
            self.show_message(str(err), error=True)
            self._fill_table()
            return
        self._recruitment = self.review.recruitment()
        if self._recruitment is None:
            self.recruitment_note.setText(
                "No recruitment.csv in this results folder: immune recruitment was not "
                "measured (it needs an immune channel and a deathtrack version that writes "
                "recruitment.csv), so no recruitment curve is shown."
            )
        else:
            self.recruitment_note.setText("")
        self._movie_info = None
        self._fill_table()
        self._update_layer()
        n = len(self.review)
        done = sum(self.review.review_counts().values())
        self.show_message(f"{n} events, {done} reviewed. Select one to start.")

    # -- table ----------------------------------------------------------------

    def _row_cells(self, ev) -> list[_Item]:
        def num(v, fmt):
            return ("", math.inf) if _blank(v) else (fmt.format(v), float(v))

        interval = (self.review.interval_s if self.review else None) or 0
        t_min = ev.get(col.T_S)
        if _blank(t_min) and interval:
            t_min = float(ev[col.FRAME]) * interval
        t_text, t_key = num(None if _blank(t_min) else float(t_min) / 60.0, "{:.0f}")
        mode = "" if _blank(ev.get(col.MODE)) else str(ev[col.MODE])
        p_text, p_key = num(ev.get(col.P_NECROPTOTIC), "{:.2f}")
        reviewed = "" if _blank(ev.get("reviewed_mode")) else str(ev["reviewed_mode"])
        cells = [
            _Item(str(int(ev[col.EVENT_ID])), int(ev[col.EVENT_ID])),
            _Item(str(int(ev[col.FRAME])), int(ev[col.FRAME])),
            _Item(t_text, t_key),
            _Item(mode, mode or "~"),
            _Item(p_text, p_key),
            _Item(reviewed, reviewed or "~"),
        ]
        for c, call in ((3, mode), (5, reviewed)):
            if call:
                cells[c].setForeground(QColor(_layers.MODE_COLORS.get(call, "#ffffff")))
        cells[0].setData(Qt.ItemDataRole.UserRole, int(ev[col.EVENT_ID]))
        return cells

    def _fill_table(self, select: int | None = None) -> None:
        table = self.table
        table.blockSignals(True)
        sorting = table.isSortingEnabled()
        table.setSortingEnabled(False)
        table.clearContents()
        events = self.review.events if self.review is not None else []
        table.setRowCount(len(events))
        if self.review is not None:
            for r, (_, ev) in enumerate(self.review.events.iterrows()):
                for c, item in enumerate(self._row_cells(ev)):
                    table.setItem(r, c, item)
        table.setSortingEnabled(sorting)
        table.blockSignals(False)
        if select is not None:
            self.select_event(select)

    def _row_of(self, event_id: int) -> int:
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == event_id:
                return r
        return -1

    def _update_row(self, event_id: int) -> None:
        r = self._row_of(event_id)
        if r < 0 or self.review is None:
            return
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)  # keep rows where they are while labelling
        self.table.blockSignals(True)
        for c, item in enumerate(self._row_cells(self.review.event(event_id))):
            self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        self.table.setSortingEnabled(sorting)
        self.table.selectRow(self._row_of(event_id))

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

    def _on_selection(self) -> None:
        event_id = self.current_event
        if event_id is None or self.review is None:
            return
        ev = self.review.event(event_id)
        self.show_message("")
        self.jump_to(ev)
        self.draw_strip(ev)

    # -- navigation -----------------------------------------------------------

    def jump_to(self, ev) -> None:
        """Show the event's death frame, centred, at the chosen field of view."""
        px = (self.review.pixel_size_um if self.review else None) or 1.0
        coords = np.array([float(ev[col.FRAME]), float(ev[col.Y]), float(ev[col.X])])
        if self.layer is not None and self.layer in self.viewer.layers and self.layer.ndim == 3:
            world = np.asarray(self.layer.data_to_world(coords), dtype=float)
        else:
            world = coords * np.array([1.0, px, px])
        t_axis = max(self.viewer.dims.ndim - 3, 0)
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_point(t_axis, world[0])
        camera = _camera(self.viewer)
        camera.center = (float(world[1]), float(world[2]))
        canvas = getattr(self.viewer, "canvas", None)
        size = getattr(canvas, "size", None)
        if size is not None:
            camera.zoom = float(min(size)) / float(self.field_um.value())

    # -- labelling ------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        mods = event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier
            | Qt.KeyboardModifier.AltModifier
            | Qt.KeyboardModifier.MetaModifier
        )
        if mods:
            super().keyPressEvent(event)
        elif key in LABEL_KEYS:
            self.label_current(LABEL_KEYS[key])
        elif key in NEXT_KEYS:
            self.step(+1)
        elif key in PREVIOUS_KEYS:
            self.step(-1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def label_current(self, label: str) -> None:
        """Give the selected event the reviewed label ``label`` (what A/N/X/U do)."""
        event_id = self.current_event
        if self.review is None or event_id is None:
            self.show_message("Select an event in the table first.", error=True)
            return
        self.review.set_review(event_id, label, reviewer=self.reviewer.text().strip())
        self._update_row(event_id)
        self._update_layer()
        saved = self._autosave()
        if self.advance.isChecked():
            self.step(+1)
        counts = self.review.review_counts()
        self.show_message(
            f"#{event_id} reviewed as {label}{' (saved)' if saved else ''}. Reviewed: "
            + ", ".join(f"{n} {m}" for m, n in counts.items() if n)
        )

    def _autosave(self) -> bool:
        if self.autosave.isChecked() and self.review is not None:
            return self.save(quiet=True)
        return False

    def save(self, *_: Any, quiet: bool = False) -> bool:
        """Write the labels to events.csv (atomically). False on error."""
        if self.review is None:
            self.show_message("No results to save.", error=True)
            return False
        try:
            path = self.review.save()
        except OSError as err:
            self.show_message(f"Could not save {self.review.path}: {err}", error=True)
            return False
        if not quiet:
            n = sum(self.review.review_counts().values())
            self.show_message(f"Saved {path} ({n} reviewed events).")
        return True

    def _update_layer(self) -> None:
        layer = self.layer
        if self.review is None or layer is None or layer not in self.viewer.layers:
            return
        data, kwargs = _layers.events_points(
            self.review.events, pixel_size_um=self.review.pixel_size_um, ndim=layer.ndim
        )
        if len(data) != len(layer.data) or not np.allclose(data, layer.data):
            layer.data = data
        layer.features = kwargs["features"]
        if len(data):
            layer.face_color = kwargs["face_color"]
            layer.border_color = kwargs["border_color"]
            layer.border_width = kwargs["border_width"]
            layer.size = kwargs["size"]
        layer.refresh()

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
        self.select_event(new_id)
        self.table.setFocus()
        self.show_message(
            f"Added missed death #{new_id} at frame {int(round(frame))}; press A or N to say "
            "how it died (it is 'uncertain' until then)."
        )
        return new_id

    # -- retraining -----------------------------------------------------------

    def retrain(self) -> bool:
        """Retrain on the reviewed labels and re-classify every event. False on error."""
        if self.review is None:
            self.show_message("Open a results folder first.", error=True)
            return False
        try:
            result = self.review.retrain()
        except ReviewError as err:
            self.show_message(str(err), error=True)
            return False
        selected = self.current_event
        self._fill_table(select=selected)
        self._update_layer()
        self._autosave()
        self.show_message(result.summary())
        return True

    # -- crop strip -----------------------------------------------------------

    def _movie_and_channels(self):
        """The stack (from the registry) and the (label, channel index) rows of the strip."""
        if self._movie_info is not None:
            return self._movie_info
        info: tuple = (None, [])
        run = self.review.run if self.review else {}
        stack = _layers.find_stack(self.review.folder, run) if self.review else None
        if stack is not None:
            axes = ((run.get("config") or {}).get("input") or {}).get("axes")
            try:
                movie = _lazy.open_movie(stack, axes=axes).movie
            except Exception as err:  # crops are a help; the table works without them
                logger.info("crops unavailable: %s", err)
            else:
                roles = (run.get("input") or {}).get("roles") or dict(movie.roles)
                rows = [
                    (role, int(roles[role]))
                    for role in (col.ROLE_CELLS, col.ROLE_DYE, col.ROLE_CASPASE)
                    if role in roles and int(roles[role]) < movie.n_channels
                ]
                info = (movie, rows)
        self._movie_info = info
        self._limits = {}
        return info

    def _display_range(self, movie, channel: int) -> tuple[float, float]:
        """Contrast of a channel: its image layer's, when shown, else from sampled frames.

        One range for every crop, so that a dye-negative cell stays dark.
        """
        stack = str(Path(movie.path).resolve())
        for layer in self.viewer.layers:
            meta = (layer.metadata or {}).get("deathtrack") or {}
            if (
                meta.get("kind") == "image"
                and meta.get("stack") == stack
                and meta.get("channel") == channel
            ):
                return tuple(float(v) for v in layer.contrast_limits)
        if channel not in self._limits:
            self._limits[channel] = _lazy.contrast_limits(
                lambda t: movie.read(channel, t), movie.n_frames
            )
        return self._limits[channel]

    def draw_strip(self, ev) -> None:
        """Crops of the event over time (a row per channel) and its recruitment curve."""
        from matplotlib.ticker import MaxNLocator

        fig = self.figure
        fig.clear()
        movie, rows = self._movie_and_channels()
        rec = None
        if self._recruitment is not None and col.EVENT_ID in self._recruitment.columns:
            rec = self._recruitment[self._recruitment[col.EVENT_ID] == ev[col.EVENT_ID]]
        n_rows = max(len(rows), 1) + (1 if rec is not None else 0)
        heights = [1.0] * max(len(rows), 1) + ([1.3] if rec is not None else [])
        grid = fig.add_gridspec(
            n_rows,
            len(CROP_FRAMES),
            height_ratios=heights,
            hspace=0.45,
            wspace=0.05,
            left=0.11,
            right=0.99,
            top=0.84,
            bottom=0.16 if rec is not None else 0.02,
        )
        call = _layers.effective_calls(
            self.review.events.iloc[[self.review.index_of(ev[col.EVENT_ID])]]
        )[0]
        fig.suptitle(
            f"event #{int(ev[col.EVENT_ID])}  frame {int(ev[col.FRAME])}  {call or 'no call'}"
            "   (crops: frames from death)",
            color=_layers.MODE_COLORS.get(call, LIGHT),
            fontsize=9,
            y=0.995,
        )
        if movie is None:
            ax = fig.add_subplot(grid[0, :])
            ax.set_axis_off()
            ax.text(0.5, 0.5, "stack not found: no crops", color=LIGHT, ha="center", va="center")
        else:
            px = (self.review.pixel_size_um or 1.0) if self.review else 1.0
            half = max(8, int(round(CROP_HALF_UM / px)))
            for r, (role, c) in enumerate(rows):
                crops = [
                    _crop(movie, c, int(ev[col.FRAME]) + dt, ev[col.Y], ev[col.X], half)
                    for dt in CROP_FRAMES
                ]
                lo, hi = self._display_range(movie, c)
                cmap = {"dye": "magma", "caspase": "viridis"}.get(role, "gray")
                for j, (dt, crop) in enumerate(zip(CROP_FRAMES, crops)):
                    ax = fig.add_subplot(grid[r, j])
                    ax.imshow(crop, cmap=cmap, vmin=lo, vmax=max(hi, lo + 1e-6))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    for spine in ax.spines.values():
                        spine.set_color("#ffffff" if dt == 0 else "#555555")
                    if r == 0:
                        ax.set_title(f"{dt:+d}" if dt else "0", color=LIGHT, fontsize=7, pad=2)
                    if j == 0:
                        ax.set_ylabel(role, color=LIGHT, fontsize=7)
        if rec is not None:
            ax = fig.add_subplot(grid[-1, :])
            ax.set_facecolor(DARK)
            if len(rec):
                x = rec[col.T_REL_S] / 60.0 if col.T_REL_S in rec.columns else rec[col.DT]
                ax.plot(x, rec[col.N_WITHIN_R], color="#7fc97f", lw=1.5, label="within R")
                if col.N_CONTACT in rec.columns:
                    ax.plot(x, rec[col.N_CONTACT], color="#fdc086", lw=1.5, label="contact")
                ax.axvline(0, color="#ffffff", lw=0.8, ls="--")
                ax.legend(
                    fontsize=6,
                    frameon=False,
                    labelcolor=LIGHT,
                    loc="lower left",
                    bbox_to_anchor=(0.0, 0.98),
                    ncol=2,
                    borderaxespad=0.0,
                )
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no recruitment rows for this event",
                    color=LIGHT,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
            ax.set_xlabel(
                "min from death" if col.T_REL_S in rec.columns else "frames",
                color=LIGHT,
                fontsize=7,
            )
            ax.set_ylabel("immune cells", color=LIGHT, fontsize=7)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
            ax.tick_params(colors=LIGHT, labelsize=6)
            for spine in ax.spines.values():
                spine.set_color("#888888")
        self.canvas.draw_idle()


def _crop(movie, channel: int, t: int, cy: float, cx: float, half: int) -> np.ndarray:
    """A (2 half + 1)² crop of one channel at frame t centred on (cy, cx); NaN outside."""
    size = 2 * half + 1
    out = np.full((size, size), np.nan, np.float32)
    if not 0 <= t < movie.n_frames:
        return out
    image = movie.read(channel, t)
    if image.ndim == 3:  # 3D: the maximum projection
        image = image.max(axis=0)
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, image.shape[0]), min(x0 + size, image.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out
