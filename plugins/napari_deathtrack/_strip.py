"""The review panel's crop strip and recruitment curve, drawn with Qt (no matplotlib).

:func:`compute_strip` runs in a worker thread: it reads the crops through the
plugin's frame cache (:func:`._lazy.read_frame`), scales every crop of a row
with one display range (the image layer's contrast limits, so a dye-negative
cell stays dark), tints it like its layer and returns RGB bytes. The GUI
thread only wraps those bytes in ``QImage`` objects and paints them, scaled to
the size of the widget (:class:`CropStrip`, resizable in the panel's splitter).
Crops have a fixed size in µm (:data:`CROP_UM`); the part of a crop outside
the image is drawn as background (the bottom of the display range), never
white.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from deathtrack import columns as col

from . import _lazy

__all__ = ["CROP_FRAMES", "CROP_UM", "CropStrip", "RecruitmentPlot", "StripData", "compute_strip"]

#: frames relative to the death frame shown in the crop strip
CROP_FRAMES = (-8, -4, -1, 0, 1, 4, 8)
#: side of every crop, µm (the same field whatever the pixel size)
CROP_UM = 40.0
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


def crop(frame: np.ndarray, cy: float, cx: float, half: int, fill: float) -> np.ndarray:
    """A (2 half + 1)² crop centred on (cy, cx); outside the image is ``fill``."""
    if frame.ndim == 3:  # 3D: the maximum projection
        frame = frame.max(axis=0)
    size = 2 * half + 1
    out = np.full((size, size), fill, np.float32)
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, frame.shape[0]), min(x0 + size, frame.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = frame[ys:ye, xs:xe]
    return out


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
) -> StripData:
    """Crops of one event over time (a row per channel) and its recruitment curve.

    Runs in a worker thread (reads through the frame cache; no Qt).
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
        for row in rows:
            crops: list[np.ndarray | None] = []
            for t in frames:
                if t < 0 or (n_frames is not None and t >= n_frames):
                    crops.append(None)  # before the first or after the last frame
                    continue
                frame = _lazy.read_frame(stack, row.channel, t, axes=axes)
                crops.append(to_rgb(crop(frame, cy, cx, half, row.limits[0]), row.limits, row.tint))
            data.rows.append((row.role, crops))
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
