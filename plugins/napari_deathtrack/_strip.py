"""The review panel's crop strip and recruitment curve, drawn with Qt (no matplotlib).

:func:`compute_strip` runs in a worker thread: it reads the crops through the
plugin's frame cache (:func:`._lazy.read_frame`), scales every crop of a row
with one display range (the image layer's contrast limits, so a dye-negative
cell stays dark), tints it like its layer and returns RGB bytes. The GUI
thread only wraps those bytes in ``QImage`` objects and paints them, scaled to
the size of the widget (:class:`CropStrip`, resizable in the panel's splitter).
Crops have a fixed size in µm (:data:`CROP_UM`); the part of a crop outside
the image is drawn as background (the bottom of the display range), never
white. In a z-stack, each crop is the maximum projection of the dying cell's own
z-range (its centre ± its equivalent radius; the rule and the functions are the
core's, :mod:`deathtrack.gallery`), said in the strip's title line; a last row
(:data:`XZ_ROW`) shows the cells channel from the side, depth down and X across,
over the same 40 µm in both (the maximum over the cell's own rows Y).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from deathtrack import columns as col

from . import _lazy

__all__ = [
    "CROP_FRAMES",
    "CROP_UM",
    "XZ_ROW",
    "CropStrip",
    "RecruitmentPlot",
    "StripData",
    "compute_strip",
]

#: frames relative to the death frame shown in the crop strip
CROP_FRAMES = (-8, -4, -1, 0, 1, 4, 8)
#: side of every crop, µm (the same field whatever the pixel size)
CROP_UM = 40.0
#: the strip's row of a z-stack's orthogonal views (depth down, X across)
XZ_ROW = "cells XZ"
#: layer colormaps as RGB tints of the crops
TINTS = {
    "gray": (1.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.3, 0.5, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
}
DARK = QColor("#262930")
#: colours of the recruitment curves
SERIES_COLORS = {"within R": "#7fc97f", "contact": "#fdc086"}
LIGHT = QColor("#d6d6d6")


@dataclass(frozen=True)
class StripRow:
    """One row of the strip: a channel with its display range and tint."""

    role: str
    channel: int
    limits: tuple[float, float]
    tint: str = "gray"


@dataclass
class StripData:
    """What :class:`CropStrip` and :class:`RecruitmentPlot` show for one event."""

    event_id: int
    title: str
    color: str
    frames: tuple[int, ...]  # absolute frame of each column
    headers: tuple[str, ...]  # column titles (time from death)
    rows: list[tuple[str, list[np.ndarray | None]]] = field(default_factory=list)
    message: str = ""
    curve_x: np.ndarray | None = None  # minutes (or frames) from death
    curve: dict[str, np.ndarray] = field(default_factory=dict)
    curve_unit: str = "min"
    z_text: str = ""  # a z-stack's crops: which slices they project


def crop(
    frame: np.ndarray,
    cy: float,
    cx: float,
    half: int,
    fill: float,
    z_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """A (2 half + 1)² crop centred on (cy, cx); outside the image is ``fill``. A (Z, Y, X)
    frame is projected (maximum) over the slices ``z_range`` (every slice when None):
    :func:`deathtrack.gallery.crop_image`."""
    from deathtrack.gallery import crop_image

    return crop_image(frame, cy, cx, half, fill=fill, z_range=z_range)


_sizes_lock = threading.Lock()
_sizes: dict[str, tuple[float, object]] = {}


def cell_sizes(folder: str | Path | None):
    """The target cells' ``frame, track_id, population, area_um2`` of a results folder's
    tracks table (read once per folder and file version, in the worker threads; None when
    there is none)."""
    if folder is None:
        return None
    from deathtrack.pipeline import table_path

    path = table_path(folder, "tracks")
    if path is None:
        return None
    key, stamp = str(path), path.stat().st_mtime
    with _sizes_lock:
        hit = _sizes.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    import pandas as pd

    wanted = [col.FRAME, col.TRACK_ID, col.POPULATION, col.AREA_UM2]
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        table = table[[c for c in wanted if c in table.columns]]
    else:
        table = pd.read_csv(path, usecols=lambda c: c in wanted)
    with _sizes_lock:
        _sizes.clear()  # one folder at a time is reviewed
        _sizes[key] = (stamp, table)
    return table


def to_rgb(values: np.ndarray, limits: tuple[float, float], tint: str) -> np.ndarray:
    """(H, W, 3) uint8: ``values`` scaled by ``limits`` and tinted like the layer."""
    lo, hi = float(limits[0]), float(limits[1])
    scaled = np.clip((values - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    rgb = scaled[..., None] * np.asarray(TINTS.get(tint, TINTS["gray"]), np.float32)
    return np.ascontiguousarray((rgb * 255 + 0.5).astype(np.uint8))


def compute_strip(
    *,
    event: Mapping,
    stack: str | Path | None,
    axes: str | None,
    rows: Sequence[StripRow],
    pixel_size_um: float | None,
    interval_s: float | None,
    n_frames: int | None,
    title: str,
    color: str,
    recruitment=None,
    folder: str | Path | None = None,
    z_step_um: float | None = None,
) -> StripData:
    """Crops of one event over time (a row per channel) and its recruitment curve.

    Runs in a worker thread (reads through the frame cache; no Qt). In a z-stack, the
    crops project the event's own z-range: its ``z`` (``event``), its size from the
    tracks table of ``folder``, and ``z_step_um`` (:func:`deathtrack.gallery.event_z_ranges`).
    """
    frame0 = int(event[col.FRAME])
    frames = tuple(frame0 + dt for dt in CROP_FRAMES)
    if interval_s:
        headers = tuple(
            "death" if dt == 0 else f"{dt * interval_s / 60:+.0f} min" for dt in CROP_FRAMES
        )
    else:
        headers = tuple("death" if dt == 0 else f"{dt:+d} fr" for dt in CROP_FRAMES)
    data = StripData(
        event_id=int(event[col.EVENT_ID]), title=title, color=color, frames=frames, headers=headers
    )
    if stack is None:
        data.message = "stack not found: no crops"
    else:
        px = float(pixel_size_um or 1.0)
        half = max(4, int(round(CROP_UM / px / 2)))
        if n_frames is None:
            n_frames = _lazy.open_movie(stack, axes=axes).movie.n_frames
        cy, cx = float(event[col.Y]), float(event[col.X])
        cell = None  # a z-stack's (z-range, radius µm, centre in slices) of the dying cell
        side: list[np.ndarray | None] = []  # the orthogonal (XZ) view of the cells channel
        for row in rows:
            crops: list[np.ndarray | None] = []
            for t in frames:
                if t < 0 or (n_frames is not None and t >= n_frames):
                    crops.append(None)  # before the first or after the last frame
                    if row.role == col.ROLE_CELLS:
                        side.append(None)
                    continue
                frame = _lazy.read_frame(stack, row.channel, t, axes=axes)
                if frame.ndim == 3 and cell is None:
                    cell = _cell(event, frame.shape[0], folder, z_step_um)
                    data.z_text = "crops: " + _z_text(cell[0], frame.shape[0], z_step_um)
                z_range = cell[0] if cell is not None else None
                image = crop(frame, cy, cx, half, row.limits[0], z_range=z_range)
                crops.append(to_rgb(image, row.limits, row.tint))
                if frame.ndim == 3 and row.role == col.ROLE_CELLS and z_step_um:
                    side.append(
                        to_rgb(
                            crop_xz(frame, cy, cx, half, cell, z_step_um, px, row.limits[0]),
                            row.limits,
                            row.tint,
                        )
                    )
            data.rows.append((row.role, crops))
        if any(c is not None for c in side):
            data.rows.append((XZ_ROW, side))
    if recruitment is not None and len(recruitment):
        rec = recruitment.sort_values(col.DT)
        if col.T_REL_S in rec.columns:
            data.curve_x = rec[col.T_REL_S].to_numpy(float) / 60.0
        else:
            data.curve_x = rec[col.DT].to_numpy(float)
            data.curve_unit = "frames"
        for name, column in (("within R", col.N_WITHIN_R), ("contact", col.N_CONTACT)):
            if column in rec.columns:
                data.curve[name] = rec[column].to_numpy(float)
    return data


def _cell(event: Mapping, n_z: int, folder, z_step_um) -> tuple[tuple[int, int], float, float]:
    """The dying cell's z-range, radius (µm, NaN when unknown) and centre (slices)."""
    import pandas as pd

    from deathtrack.gallery import event_radii_um, event_z, event_z_ranges

    ev = pd.DataFrame([dict(event)])
    sizes = cell_sizes(folder)
    z_range = event_z_ranges(ev, sizes, z_step_um=z_step_um, n_z=n_z)[0]
    return z_range, float(event_radii_um(ev, sizes)[0]), float(event_z(ev, z_step_um)[0])


def crop_xz(frame, cy, cx, half, cell, z_step_um, px, fill) -> np.ndarray:
    """The XZ view of a (Z, Y, X) frame around the dying cell, over its own y-range
    (:func:`deathtrack.gallery.crop_xz`; a section through its centre without a size)."""
    from deathtrack.gallery import crop_xz as core_crop_xz

    radius = cell[1] if cell is not None and np.isfinite(cell[1]) else 0.0
    return core_crop_xz(
        frame,
        cy,
        cx,
        half,
        z=cell[2] if cell is not None else None,
        y_half_px=radius / px,
        z_step_um=z_step_um,
        pixel_size_um=px,
        fill=fill,
    )


def _z_text(z_range: tuple[int, int], n_z: int, z_step_um) -> str:
    from deathtrack.gallery import z_range_text

    return z_range_text(z_range, n_z=n_z, z_step_um=z_step_um)


def strip_layout(
    n_frames: int, n_rows: int, width: float, height: float, header: float, gap: float
) -> tuple[float, int]:
    """Side of the crops and crops per line that make them largest in ``width × height``.

    Each channel's crops wrap onto more lines when the strip is tall rather than wide
    (drag the splitter: the crops grow).
    """
    best = (0.0, n_frames)
    for per_line in range(n_frames, 0, -1):
        lines = -(-n_frames // per_line) * n_rows
        side = min(
            (width - gap * (per_line - 1)) / per_line,
            (height - lines * header - gap * (lines - 1)) / lines,
        )
        if side > best[0] + 0.5:
            best = (side, per_line)
    return max(best[0], 8.0), best[1]


def _qimage(rgb: np.ndarray) -> QImage:
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class CropStrip(QWidget):
    """Crops of one event: a row per channel, a column per time from death.

    Scales with the widget (put it in a splitter to resize it). Clicking a crop
    emits :attr:`frame_clicked` with its frame. Keys are left to the viewer.
    """

    frame_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: StripData | None = None
        self._images: list[tuple[str, list[QImage | None]]] = []
        self.setMinimumHeight(200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setToolTip("Crops of the selected death over time; click one to show its frame")
        self._cells: list[tuple[QRectF, int]] = []

    def set_data(self, data: StripData | None) -> None:
        self.data = data
        self._images = []
        if data is not None:
            for role, crops in data.rows:
                self._images.append((role, [None if c is None else _qimage(c) for c in crops]))
        self.update()

    def _font(self, pt: float, bold: bool = False) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(pt)
        font.setBold(bold)
        return font

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), DARK)
        self._cells = []
        data = self.data
        if data is None:
            painter.setPen(LIGHT)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Select a death")
            return
        w, h = self.width(), self.height()
        title_h, header_h, label_w, gap = 22, 18, 58, 3
        painter.setFont(self._font(10.5, bold=True))
        painter.setPen(QColor(data.color))
        painter.drawText(QRectF(6, 2, w - 12, title_h), Qt.AlignmentFlag.AlignVCenter, data.title)
        if data.z_text:  # a z-stack: the slices the crops project
            painter.setFont(self._font(9.0))
            painter.setPen(LIGHT)
            painter.drawText(
                QRectF(6, 2, w - 12, title_h),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                data.z_text,
            )
        if not self._images:
            painter.setPen(LIGHT)
            painter.drawText(
                QRectF(0, title_h, w, h - title_h),
                Qt.AlignmentFlag.AlignCenter,
                data.message or "no crops",
            )
            return
        side, per_line = strip_layout(
            len(data.frames), len(self._images), w - label_w - 6, h - title_h - 4, header_h, gap
        )
        lines = -(-len(data.frames) // per_line)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for r, (role, images) in enumerate(self._images):
            y_role = title_h + r * lines * (side + header_h + gap)
            painter.setPen(LIGHT)
            painter.setFont(self._font(9.5))
            painter.drawText(
                QRectF(
                    0, y_role + header_h, label_w - 4, lines * (side + header_h + gap) - header_h
                ),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                role,
            )
            painter.setFont(self._font(9.0))
            for j, image in enumerate(images):
                line, col_ = divmod(j, per_line)
                x = label_w + col_ * (side + gap)
                y = y_role + line * (side + header_h + gap)
                painter.setPen(QColor("#ffffff") if CROP_FRAMES[j] == 0 else LIGHT)
                painter.drawText(
                    QRectF(x - gap, y, side + 2 * gap, header_h),
                    Qt.AlignmentFlag.AlignCenter,
                    data.headers[j],
                )
                rect = QRectF(x, y + header_h, side, side)
                self._cells.append((rect, data.frames[j]))
                if image is None:
                    painter.fillRect(rect, QColor("#1b1d22"))
                    painter.setPen(QColor("#555555"))
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "—")
                else:
                    painter.drawImage(rect, image)
                if CROP_FRAMES[j] == 0:
                    painter.setPen(QPen(QColor(data.color), 2))
                    painter.drawRect(rect.adjusted(1, 1, -1, -1))

    def mousePressEvent(self, event) -> None:
        pos = event.position() if hasattr(event, "position") else QPointF(event.pos())
        for rect, frame in self._cells:
            if rect.contains(pos):
                self.frame_clicked.emit(int(frame))
                break
        super().mousePressEvent(event)

    def keyPressEvent(self, event) -> None:
        event.ignore()  # the viewer's review keys handle it (napari's main window)


class RecruitmentPlot(QWidget):
    """Immune cells within R and in contact over time from death (QPainter lines)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: StripData | None = None
        self.note = ""
        self.setMinimumHeight(90)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_data(self, data: StripData | None, note: str = "") -> None:
        self.data, self.note = data, note
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.fillRect(self.rect(), DARK)
        data = self.data
        font = QFont(self.font())
        font.setPointSizeF(9.0)
        painter.setFont(font)
        if data is None or data.curve_x is None or not data.curve:
            painter.setPen(LIGHT)
            text = self.note or ("" if data is None else "no recruitment rows for this event")
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text
            )
            return
        left, right, top, bottom = 40, 10, 18, 22
        w, h = self.width() - left - right, self.height() - top - bottom
        if w < 20 or h < 20:
            return
        x = data.curve_x
        ymax = max(1.0, max(float(np.nanmax(v)) for v in data.curve.values() if len(v)))
        xmin, xmax = float(np.nanmin(x)), float(np.nanmax(x))
        if xmax <= xmin:
            xmax = xmin + 1

        def px(xv, yv):
            return QPointF(left + (xv - xmin) / (xmax - xmin) * w, top + h - yv / ymax * h)

        painter.setPen(QPen(QColor("#888888"), 1))
        painter.drawRect(QRectF(left, top, w, h))
        # y ticks: 0 and the maximum (integers: counts of cells)
        painter.setPen(LIGHT)
        for yv in sorted({0, int(np.ceil(ymax / 2)), int(ymax)}):
            p = px(xmin, yv)
            painter.drawText(
                QRectF(0, p.y() - 8, left - 4, 16),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                str(yv),
            )
        for xv in (xmin, 0.0, xmax):
            if xmin <= xv <= xmax:
                p = px(xv, 0)
                # the end ticks stay inside the widget
                tick_x = min(max(p.x() - 30, 2.0), self.width() - 62.0)
                painter.drawText(
                    QRectF(tick_x, top + h + 2, 60, 16),
                    Qt.AlignmentFlag.AlignCenter,
                    f"{xv:+.0f}" if xv else "0",
                )
        # the unit between the "0" and the last tick, clear of both
        x0, x1 = px(max(0.0, xmin), 0).x() + 20, px(xmax, 0).x() - 30
        painter.drawText(
            QRectF(x0, top + h + 2, max(x1 - x0, 10), 16),
            Qt.AlignmentFlag.AlignCenter,
            f"{data.curve_unit} from death",
        )
        # death line
        painter.setPen(QPen(QColor("#ffffff"), 1, Qt.PenStyle.DashLine))
        painter.drawLine(px(0.0, 0), px(0.0, ymax))
        legend_x = left + 4
        for name, values in data.curve.items():
            color = QColor(SERIES_COLORS.get(name, "#d6d6d6"))
            path = QPainterPath()
            ok = np.isfinite(values)
            first = True
            for xv, yv in zip(x[ok], values[ok]):
                p = px(float(xv), float(yv))
                if first:
                    path.moveTo(p)
                    first = False
                else:
                    path.lineTo(p)
            painter.setPen(QPen(color, 2))
            painter.drawPath(path)
            painter.drawText(
                QRectF(legend_x, 0, 120, top), Qt.AlignmentFlag.AlignVCenter, f"— {name}"
            )
            legend_x += 90
        painter.setPen(LIGHT)
        painter.drawText(
            QRectF(left, 0, w, top),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            "immune cells",
        )
