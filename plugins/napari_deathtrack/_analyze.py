"""The analysis panel: pick a stack, check roles and calibration, run deathtrack.

The panel builds a :class:`deathtrack.config.PipelineConfig` (from the
defaults or a TOML file, with the values in the form applied through
:func:`deathtrack.config.apply_overrides`) and calls, in a napari
``thread_worker``, the functions ``deathtrack run`` calls for each stack:
:func:`deathtrack.pipeline.run_stack`, then
:func:`deathtrack.report.write_report`, holding the results folder's lock
(:func:`deathtrack.io.results_lock`) over both; it holds no analysis code. The results
folder it writes is the same as ``deathtrack run STACK --out FOLDER``,
``report.html`` included, and its layers are added in the background
(:mod:`._loader`). The classifier saved by the review panel's *Retrain* is
used for the following runs until the *classifier* field is changed.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from deathtrack import columns as col

from . import _layers, _lazy
from ._docking import raise_panel, tabify_with_siblings
from ._loader import ResultsLoader
from ._params import Param, config_value, main_parameters
from ._session import session
from ._workarounds import thaw, watch_activity_indicator

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

__all__ = ["AnalyzeWidget", "RunCancelled"]

NO_CHANNEL = "—"
ERROR_STYLE = "color: #ff8080;"
OK_STYLE = ""
#: name of the default output folder, made beside the stack
RESULTS_FOLDER = "deathtrack_results"


def default_output_dir(stack: str | Path) -> Path:
    """Where results go unless the user says: ``deathtrack_results`` beside the stack.

    Never inside an installed package (the demo movie ships inside deathtrack) nor in a
    folder the user cannot write: then ``~/deathtrack_results``.
    """
    import deathtrack

    stack = Path(stack).resolve()
    package = Path(deathtrack.__file__).resolve().parent
    parent = stack.parent
    inside_package = parent == package or package in parent.parents
    if inside_package or "site-packages" in parent.parts or not os.access(parent, os.W_OK):
        return Path.home() / RESULTS_FOLDER
    return parent / RESULTS_FOLDER


class RunCancelled(Exception):
    """Raised inside ``on_progress`` to stop a run when the user presses Cancel."""


class _ProgressRelay(QObject):
    """Carries ``on_progress`` calls from the worker thread to the panel (queued signal)."""

    progressed = Signal(str, int, int)


def _spin_for(param: Param, value: Any) -> QWidget:
    if param.kind is bool:
        w = QCheckBox()
        w.setChecked(bool(value))
        return w
    if param.kind is int:
        w = QSpinBox()
        w.setRange(int(param.minimum if param.minimum is not None else 0), 10**6)
        if param.maximum is not None:
            w.setMaximum(int(param.maximum))
        w.setValue(int(value))
    else:
        w = QDoubleSpinBox()
        w.setDecimals(3)
        lo = param.minimum if param.minimum is not None else -1e9
        hi = param.maximum if param.maximum is not None else 1e9
        w.setRange(lo, hi)
        w.setSingleStep(0.05 if hi <= 1 else 0.5)
        w.setValue(float(value))
    w.setKeyboardTracking(False)
    return w


def _spin_value(w: QWidget) -> Any:
    if isinstance(w, QCheckBox):
        return w.isChecked()
    return w.value()


def _set_spin(w: QWidget, value: Any) -> None:
    if isinstance(w, QCheckBox):
        w.setChecked(bool(value))
    elif isinstance(w, QSpinBox):
        w.setValue(int(value))
    else:
        w.setValue(float(value))


class AnalyzeWidget(QWidget):
    """Run deathtrack on a stack from napari.

    Parameters
    ----------
    napari_viewer
        The viewer the results are added to.
    """

    #: marks the plugin's panels (see :mod:`._docking`)
    deathtrack_panel = True

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from deathtrack.config import PipelineConfig

        self._tabified = False
        self.viewer = napari_viewer
        self.base_config = PipelineConfig()
        self.config_file: Path | None = None
        self.stack: Path | None = None
        self.file_calibration: dict[str, float | None] = {}
        self.worker = None
        self.last_result = None
        self._cancel = threading.Event()
        self._relay = _ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self._extra_sources: list[str] = []
        self._default_out = ""
        self.loader = ResultsLoader(napari_viewer, self)
        self.loader.failed.connect(lambda text: self.show_message(text, error=True))
        self.session = session(napari_viewer)
        self._build()
        self.session.classifier_changed.connect(self._on_classifier_changed)
        if self.session.classifier:
            self._on_classifier_changed(self.session.classifier, self.session.classifier_origin)
        self.viewer.layers.events.inserted.connect(self._refresh_sources)
        self.viewer.layers.events.removed.connect(self._refresh_sources)
        self._refresh_sources()
        watch_activity_indicator(napari_viewer)
        self.destroyed.connect(_thaw)  # nothing stays frozen when the panel is gone

    # -- layout ---------------------------------------------------------------

    def _build(self) -> None:
        # the settings scroll; Run, the progress bar and messages stay in sight below them
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.setContentsMargins(2, 2, 2, 2)
        scroll.setWidget(inner)
        outer.addWidget(scroll, stretch=1)
        self.scroll = scroll

        src = QGroupBox("Stack")
        grid = QGridLayout(src)
        self.source_combo = QComboBox()
        self.source_combo.setToolTip(
            "The stack to analyse: an image layer opened from a file, or a file chosen with Browse."
        )
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_stack)
        grid.addWidget(self.source_combo, 0, 0)
        grid.addWidget(browse, 0, 1)
        self.source_info = QLabel("Open a stack (File > Open, or Browse).")
        self.source_info.setWordWrap(True)
        grid.addWidget(self.source_info, 1, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        layout.addWidget(src)

        roles_box = QGroupBox("Channel roles")
        roles_form = QFormLayout(roles_box)
        self.role_combos: dict[str, QComboBox] = {}
        for role in col.ROLES:
            combo = QComboBox()
            combo.setToolTip(
                "cells: target-cell reporter (required); immune: immune cells (recruitment); "
                "dye: dead-cell dye; caspase: caspase-3/7 reporter; nuclei: nuclear marker"
            )
            self.role_combos[role] = combo
            roles_form.addRow(role, combo)
        layout.addWidget(roles_box)

        cal_box = QGroupBox("Calibration")
        cal_form = QFormLayout(cal_box)
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setDecimals(4)
        self.pixel_size.setRange(0.0, 1000.0)
        self.pixel_size.setSingleStep(0.01)
        self.pixel_size.setSuffix(" µm")
        self.pixel_size.setSpecialValueText("unknown")
        self.interval = QDoubleSpinBox()
        self.interval.setDecimals(2)
        self.interval.setRange(0.0, 1e6)
        self.interval.setSuffix(" s")
        self.interval.setSpecialValueText("unknown")
        self.cal_source = QLabel("")
        self.cal_source.setWordWrap(True)
        cal_form.addRow("pixel size", self.pixel_size)
        cal_form.addRow("frame interval", self.interval)
        cal_form.addRow(self.cal_source)
        layout.addWidget(cal_box)

        par_box = QGroupBox("Parameters")
        par_form = QFormLayout(par_box)
        self.params = main_parameters()
        self.param_widgets: dict[str, QWidget] = {}
        for p in self.params:
            w = _spin_for(p, config_value(self.base_config, p.key))
            w.setToolTip(f"{p.key}: {p.description}")
            self.param_widgets[p.key] = w
            label = QLabel(p.label)
            label.setToolTip(w.toolTip())
            par_form.addRow(label, w)
        self.classifier = QLineEdit()
        self.classifier.setPlaceholderText("built-in score")
        self.classifier.setMinimumWidth(140)
        self.classifier.setToolTip(
            "death.classifier: a model trained on reviewed events (the review panel's "
            "Retrain writes classifier.json into the results folder)"
        )
        clf_row = QHBoxLayout()
        clf_row.addWidget(self.classifier)
        clf_browse = QPushButton("…")
        clf_browse.setFixedWidth(28)
        clf_browse.clicked.connect(self._browse_classifier)
        clf_row.addWidget(clf_browse)
        par_form.addRow("classifier", clf_row)
        cfg_row = QHBoxLayout()
        load = QPushButton("Load TOML…")
        load.setToolTip("Start from a config file (every other parameter comes from it)")
        load.clicked.connect(self._load_config_dialog)
        save = QPushButton("Save TOML…")
        save.setToolTip("Save the config of this form, for `deathtrack run --config`")
        save.clicked.connect(self._save_config_dialog)
        cfg_row.addWidget(load)
        cfg_row.addWidget(save)
        par_form.addRow(cfg_row)
        self.config_label = QLabel("config: defaults")
        self.config_label.setWordWrap(True)
        par_form.addRow(self.config_label)
        layout.addWidget(par_box)

        out_box = QGroupBox("Output")
        out_grid = QGridLayout(out_box)
        self.out_dir = QLineEdit()
        self.out_dir.setMinimumWidth(140)
        self.out_dir.setToolTip(
            "Results folder; this stack's results go to FOLDER/<stack name>/ "
            "(the deathtrack outputs contract)"
        )
        out_browse = QPushButton("…")
        out_browse.setFixedWidth(28)
        out_browse.clicked.connect(self._browse_out)
        out_grid.addWidget(self.out_dir, 0, 0)
        out_grid.addWidget(out_browse, 0, 1)
        self.out_note = QLabel(
            "The run writes FOLDER/<stack name>/ (tables, label images, run.json, "
            "report.html) as deathtrack run does; labels from an earlier review there are kept."
        )
        self.out_note.setWordWrap(True)
        self.out_dir.textChanged.connect(self._on_out_changed)
        out_grid.addWidget(self.out_note, 1, 0, 1, 2)
        out_grid.setColumnStretch(0, 1)
        layout.addWidget(out_box)
        layout.addStretch(1)
        # the form is never squeezed: its width always fits, and at least the stack,
        # roles and calibration show before it scrolls (another dock takes the rest)
        scroll.setMinimumWidth(
            inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4
        )
        scroll.setMinimumHeight(min(inner.sizeHint().height(), 420))

        layout = outer
        run_row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._tabified:
            self._tabified = True
            tabify_with_siblings(self)

    # -- messages ------------------------------------------------------------

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Show ``text`` under the Run button (errors in red, never a traceback)."""
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else OK_STYLE)

    # -- sources -------------------------------------------------------------

    def _layer_sources(self) -> list[tuple[str, str]]:
        """(label, stack path) of image layers backed by a file, one per file."""
        seen: dict[str, str] = {}
        for layer in self.viewer.layers:
            if layer.__class__.__name__ != "Image":
                continue
            meta = (layer.metadata or {}).get("deathtrack") or {}
            path = meta.get("stack") or getattr(getattr(layer, "source", None), "path", None)
            if not path:
                continue
            path = str(Path(path).resolve())
            seen.setdefault(path, f"{Path(path).name} ({layer.name})")
        return [(label, path) for path, label in seen.items()]

    def _refresh_sources(self, *_: Any) -> None:
        current = self.source_combo.currentData()
        entries = self._layer_sources()
        paths = [p for _, p in entries]
        entries += [(Path(p).name + " (file)", p) for p in self._extra_sources if p not in paths]
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for label, path in entries:
            self.source_combo.addItem(label, path)
            self.source_combo.setItemData(
                self.source_combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole
            )
        self.source_combo.blockSignals(False)
        index = self.source_combo.findData(current) if current else -1
        if index < 0 and entries:
            index = 0
        if index >= 0:
            self.source_combo.setCurrentIndex(index)
        if self.source_combo.currentData() != current:
            self._on_source_changed()

    def _browse_stack(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Stack to analyse", "", "Stacks (*.tif *.tiff *.ome.tif *.btf);;All files (*)"
        )
        if path:
            self.set_stack(path)

    def set_stack(self, path: str | Path) -> None:
        """Choose the stack to analyse by its path (as Browse does)."""
        path = str(Path(path).resolve())
        if path not in self._extra_sources:
            self._extra_sources.append(path)
        self._refresh_sources()
        self.source_combo.setCurrentIndex(self.source_combo.findData(path))

    def _on_source_changed(self, *_: Any) -> None:
        path = self.source_combo.currentData()
        if not path:
            self.stack = None
            self.source_info.setText("Open a stack (File > Open, or Browse).")
            return
        self._load_stack_info(Path(path))

    def _load_stack_info(self, path: Path) -> None:
        from deathtrack.errors import DeathtrackError

        self.stack = path
        try:
            handle = _lazy.open_movie(path, axes=self.base_config.input.axes)
        except DeathtrackError as err:
            self.stack = None
            for combo in self.role_combos.values():
                combo.clear()
            self.source_info.setText(str(err))
            self.source_info.setStyleSheet(ERROR_STYLE)
            return
        movie = handle.movie
        self.source_info.setStyleSheet(OK_STYLE)
        self.source_info.setText(
            f"{path.name}: {movie.axes} {' × '.join(map(str, movie.shape))}, {movie.dtype}"
        )
        roles = _layers.resolve_roles(movie, handle.roles_known, self.base_config.input.channels)
        for role, combo in self.role_combos.items():
            combo.clear()
            combo.addItem(NO_CHANNEL, None)
            for c, name in enumerate(movie.channel_names):
                combo.addItem(f"{c}: {name}", c)
            combo.setCurrentIndex(roles[role] + 1 if role in roles else 0)
        cal = movie.calibration
        self.file_calibration = {"pixel_size_um": cal.pixel_size_um, "interval_s": cal.interval_s}
        inp = self.base_config.input
        self.pixel_size.setValue(inp.pixel_size_um or cal.pixel_size_um or 0.0)
        self.interval.setValue(inp.interval_s or cal.interval_s or 0.0)
        source = dict(cal.source)
        origins = {}
        for key in ("pixel_size_um", "interval_s"):
            if getattr(inp, key) is not None:
                origins[key] = "from the config file"
            elif source.get(key):
                origins[key] = f"from the file ({source[key]} metadata)"
            else:
                origins[key] = "not in the file: enter it"
        if len(set(origins.values())) == 1 and "enter" not in origins["interval_s"]:
            self.cal_source.setText(f"both {origins['interval_s']}")
        else:
            self.cal_source.setText(
                f"pixel size {origins['pixel_size_um']}; interval {origins['interval_s']}"
            )
        default_out = str(default_output_dir(path))
        if not self.out_dir.text().strip() or self.out_dir.text() == self._default_out:
            self.out_dir.setText(default_out)
        self._default_out = default_out
        if not handle.roles_known and col.ROLE_CELLS not in roles:
            self.show_message(
                "Which channel shows the target cells? Choose it under Channel roles.", error=True
            )
        else:
            self.show_message("")

    # -- config --------------------------------------------------------------

    def _on_classifier_changed(self, path: str, origin: str) -> None:
        """The review panel retrained: use its classifier from now on (until changed)."""
        self.classifier.setText(path)
        self.classifier.setToolTip(
            f"death.classifier: {path}"
            + (f" ({origin})" if origin else "")
            + "; used for every run until you change this field"
        )

    def _on_out_changed(self, text: str) -> None:
        self.out_dir.setToolTip(text)
        if text.strip() and self.stack is not None:
            self.out_note.setText(
                f"Results go to {Path(text.strip()) / _stem(self.stack)} (tables, label "
                "images, run.json, report.html), as deathtrack run writes them; labels from "
                "an earlier review there are kept."
            )

    def _browse_classifier(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Classifier model", "", "JSON (*.json)")
        if path:
            self.classifier.setText(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Results folder", self.out_dir.text())
        if path:
            self.out_dir.setText(path)

    def _load_config_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Config file", "", "TOML (*.toml)")
        if path:
            self.load_config(path)

    def load_config(self, path: str | Path) -> bool:
        """Start from a TOML config file; the form shows its values. False on error."""
        from deathtrack.config import load_config
        from deathtrack.errors import ConfigError

        try:
            cfg = load_config(path)
        except ConfigError as err:
            self.show_message(str(err), error=True)
            return False
        self.set_config(cfg)
        self.config_file = Path(path)
        self.config_label.setText(f"config: {Path(path).name} (+ the values in this form)")
        self.show_message(f"Loaded {path}")
        return True

    def set_config(self, cfg) -> None:
        """Show a PipelineConfig in the form (roles and calibration of its input section)."""
        self.base_config = cfg
        for p in self.params:
            _set_spin(self.param_widgets[p.key], config_value(cfg, p.key))
        self.classifier.setText(cfg.death.classifier or "")
        if self.stack is not None:
            self._load_stack_info(self.stack)

    def _save_config_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save config", "deathtrack.toml", "TOML (*.toml)"
        )
        if path:
            cfg = self.build_config()
            if cfg is not None:
                from deathtrack.config import save_config

                save_config(cfg, path)
                self.show_message(f"Saved {path}; run it with deathtrack run --config {path}")

    def build_config(self):
        """The PipelineConfig of the form, or None (the reason is shown in the panel)."""
        from deathtrack.config import apply_overrides
        from deathtrack.errors import ConfigError

        overrides: dict[str, Any] = {
            p.key: _spin_value(self.param_widgets[p.key]) for p in self.params
        }
        overrides["death.classifier"] = self.classifier.text().strip() or None
        channels = {
            role: combo.currentData()
            for role, combo in self.role_combos.items()
            if combo.currentData() is not None
        }
        if self.stack is not None:
            if col.ROLE_CELLS not in channels:
                self.show_message(
                    "Channel roles: choose the channel that shows the target cells (cells).",
                    error=True,
                )
                return None
            overrides["input.channels"] = channels
            for key, widget, what, unit in (
                ("pixel_size_um", self.pixel_size, "Pixel size", "µm"),
                ("interval_s", self.interval, "Frame interval", "s"),
            ):
                value = widget.value()
                if value <= 0:
                    self.show_message(
                        f"{what} unknown: the file does not say; enter it in {unit} "
                        "under Calibration.",
                        error=True,
                    )
                    return None
                from_file = self.file_calibration.get(key)
                configured = getattr(self.base_config.input, key)
                if configured is not None or from_file is None or abs(value - from_file) > 1e-9:
                    overrides[f"input.{key}"] = value
        try:
            return apply_overrides(self.base_config, overrides)
        except ConfigError as err:
            self.show_message(str(err), error=True)
            return None

    # -- running -------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def run(self) -> None:
        """Start the analysis of the chosen stack in a worker thread."""
        if self.is_running:
            return
        if self.stack is None:
            self.show_message("Choose a stack first (open it in napari, or Browse).", error=True)
            return
        cfg = self.build_config()
        if cfg is None:
            return
        out_text = self.out_dir.text().strip()
        if not out_text:
            self.show_message("Choose an output folder.", error=True)
            return
        from napari.qt.threading import create_worker

        stack, out_dir = self.stack, Path(out_text)
        self.last_result = None
        self._cancel.clear()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting")
        self.show_message(f"Analysing {stack.name} → {out_dir / _stem(stack)}")
        # user errors come back as values (shown here); a bug is shown here and by napari's
        # notification (with its traceback), not raised a second time in the main thread
        self.worker = create_worker(
            _run_job, stack, cfg, out_dir, self._on_progress_thread, _ignore_errors=True
        )
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)
        self.worker.start()

    def cancel(self) -> None:
        """Stop the running analysis at the next frame."""
        if self.is_running:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.progress.setFormat("cancelling…")

    def _on_progress_thread(self, stage: str, done: int, total: int) -> None:
        # runs in the worker thread: no widget access here, only the queued signal
        if self._cancel.is_set():
            raise RunCancelled
        self._relay.progressed.emit(stage, int(done), int(total))

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "report":
            self.progress.setRange(0, 0)
            self.progress.setFormat("report.html")
        elif stage == "segment" and total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("segment %v/%m frames")
        else:
            self.progress.setRange(0, 0)  # busy: a whole-movie stage
            self.progress.setFormat(stage)

    def _on_returned(self, outcome) -> None:
        from deathtrack.errors import DeathtrackError

        # reviewed labels of an earlier run in the same folder are carried over by
        # run_stack itself (deathtrack.review), and its warnings say how many were kept
        if outcome is _CANCELLED:
            self.show_message("Cancelled. Nothing was added; finished output files are kept.")
            return
        if isinstance(outcome, DeathtrackError):
            self.show_message(str(outcome), error=True)
            return
        self.last_result = outcome
        c = outcome.counts
        text = (
            f"Done in {outcome.timings_s.get('total', 0):.0f} s: {c.get('n_events', 0)} deaths "
            f"({c.get('n_apoptotic', 0)} apoptotic, {c.get('n_necroptotic', 0)} necroptotic, "
            f"{c.get('n_uncertain', 0)} uncertain), {c.get('n_tracks_cells', 0)} cell tracks. "
            f"Results in {outcome.out_dir}."
        )
        if outcome.warnings:
            text += "\nWarnings: " + "; ".join(outcome.warnings)
        self.show_message(text + " Adding the layers…")
        self.add_results(outcome.out_dir, on_done=lambda _: self._results_shown(text))

    def _results_shown(self, text: str) -> None:
        self.show_message(text)
        from ._keys import panel_of

        review = panel_of(self.viewer)
        if review is not None:  # the next step: review the deaths
            raise_panel(review)

    def _on_errored(self, err: Exception) -> None:
        # a bug, not a user error: napari also shows it with its traceback
        self.show_message(f"The run failed: {type(err).__name__}: {err}", error=True)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.last_result is not None else 0)
        self.progress.setFormat("done" if self.last_result is not None else "idle")

    def add_results(self, folder: str | Path, on_done=None) -> bool:
        """Add (or replace) the layers of a results folder in the background.

        The stack's layers are reused when they are shown already.
        """
        return self.loader.load(folder, on_done=on_done)


_CANCELLED = object()


def _thaw(*_: Any) -> None:
    thaw()


def _stem(path: Path) -> str:
    from deathtrack.io import stack_stem

    return stack_stem(path)


#: who holds the results folder's lock, for the message another run gets
LOCK_COMMAND = "napari deathtrack Analyze"


def _run_job(stack: Path, cfg, out_dir: Path, on_progress):
    """The worker's job: what ``deathtrack run`` does for one stack, with a cancel or a
    user error returned, not raised.

    As :func:`deathtrack.batch.process_stack`: the lock of ``out_dir`` is held over
    :func:`~deathtrack.pipeline.run_stack` and the report, so no other run (the command
    line, another viewer) writes into the folder meanwhile; a run that holds it already
    is refused with :class:`~deathtrack.errors.ResultsLockedError` naming it.
    """
    from deathtrack.errors import DeathtrackError
    from deathtrack.io import results_lock
    from deathtrack.pipeline import run_stack
    from deathtrack.report import write_report

    kept = _keep_classifier(cfg, Path(out_dir) / _stem(stack))
    try:
        with results_lock(out_dir, command=f"{LOCK_COMMAND} (pid {os.getpid()})"):
            result = run_stack(
                stack,
                cfg,
                out_dir,
                progress=False,
                on_progress=on_progress,
                lock=False,  # held here, over the report too
            )
            on_progress("report", 0, 0)
            write_report(result.out_dir, stack_path=stack)
        return result
    except RunCancelled:
        return _CANCELLED
    except DeathtrackError as err:
        return err
    finally:
        kept()


def _keep_classifier(cfg, folder: Path):
    """A classifier saved inside the results folder being rewritten survives the run.

    Retrain saves ``classifier.json`` in the results folder; a re-run into that
    folder must not lose it. Returns a function that puts it back if it is gone.
    """
    path = cfg.death.classifier
    if not path:
        return lambda: None
    path = Path(path).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        return lambda: None
    data = path.read_bytes()

    def restore() -> None:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return restore
