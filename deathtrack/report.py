"""Self-contained HTML reports of a results folder, and of a batch of them.

:func:`write_report` is a function of one stack's results folder only
(``run.json``, ``events.csv``, ``tracks.csv``, the optional
``recruitment.csv``, ``recruitment_stats.csv``, ``motility.csv`` and the
label stacks), so a report can be re-made at any time, e.g. after a person
reviewed the calls. :func:`write_batch_report` pools the folders listed in a
batch's ``summary.csv``.

A report is one HTML file: figures are PNG images embedded as data URIs,
the style sheet is inline, there are no scripts and no external resources,
so it can be mailed or archived as it is. Every text taken from the folder
is escaped. Movies are never loaded whole: gallery crops are read frame by
frame.

Examples
--------
>>> from deathtrack.report import write_batch_report, write_report
>>> write_report("results/demo")  # doctest: +SKIP
PosixPath('results/demo/report.html')
>>> write_batch_report("results")  # doctest: +SKIP
PosixPath('results/report.html')
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import __version__
from . import columns as col

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["write_batch_report", "write_report"]

REPORT_NAME = "report.html"
REVIEWED_MODE = "reviewed_mode"
NOT_DEATH = "not_death"
EXPECTED_WITHIN_R = "expected_within_r"

#: colour of each call, in every figure and in the gallery outlines (colour-blind safe)
MODE_COLORS = {
    col.APOPTOTIC: "#2b83d6",
    col.NECROPTOTIC: "#e0620d",
    col.UNCERTAIN: "#8a8a8a",
    NOT_DEATH: "#b0b0b0",
}
_MODE_LABEL = {
    col.APOPTOTIC: "apoptotic",
    col.NECROPTOTIC: "necroptotic",
    col.UNCERTAIN: "uncertain",
    NOT_DEATH: "not a death (reviewed)",
}
_IMMUNE_RGB = np.array([0.1, 0.85, 0.35])  # immune-cell outlines in the gallery
_OUTSIDE_RGB = np.array([0.33, 0.3, 0.45])  # crop pixels outside the image

#: gallery: frames relative to the death frame, half crop size, display scale
GALLERY_FRAMES_REL = (-6, -3, -1, 0, 1, 3, 8)
GALLERY_HALF_PX = 28
GALLERY_SCALE = 2
#: galleries of this many deaths or more are drawn in a worker process (joblib's loky)
GALLERY_PARALLEL_MIN_EVENTS = 40
#: pieces a large gallery is cut into for the helper processes and this one
GALLERY_PARTS = 6
N_BOOTSTRAP = 1000

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1280px;padding:12px 28px 40px;color:#1d1d1d;line-height:1.45}
h1{font-size:1.7em;margin:.3em 0 .1em}
h2{font-size:1.3em;border-bottom:2px solid #d8d8d8;padding-bottom:.15em;margin-top:1.8em}
h3{font-size:1.05em;margin:1.2em 0 .3em}
nav{font-size:.95em;margin:.4em 0 1em;padding:.4em 0;border-bottom:1px solid #e4e4e4}
nav a{margin-right:14px;color:#1f5fa8;text-decoration:none}
table{border-collapse:collapse;margin:.5em 0 .8em}
th,td{border:1px solid #d9d9d9;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f2f2f2;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:13em;background:#f7f7f7}
.note{color:#555}
.callout{background:#fff5dc;border-left:5px solid #e0a100;padding:6px 14px;margin:.8em 0}
.callout ul{margin:.2em 0}
tr.failed td{background:#fde2e2}
.status-failed{color:#b00020;font-weight:600}
.status-ok{color:#11753a;font-weight:600}
.badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:.88em}
img.fig{max-width:100%;height:auto;display:block;margin:.4em 0}
.scroll{overflow-x:auto}
table.gallery{border-collapse:separate;border-spacing:2px}
table.gallery td,table.gallery th{border:none;padding:0 1px;background:none}
table.gallery th{font-weight:normal;font-size:.8em;text-align:center;color:#444}
table.gallery td.ev{font-size:.85em;padding:4px 8px 4px 0;width:15em;border-top:1px solid #ccc}
table.gallery td.ch{font-size:.8em;color:#555;padding-right:4px;text-align:right}
table.gallery img{image-rendering:pixelated;display:block}
table.gallery tr.first td{padding-top:6px}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;border-radius:2px;
 margin:0 3px 0 8px}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.88em;color:#444}
details{margin:.6em 0}
.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.78em;color:#555;
 word-break:break-all}
td.reason{max-width:26em;overflow-wrap:anywhere}
td.stack{max-width:17em}
"""


# ---------------------------------------------------------------------------
# small helpers


def _e(value: Any) -> str:
    """Escape any value for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def _isnan(value: Any) -> bool:
    try:
        return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    except TypeError:  # pragma: no cover - exotic scalars
        return False


def _num(value: Any, digits: int = 3) -> str:
    """A number for people: ``digits`` significant digits, no exponent for ordinary sizes."""
    if _isnan(value) or value == "":
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if not math.isfinite(x):
        return _e(x)
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e9:
        return f"{int(x):,}".replace(",", "\u2009").replace("-", "−")
    if 1e-4 <= abs(x) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
        text = f"{x:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text.replace("-", "−")
    return f"{x:.{digits - 1}e}".replace("-", "−")


def _pvalue(p: Any) -> str:
    if _isnan(p):
        return "–"
    p = float(p)
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _duration(seconds: float | None) -> str:
    """``'1 h 04 min'``, ``'32 min'`` or ``'45 s'``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    sign = "−" if seconds < 0 else ""
    s = abs(seconds)
    if s < 60:
        return f"{sign}{s:.0f} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{sign}{minutes} min"
    return f"{sign}{minutes // 60} h {minutes % 60:02d} min"


def _run_dates(started: Any, finished: Any) -> str:
    """``2026-11-23 10:56 UTC, took 10 s`` from run.json's ISO times."""
    from datetime import datetime

    try:
        t0, t1 = datetime.fromisoformat(str(started)), datetime.fromisoformat(str(finished))
    except ValueError:
        return f"{_e(started or '–')} → {_e(finished or '–')}"
    zone = " UTC" if t0.utcoffset() is not None and not t0.utcoffset() else ""
    return f"{t0:%Y-%m-%d %H:%M}{zone}, took {_duration((t1 - t0).total_seconds())}"


def _signed(x: float, fmt: str = "+.0f") -> str:
    return format(x, fmt).replace("-", "−")


def _int_or_dash(value: Any) -> str:
    return "–" if _isnan(value) else str(int(float(value)))


def _badge(call: str) -> str:
    colour = MODE_COLORS.get(call, "#555")
    return (
        f'<span class="badge" style="background:{colour}">{_e(_MODE_LABEL.get(call, call))}</span>'
    )


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", numeric=()
) -> str:
    """An HTML table from already-escaped cells; columns in ``numeric`` right-aligned."""
    out = [f'<div class="scroll"><table class="{cls}">' if cls else '<div class="scroll"><table>']
    out.append("<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cells.append(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _pretty(name: str) -> str:
    """A column name as a label with its unit: ``speed_um_per_min`` -> ``speed (µm/min)``."""
    if name.startswith("n_") and len(name) > 2:
        return "number of " + name[2:].replace("_", " ")
    units = (
        ("_um_per_min", "µm/min"),
        ("_um2", "µm²"),
        ("_um", "µm"),
        ("_per_min", "per min"),
        ("_min", "min"),
        ("_s", "s"),
        ("_frames", "frames"),
        ("_px", "px"),
    )
    for suffix, unit in units:
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def _fixed_layout(
    fig: Figure,
    *,
    left: float,
    right: float,
    bottom: float,
    top: float,
    ncols: int = 1,
    nrows: int = 1,
    wgap: float = 0.0,
    hgap: float = 0.0,
) -> None:
    """Margins and gaps between panels in inches: a fixed layout, set once. Matplotlib's
    constrained layout measures every text to place the panels, ~0.5-1 s a figure, a
    fixed cost of every report (issue 16); these figures' texts are known in advance."""
    w, h = fig.get_size_inches()
    aw = (w - left - right - (ncols - 1) * wgap) / ncols
    ah = (h - bottom - top - (nrows - 1) * hgap) / nrows
    fig.subplots_adjust(
        left=left / w,
        right=1 - right / w,
        bottom=bottom / h,
        top=1 - top / h,
        wspace=wgap / aw if ncols > 1 else 0.2,
        hspace=hgap / ah if nrows > 1 else 0.2,
    )


def _fig_to_uri(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str, *, cls: str = "fig", width: int | None = None) -> str:
    size = f' width="{width}" height="{width}"' if width else ""
    return f'<img class="{cls}" alt="{_e(alt)}"{size} src="{uri}">'


def _png_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    # level 1: the gallery's many small crops encode 3x faster for ~15 % more bytes
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _write_atomic(text: str, path: Path) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    from .io import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _page(title: str, nav: Sequence[tuple[str, str]], body: Sequence[str]) -> str:
    links = "".join(f'<a href="#{_e(anchor)}">{_e(text)}</a>' for anchor, text in nav)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="deathtrack {_e(__version__)}">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head><body>",
            *body[:1],
            f"<nav>{links}</nav>",
            *body[1:],
            "</body></html>",
            "",
        ]
    )


# ---------------------------------------------------------------------------
# reading a results folder


def _read_table(folder: Path, name: str, columns: Sequence[str] | None = None):
    """``folder/name.csv`` (or ``.parquet``) as a DataFrame; ``None`` when absent.

    A 0-byte file is an empty table. With ``columns``, only those that exist are read.
    """
    from .pipeline import table_path

    path = table_path(folder, name)
    if path is None:
        return None
    if path.suffix == ".csv":
        usecols = (lambda c: c in columns) if columns is not None else None
        try:
            return pd.read_csv(path, usecols=usecols)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
    df = pd.read_parquet(path)
    return df[[c for c in df.columns if c in columns]] if columns is not None else df


def _read_run(folder: Path) -> dict:
    path = folder / "run.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; {folder} is not a finished deathtrack results folder "
            "(run `deathtrack run STACK --out DIR` first)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); re-run the stack") from None


def _calls(events: pd.DataFrame) -> pd.Series:
    """Each event's call: its ``reviewed_mode`` when a person reviewed it, else ``mode``."""
    if events.empty:
        return pd.Series([], dtype=object, index=events.index)
    mode = (
        events[col.MODE].astype(object)
        if col.MODE in events
        else pd.Series(col.UNCERTAIN, index=events.index, dtype=object)
    )
    if REVIEWED_MODE in events:
        rev = events[REVIEWED_MODE].astype(object)
        has = rev.notna() & rev.astype(str).str.strip().ne("")
        mode = mode.where(~has, rev.astype(str).str.strip())
    return mode.fillna(col.UNCERTAIN).astype(str)


@dataclass
class _Results:
    """Everything a report shows, read from one results folder."""

    folder: Path
    run: dict
    events: pd.DataFrame
    tracks: pd.DataFrame | None
    lineage: pd.DataFrame | None
    recruitment: pd.DataFrame | None
    stats: pd.DataFrame | None
    motility: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return str(self.run.get("stem") or self.folder.name)

    @property
    def calibration(self) -> dict:
        return (self.run.get("input") or {}).get("calibration") or {}

    @property
    def interval_s(self) -> float | None:
        v = self.calibration.get("interval_s")
        return float(v) if v else None

    @property
    def roles(self) -> dict:
        return (self.run.get("input") or {}).get("roles") or {}

    @property
    def n_frames(self) -> int | None:
        n = (self.run.get("input") or {}).get("n_frames") or (self.run.get("counts") or {}).get(
            "n_frames"
        )
        if n:
            return int(n)
        if self.tracks is not None and len(self.tracks):
            return int(self.tracks[col.FRAME].max()) + 1
        return None

    @property
    def has_immune(self) -> bool:
        if col.ROLE_IMMUNE in self.roles:
            return True
        tr = self.tracks
        return bool(
            tr is not None and col.POPULATION in tr and (tr[col.POPULATION] == col.IMMUNE).any()
        )

    @property
    def radius_um(self) -> float | None:
        v = ((self.run.get("config") or {}).get("recruit") or {}).get("radius_um")
        return float(v) if v else None


def _load(folder: Path) -> _Results:
    run = _read_run(folder)
    events = _read_table(folder, "events")
    if events is None:
        raise FileNotFoundError(
            f"{folder / 'events.csv'}: no such file; the run of this stack did not finish "
            f"(run.json status: {run.get('status', 'unknown')}); re-run the stack"
        )
    events = events.reset_index(drop=True)
    if not events.empty:
        for needed in (col.FRAME, col.Y, col.X):
            if needed not in events:
                raise ValueError(
                    f"{folder / 'events.csv'}: column {needed!r} is missing; the columns are "
                    f"{list(events.columns)}"
                )
        if col.EVENT_ID not in events:
            events[col.EVENT_ID] = np.arange(1, len(events) + 1)
        events = events.sort_values(col.EVENT_ID, kind="stable").reset_index(drop=True)
        events["call"] = _calls(events)
    else:
        events = events.assign(call=pd.Series([], dtype=object))
    # area_um2: a z-stack's crops project each dying cell's own z-range, from its size
    tracks = _read_table(
        folder, "tracks", columns=[col.FRAME, col.TRACK_ID, col.POPULATION, col.AREA_UM2]
    )
    res = _Results(
        folder=folder,
        run=run,
        events=events,
        tracks=tracks,
        lineage=_read_table(folder, "lineage"),
        recruitment=_read_table(folder, "recruitment"),
        stats=_read_table(folder, "recruitment_stats"),
        motility=_read_table(folder, "motility"),
    )
    if tracks is None:
        res.notes.append("tracks.csv is missing: track counts come from run.json")
    return res


# ---------------------------------------------------------------------------
# sections of a stack report


def _header(res: _Results, stack_path: Path | None) -> str:
    run, cal = res.run, res.calibration
    inp = run.get("input") or {}
    src = cal.get("source") or {}

    def calib(key: str, unit: str, extra: str = "") -> str:
        v = cal.get(key)
        if not v:
            return "not known"
        origin = f" (from {_e(src[key])})" if key in src else ""
        return f"{_num(v, 4)} {unit}{extra}{origin}"

    interval = res.interval_s
    pairs = [
        ("stack", f'<span class="mono">{_e(stack_path or run.get("stack", "–"))}</span>'),
        ("run", _run_dates(run.get("started"), run.get("finished"))),
        ("status", _e(run.get("status", "–"))),
        (
            "deathtrack version",
            f"{_e((run.get('versions') or {}).get('deathtrack', '–'))} (analysis), "
            f"{_e(__version__)} (this report)",
        ),
        ("pixel size", calib("pixel_size_um", "µm")),
        (
            "frame interval",
            calib("interval_s", "s", f" = {_num(interval / 60, 3)} min" if interval else ""),
        ),
    ]
    if cal.get("z_step_um"):
        pairs.append(("z step", calib("z_step_um", "µm")))
    shape = inp.get("shape")
    if shape:
        axes = inp.get("axes", "")
        words = {"T": "frames", "C": "channels", "Z": "z planes"}
        sizes = dict(zip(axes, shape))
        dims = " × ".join(f"{sizes[a]} {words[a]}" for a in "TCZ" if a in sizes)
        if "Y" in sizes and "X" in sizes:
            dims += f" × {sizes['Y']} × {sizes['X']} pixels"
        if not axes:
            dims = str(shape)
        fov = ""
        if cal.get("pixel_size_um") and len(shape) >= 2:
            px = float(cal["pixel_size_um"])
            fov = f"; field of view {_num(shape[-2] * px)} × {_num(shape[-1] * px)} µm"
        pairs.append(("image", _e(dims + fov)))
    n = res.n_frames
    if n and interval:
        pairs.append(("duration", f"{n} frames, {_duration((n - 1) * interval)}"))
    roles = res.roles
    names = inp.get("channel_names") or []
    if names or roles:
        by_index = {int(i): r for r, i in roles.items() if isinstance(i, (int, float))}
        chans = [
            f"{i}: {_e(nm)}" + (f" → <b>{_e(by_index[i])}</b>" if i in by_index else "")
            for i, nm in enumerate(names)
        ] or [f"{_e(r)} = {_e(i)}" for r, i in roles.items()]
        pairs.append(("channels (index: name → role)", ", ".join(chans)))
    if run.get("input_checksum"):
        pairs.append(("input checksum", f'<span class="mono">{_e(run["input_checksum"])}</span>'))
    pairs.append(("results folder", f'<span class="mono">{_e(res.folder)}</span>'))
    title = f"<h1>deathtrack report: {_e(res.stem)}</h1>"
    warnings = list(run.get("warnings") or []) + res.notes
    callout = ""
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        callout = (
            f'<div class="callout"><b>{len(warnings)} warning(s)</b> '
            f'(<a href="#warnings">details</a>):<ul>{items}</ul></div>'
        )
    return title + "\n" + _kv_table(pairs) + callout


def _counts_section(res: _Results) -> str:
    ev, counts = res.events, res.run.get("counts") or {}
    calls = ev["call"] if len(ev) else pd.Series([], dtype=object)

    def n_tracks(pop: str) -> str:
        tr = res.tracks
        if tr is not None and col.POPULATION in tr and col.TRACK_ID in tr:
            return _num(tr.loc[tr[col.POPULATION] == pop, col.TRACK_ID].nunique())
        return _num(counts.get(f"n_tracks_{pop}"))

    if res.lineage is not None and col.PARENT_ID in res.lineage:
        n_div = res.lineage[col.PARENT_ID].nunique()
    else:
        n_div = counts.get("n_divisions")
    rows = [
        ("target-cell tracks", n_tracks(col.CELLS)),
        (
            "immune-cell tracks",
            n_tracks(col.IMMUNE) if res.has_immune else "– (no immune channel)",
        ),
        ("divisions", _num(n_div)),
        ("deaths (all calls)", _num(int((calls != NOT_DEATH).sum()))),
    ]
    for mode in col.MODES:
        rows.append((f"{_badge(mode)}", _num(int((calls == mode).sum()))))
    n_not = int((calls == NOT_DEATH).sum())
    if n_not:
        rows.append((_badge(NOT_DEATH), _num(n_not)))
    out = ['<h2 id="counts">Counts</h2>']
    out.append(
        '<table class="kv">'
        + "".join(f'<tr><th>{k}</th><td class="num">{v}</td></tr>' for k, v in rows)
        + "</table>"
    )
    if REVIEWED_MODE in ev and len(ev):
        reviewed = ev[REVIEWED_MODE].notna() & ev[REVIEWED_MODE].astype(str).str.strip().ne("")
        changed = reviewed & (ev["call"] != ev.get(col.MODE, ev["call"]))
        out.append(
            _note(
                f"{int(reviewed.sum())} of {len(ev)} calls were reviewed by a person "
                f"({int(changed.sum())} changed); this report uses the reviewed call where "
                "there is one, else the automatic call."
            )
        )
    out.append(
        _note(
            "Apoptotic: the cell shrinks, blebs and fragments. Necroptotic: the cell swells, "
            "rounds up and ruptures. Uncertain: the features do not decide between the two; "
            "these are counted as deaths but left out of the comparison of modes."
        )
    )
    return "\n".join(out)


def _incidence_section(res: _Results) -> str:
    out = ['<h2 id="incidence">Deaths over time</h2>']
    ev = res.events[res.events["call"] != NOT_DEATH] if len(res.events) else res.events
    if ev.empty:
        out.append(_note("No deaths were found in this movie."))
        return "\n".join(out)
    interval = res.interval_s
    if col.T_S in ev and ev[col.T_S].notna().all():
        t = ev[col.T_S].to_numpy(float)
    elif interval:
        t = ev[col.FRAME].to_numpy(float) * interval
    else:
        t = None
    n = res.n_frames
    if t is not None:
        scale, unit = 3600.0, "h"
        t_end = max((n - 1) * interval if (n and interval) else 0.0, float(np.max(t)))
    else:
        t, scale, unit = ev[col.FRAME].to_numpy(float), 1.0, "frames"
        t_end = max(float(n - 1) if n else 0.0, float(np.max(t)))
    fig = _fig_incidence(t / scale, ev["call"].to_numpy(), t_end / scale, unit)
    out.append(_img(_fig_to_uri(fig), "cumulative number of deaths by mode over time"))
    n_start = None
    tr = res.tracks
    if tr is not None and {col.POPULATION, col.FRAME, col.TRACK_ID} <= set(tr.columns) and len(tr):
        first = tr[(tr[col.POPULATION] == col.CELLS) & (tr[col.FRAME] == tr[col.FRAME].min())]
        n_start = first[col.TRACK_ID].nunique()
    start = f" There were {n_start} target cells in the first frame." if n_start else ""
    out.append(
        _note(
            "Each step is one death, at its death frame (apoptosis: the cell has shrunk "
            "clearly below its own baseline; necroptosis: the rupture)." + start
        )
    )
    return "\n".join(out)


def _fig_incidence(t: np.ndarray, calls: np.ndarray, t_end: float, unit: str) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8.0, 3.4))
    _fixed_layout(fig, left=0.65, right=0.15, bottom=0.55, top=0.35)
    ax = fig.add_subplot()
    t_end = max(t_end, float(np.max(t)) if len(t) else 0.0, 1e-9)

    def steps(times: np.ndarray):
        times = np.sort(times)
        x = np.concatenate([[0.0], times, [t_end]])
        y = np.concatenate([[0], np.arange(1, len(times) + 1), [len(times)]])
        return x, y

    for mode in col.MODES:
        sel = t[calls == mode]
        if len(sel):
            x, y = steps(sel)
            ax.step(x, y, where="post", color=MODE_COLORS[mode], lw=2, label=f"{mode} ({len(sel)})")
    x, y = steps(t)
    ax.step(x, y, where="post", color="black", lw=1.2, ls="--", label=f"all deaths ({len(t)})")
    ax.set_xlim(0, t_end)
    ax.set_ylim(0, max(len(t), 1) * 1.08)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"time since the start of the movie ({unit})")
    ax.set_ylabel("deaths so far (cumulative)")
    ax.set_title("Cumulative number of deaths, by call", fontsize=11)
    ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.grid(alpha=0.25)
    return fig


def _curve_table(
    recruitment: pd.DataFrame, events: pd.DataFrame, key: Sequence[str], interval_s: float | None
) -> tuple[pd.DataFrame, list[str]]:
    """recruitment rows joined with each event's call; notes about rows that could not be used."""
    notes = []
    rec = recruitment.copy()
    if col.T_REL_S not in rec and col.DT in rec and interval_s:
        rec[col.T_REL_S] = rec[col.DT] * interval_s
    missing = [c for c in (*key, col.T_REL_S, col.N_WITHIN_R) if c not in rec]
    if missing:
        notes.append(f"recruitment.csv lacks the column(s) {missing}: curves not drawn")
        return pd.DataFrame(), notes
    keep = [c for c in (col.T_REL_S, col.N_WITHIN_R, col.N_CONTACT, EXPECTED_WITHIN_R) if c in rec]
    rec = rec[[*key, *keep]]
    if events.empty or any(k not in events for k in key):
        notes.append("recruitment.csv has rows but events.csv lists no deaths: curves not drawn")
        return pd.DataFrame(), notes
    calls = events[[*key, "call"]].drop_duplicates(list(key))
    merged = rec.merge(calls, on=list(key), how="left")
    unknown = merged["call"].isna()
    if unknown.any():
        ids = merged.loc[unknown, list(key)].drop_duplicates()
        notes.append(
            f"recruitment.csv has {len(ids)} event(s) that events.csv does not list; "
            "they are left out of the curves"
        )
    merged = merged[~unknown & (merged["call"] != NOT_DEATH)]
    event = merged[key[0]].astype(str)
    for k in key[1:]:  # "stack/event_id" (column-wise: a row-wise join takes ~1 s per 4000 rows)
        event = event + "/" + merged[k].astype(str)
    merged["_event"] = event
    merged[col.T_REL_S] = merged[col.T_REL_S].astype(float).round(3)
    return merged, notes


def _mean_ci(
    matrix: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOTSTRAP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over rows (events) per column, and its bootstrap 95 % CI (events resampled)."""
    finite = np.isfinite(matrix)
    vals = np.where(finite, matrix, 0.0)
    cnt = finite.sum(0)
    mean = np.full(matrix.shape[1], np.nan)
    mean[cnt > 0] = vals.sum(0)[cnt > 0] / cnt[cnt > 0]
    lo, hi = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    n = matrix.shape[0]
    if n < 2:
        return mean, lo, hi
    boots = []
    for start in range(0, n_boot, 250):  # memory: 250 × n weights at a time
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(250, n_boot - start)).astype(float)
        s, c = w @ vals, w @ finite.astype(float)
        b = np.full_like(s, np.nan)
        np.divide(s, c, out=b, where=c > 0)
        boots.append(b)
    boot = np.concatenate(boots)
    ok = np.isfinite(boot).any(0)
    if ok.any():
        lo[ok], hi[ok] = np.nanpercentile(boot[:, ok], [2.5, 97.5], axis=0)
    return mean, lo, hi


def _curve_stats(merged: pd.DataFrame, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per call: times (min), mean/CI of n_within_r and n_contact, expected, n events."""
    out = {}
    for i, mode in enumerate(col.MODES):
        sub = merged[merged["call"] == mode]
        if sub.empty:
            continue
        res: dict[str, Any] = {"n": sub["_event"].nunique()}
        for j, column in enumerate((col.N_WITHIN_R, col.N_CONTACT)):
            if column not in sub:
                continue
            m = sub.pivot_table(
                index="_event", columns=col.T_REL_S, values=column, aggfunc="mean", dropna=False
            )
            rng = np.random.default_rng([seed, i, j])
            res["t_min"] = m.columns.to_numpy(float) / 60.0
            res[column] = _mean_ci(m.to_numpy(float), rng)
        if EXPECTED_WITHIN_R in sub and sub[EXPECTED_WITHIN_R].notna().any():
            e = sub.groupby(col.T_REL_S)[EXPECTED_WITHIN_R].mean()
            res["expected"] = (e.index.to_numpy(float) / 60.0, e.to_numpy(float))
        out[mode] = res
    return out


def _fig_recruitment(stats: dict, radius_um: float | None) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = [col.N_WITHIN_R]
    if any(col.N_CONTACT in s for s in stats.values()):
        panels.append(col.N_CONTACT)
    fig = Figure(figsize=(5.2 * len(panels) + 0.6, 3.9))
    _fixed_layout(fig, left=0.8, right=0.15, bottom=1.05, top=0.35, ncols=len(panels), wgap=0.95)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    r = f"{_num(radius_um)} µm" if radius_um else "r"
    titles = {
        col.N_WITHIN_R: (f"Immune cells within {r} of the dying cell", f"immune cells within {r}"),
        col.N_CONTACT: ("Immune cells touching the dying cell", "immune cells in contact"),
    }
    any_expected = False
    for ax, panel in zip(axes, panels):
        for mode, s in stats.items():
            if panel not in s:
                continue
            t = s["t_min"]
            mean, lo, hi = s[panel]
            colour = MODE_COLORS[mode]
            ax.fill_between(t, lo, hi, color=colour, alpha=0.18, lw=0, zorder=1)
            ax.plot(t, mean, color=colour, lw=2, zorder=3)
            if panel == col.N_WITHIN_R and "expected" in s:
                te, ve = s["expected"]
                ax.plot(te, ve, color=colour, lw=1.4, ls=":", zorder=2)
                any_expected = True
        ax.axvline(0, color="black", lw=0.9, ls="--")
        ax.text(
            0.0,
            1.0,
            " death",
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=8,
        )
        ax.set_xlabel("time relative to death (min)")
        ax.set_ylabel(f"{titles[panel][1]}\n(mean per death)")
        ax.set_title(titles[panel][0], fontsize=10.5)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.25)
    handles = [
        Line2D([], [], color=MODE_COLORS[m], lw=2, label=f"{m} (n = {s['n']} deaths)")
        for m, s in stats.items()
    ]
    handles.append(Patch(color="#888", alpha=0.3, label="95 % CI (bootstrap over deaths)"))
    if any_expected:
        handles.append(
            Line2D([], [], color="#555", lw=1.4, ls=":", label="chance level (matched controls)")
        )
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=min(len(handles), 3),
        frameon=False,
    )
    return fig


def _fixed(value: Any, decimals: int = 2) -> str:
    return "–" if _isnan(value) else f"{float(value):.{decimals}f}".replace("-", "−")


def _recruitment_summary_table(merged: pd.DataFrame, r: str) -> str:
    """Per call: deaths, mean counts before and after death (per death, then averaged)."""
    rows = []
    for mode in col.MODES:
        sub = merged[merged["call"] == mode]
        if sub.empty:
            continue
        after = sub[col.T_REL_S] >= 0
        per_event_pre = sub[~after].groupby("_event")[col.N_WITHIN_R].mean()
        per_event_post = sub[after].groupby("_event")[col.N_WITHIN_R].mean()
        row = [
            _badge(mode),
            _num(sub["_event"].nunique()),
            _fixed(per_event_pre.mean()),
            _fixed(per_event_post.mean()),
        ]
        if EXPECTED_WITHIN_R in sub:
            row.append(_fixed(sub[after].groupby("_event")[EXPECTED_WITHIN_R].mean().mean()))
        if col.N_CONTACT in sub:
            row.append(_fixed(sub[after].groupby("_event")[col.N_CONTACT].mean().mean()))
        rows.append(row)
    header = ["call", "deaths", f"within {r}, before death", f"within {r}, after death"]
    if EXPECTED_WITHIN_R in merged:
        header.append("chance level, after death")
    if col.N_CONTACT in merged:
        header.append("in contact, after death")
    return _table(header, rows, numeric=range(1, len(header)))


def _recruitment_block(
    recruitment: pd.DataFrame | None,
    events: pd.DataFrame,
    key: Sequence[str],
    *,
    interval_s: float | None,
    radius_um: float | None,
    has_immune: bool,
    notes: list[str],
) -> str:
    if not has_immune:
        return _note("No immune channel: recruitment was not measured.")
    if recruitment is None:
        return _note(
            "No recruitment.csv in the results: immune-cell recruitment was not measured "
            "for this run."
        )
    if recruitment.empty:
        if events.empty:
            return _note("No deaths, so there was no recruitment to measure.")
        return _note("recruitment.csv has no rows: no death had frames to measure recruitment on.")
    merged, more = _curve_table(recruitment, events, key, interval_s)
    notes.extend(more)
    if merged.empty:
        return _note("No recruitment rows match a death in events.csv: no curves to draw.")
    stats = _curve_stats(merged)
    fig = _fig_recruitment(stats, radius_um)
    r = f"{_num(radius_um)} µm" if radius_um else "the recruitment radius r"
    contact = col.N_CONTACT in merged
    caption = (
        f"Mean number of immune cells whose centre is within {r} of each dying cell"
        + (" (left) and touching it (right)" if contact else "")
        + ", frame by frame relative to its death (0 = death frame). Shaded: 95 % "
        "confidence interval of the mean, by resampling deaths (bootstrap)."
    )
    if EXPECTED_WITHIN_R in merged and merged[EXPECTED_WITHIN_R].notna().any():
        caption += (
            " Dotted: the count expected by chance, from live control cells at the same frames."
        )
    return "\n".join(
        [
            _img(_fig_to_uri(fig), "immune-cell recruitment around deaths by call"),
            _note(caption),
            "<h3>Mean counts per death</h3>",
            _recruitment_summary_table(merged, f"{_num(radius_um)} µm" if radius_um else "r"),
            _note(
                "Averaged first over the frames of each death, then over deaths; "
                "after death includes the death frame."
            ),
        ]
    )


_METRIC_LABELS = {
    "mean_within_r_post": "immune cells within r after death (mean per frame)",
    "mean_within_r_pre": "immune cells within r before death (mean per frame)",
    "max_within_r_post": "most immune cells within r at once, after death",
    "recruitment_index": "recruitment index (observed / chance, after death)",
    "n_immune_distinct": "distinct immune cells that came within r",
    "n_immune_contact": "distinct immune cells that touched the dying cell",
    "contact_total_s": "total contact time",
    "contact_median_s": "median contact duration",
    "first_contact_s": "time from death to first contact",
    "approach_speed_um_per_min": "approach speed of contacting immune cells (µm/min)",
    "approach_chemotactic_index": "chemotactic index of the approach",
    "approach_fmi": "forward migration index of the approach",
    "arrest_on_arrival": "fraction of contacting immune cells that arrested on arrival",
}


def _ci(lo: float, hi: float, fmt=_num) -> str:
    """`` [lo, hi]``, or nothing when the interval is unknown."""
    if _isnan(lo) and _isnan(hi):
        return ""
    return f" [{fmt(lo)}, {fmt(hi)}]"


def _stats_block(
    stats: pd.DataFrame | None, *, has_immune: bool, source: str, radius_um: float | None = None
) -> str:
    if not has_immune:
        return _note("No immune channel: recruitment was not measured, so nothing to compare.")
    if stats is None:
        return _note(
            f"No {source}: recruitment of apoptotic and necroptotic deaths was not compared."
        )
    if stats.empty or "metric" not in stats:
        return _note(
            f"{source} has no rows: the comparison needs at least one apoptotic and one "
            "necroptotic death with a value."
        )
    has = set(stats.columns)

    def uniform(name: str) -> str | None:
        if name not in has:
            return None
        vals = {str(v) for v in stats[name] if not _isnan(v)}
        return vals.pop() if len(vals) == 1 else None

    test, es_name = uniform("test"), uniform("effect_size_name")
    rows = []
    sign_label = "necroptotic − apoptotic"
    for _, r in stats.iterrows():
        metric = str(r["metric"])
        scale, unit = 1.0, ""
        label = _METRIC_LABELS.get(metric)
        if metric.endswith("_s"):
            scale, unit = 1 / 60.0, " (min)"
        label = (label + unit) if label else _pretty(metric)
        if radius_um:
            label = label.replace("within r", f"within {_num(radius_um)} µm")

        def g(name: str, _r=r) -> float:
            return float(_r[name]) if name in has and not _isnan(_r[name]) else math.nan

        ma, mn, diff = g("mean_apoptotic"), g("mean_necroptotic"), g("difference")
        if math.isfinite(diff) and math.isfinite(ma) and math.isfinite(mn):
            if abs(diff - (ma - mn)) < abs(diff - (mn - ma)):
                sign_label = "apoptotic − necroptotic"
        ci = _ci(g("ci_low") * scale, g("ci_high") * scale)
        es_ci = ""
        if "effect_size_ci_low" in has:
            es_ci = _ci(g("effect_size_ci_low"), g("effect_size_ci_high"), _fixed)
        es_cell = f"<b>{_fixed(g('effect_size'))}</b>{es_ci}"
        if es_name is None and not _isnan(r.get("effect_size_name")):
            es_cell += f"<br>{_e(r['effect_size_name'])}"
        row = [
            f"{_e(label)}<br><code>{_e(metric)}</code>",
            f"{_num(g('n_apoptotic'))} / {_num(g('n_necroptotic'))}",
            _num(ma * scale),
            _num(mn * scale),
            f"<b>{_num(diff * scale)}</b>{ci}",
            es_cell,
            _pvalue(g("p_value")),
        ]
        if "p_permutation" in has:
            row.append(_pvalue(g("p_permutation")))
        if test is None and "test" in has:
            row.append(_e(r["test"]) if not _isnan(r["test"]) else "–")
        rows.append(row)
    header = [
        "measure",
        "deaths (apoptotic / necroptotic)",
        "mean, apoptotic",
        "mean, necroptotic",
        f"difference of means ({sign_label}) [95 % CI]",
        f"effect size: {_e(es_name)} [95 % CI]" if es_name else "effect size [95 % CI]",
        "p-value",
    ]
    if "p_permutation" in has:
        header.append("p-value (permutation)")
    if test is None and "test" in has:
        header.append("test")
    explain = (
        "Read the effect sizes first: the difference of means with its 95 % confidence "
        "interval (bootstrap over deaths) says how much more (or less) recruitment "
        "necroptotic deaths had than apoptotic ones; Cliff's delta is the chance that a "
        "necroptotic death scores higher than an apoptotic one minus the reverse (−1 to 1, "
        "0 = no difference). An interval that excludes 0 means a clear difference. p-values "
        "come after, for reference"
    )
    explain += f" ({test})." if test else "."
    explain += " Uncertain calls are left out."
    return "\n".join(
        [
            _table(header, rows, numeric=range(1, len(header) - (test is None and "test" in has))),
            _note(explain),
        ]
    )


def _gallery_sources(res: _Results, stack_path: Path | None, notes: list[str]):
    """The open movie (or ``None``), the channels to show and the open label stacks."""
    movie, channels = None, []
    if stack_path is None:
        notes.append("The input stack is not recorded in run.json: showing outlines only.")
    elif not Path(stack_path).exists():
        notes.append(f"The input stack {stack_path} was not found: showing outlines only.")
    else:
        try:
            from .io import open_stack

            roles = {r: i for r, i in res.roles.items() if isinstance(i, (int, str))}
            movie = open_stack(stack_path, channels=roles or None)
            channels = [c for c in (col.ROLE_CELLS, col.ROLE_DYE) if c in movie.roles]
            if movie.is_3d:
                notes.append(
                    "3D stack: each crop is the maximum projection of the dying cell's own "
                    "z-range (its centre ± its equivalent radius, the slices given beside "
                    "each death); outlines are those of the same slices, the slice nearest "
                    "the cell's centre in front."
                )
        except Exception as err:  # any unreadable stack: fall back to outlines
            notes.append(f"The input stack could not be opened ({err}): showing outlines only.")
            movie = None
    labels = {}
    try:
        import tifffile

        for pop in (col.CELLS, col.IMMUNE):
            p = res.folder / f"labels_{pop}.tif"
            if p.exists():
                labels[pop] = tifffile.TiffFile(p)
    except Exception as err:  # a broken label file: crops without outlines
        notes.append(f"The label stacks could not be read ({err}): no outlines.")
        for tif in labels.values():
            tif.close()
        labels = {}
    if col.CELLS not in labels:
        notes.append("labels_cells.tif is missing: crops have no outlines.")
    if movie is None:
        channels = ["outlines"] if col.CELLS in labels else []
    return movie, channels, labels


def _label_depth(tif) -> int:
    """Slices per frame of a label stack: Z of a (T, Z, Y, X) stack, else 1."""
    shape = tif.series[0].shape
    return int(shape[1]) if len(shape) == 4 else 1


def _read_crops(
    movie,
    channels,
    labels,
    ev: pd.DataFrame,
    frames_rel,
    half,
    n_frames,
    notes,
    z_ranges,
    frames: Collection[int] | None = None,
):
    """Crops: ``{("image", event index, channel, column): float array}`` and
    ``{("labels", event index, population, column): int array}``, of the frames in
    ``frames`` only (``None``: of every frame an event needs).

    Each needed frame is read once, one channel at a time: memory holds one
    frame and the crops, never the movie. In a z-stack, each event's crops project
    its own z-range ``z_ranges[i]`` (:func:`deathtrack.gallery.crop_image`,
    :func:`~deathtrack.gallery.crop_labels`); of a label stack, only the slices of
    those ranges are read.
    """
    from .gallery import crop_image, crop_labels

    ys, xs = ev[col.Y].to_numpy(float), ev[col.X].to_numpy(float)
    zs = (
        pd.to_numeric(ev[col.Z], errors="coerce").to_numpy(float)
        if col.Z in ev.columns
        else np.full(len(ev), np.nan)
    )
    needed: dict[int, list[tuple[int, int]]] = {}
    for i, (f0, eid) in enumerate(zip(ev[col.FRAME], ev[col.EVENT_ID])):
        if not (np.isfinite(ys[i]) and np.isfinite(xs[i])):
            notes.append(f"Event {eid} has no position: no crops.")
            continue
        for j, dt in enumerate(frames_rel):
            t = int(f0) + dt
            if 0 <= t < n_frames and (frames is None or t in frames):
                needed.setdefault(t, []).append((i, j))
    crops: dict[tuple[str, int, str, int], np.ndarray] = {}
    for t in sorted(needed):
        images = {}
        if movie is not None:
            for ch in channels:
                # once per frame, not per crop
                images[ch] = np.asarray(movie.read(ch, t)).astype(np.float32, copy=False)
        # the label slices of the events' z-ranges at frame t: (first slice, slices)
        lo = min(z_ranges[i][0] for i, _ in needed[t])
        hi = max(z_ranges[i][1] for i, _ in needed[t])
        labs = {}
        for pop, tif in labels.items():
            nz = _label_depth(tif)
            if nz == 1:
                if t < len(tif.pages):
                    labs[pop] = (0, tif.pages[t].asarray())
            elif (t + 1) * nz <= len(tif.pages):
                pages = range(t * nz + lo, t * nz + min(hi, nz))
                labs[pop] = (lo, np.stack([tif.pages[k].asarray() for k in pages]))
        for i, j in needed[t]:
            zr = z_ranges[i]
            for ch, img in images.items():
                crops["image", i, ch, j] = crop_image(img, ys[i], xs[i], half, z_range=zr)
            for pop, (off, lab) in labs.items():
                if lab.ndim == 2:
                    crops["labels", i, pop, j] = crop_labels(lab, ys[i], xs[i], half)
                else:
                    crops["labels", i, pop, j] = crop_labels(
                        lab, ys[i], xs[i], half, z_range=(zr[0] - off, zr[1] - off), z=zs[i] - off
                    )
    return crops


class _Gallery:
    """The gallery of deaths, made in two steps: the crops are read, then drawn.

    With ``workers`` helper processes (or a pool of helper threads: see
    :func:`deathtrack.pipeline._aside`), each step is cut into :data:`GALLERY_PARTS`
    pieces handed to them while the caller goes on (the report's figures): the reading
    by frames (each frame is read once, whichever deaths need it), the drawing by deaths
    in order; :meth:`html` makes here the pieces no helper has started and gathers the
    rest. The dye's display range is shared by every death, so it is set between the
    steps.
    """

    def __init__(
        self,
        res: _Results,
        stack_path: Path | None,
        *,
        frames_rel: Sequence[int] = GALLERY_FRAMES_REL,
        half: int = GALLERY_HALF_PX,
        max_events: int | None = None,
        workers=0,
    ):
        from .pipeline import _submit

        ev = res.events
        self.shown = (ev if max_events is None else ev.head(max_events)).reset_index(drop=True)
        self.notes = []
        if len(self.shown) < len(ev):
            self.notes.append(
                f"Showing the first {len(self.shown)} of {len(ev)} deaths (by event id)."
            )
        self.frames_rel, self.half, self.workers = tuple(frames_rel), half, workers
        self.interval = res.interval_s
        # in pieces handed to the helpers; this process takes the pieces none has started
        # once its figures are drawn. Read by frames: the deaths of one piece need most
        # frames of the movie, and reading a frame costs more than cutting its crops
        n_parts = GALLERY_PARTS if workers else 1
        pieces = np.array_split(np.arange(len(self.shown)), n_parts)
        self.pieces = [idx for idx in pieces if len(idx)]
        f0 = self.shown[col.FRAME].to_numpy()
        wanted = np.unique(np.add.outer(f0, np.asarray(self.frames_rel, int)))
        by_frames = [set(f.tolist()) for f in np.array_split(wanted, n_parts) if len(f)]
        self.reading = [
            _submit(workers, _gallery_crops, res, stack_path, self.shown, self.frames_rel, half, f)
            for f in by_frames  # none without deaths: nothing to read
        ]

    def html(self) -> str:
        from .pipeline import _gather, _submit

        if self.shown.empty:
            return _note("No deaths were found, so there is nothing to show.")
        read = _gather(self.reading)
        channels, has_images, has_immune, n_frames = read[0][1:5]
        # notes about the sources come once, notes about deaths in the deaths' order
        notes = list(dict.fromkeys([*self.notes, *(n for r in read for n in r[5])]))
        crops = {k: c for r in read for k, c in r[0].items()}
        if not channels:
            return _note(
                "Neither the input stack nor labels_cells.tif is available: no crops to show."
            ) + "".join(_note(n) for n in notes)
        # the dye is a yes/no readout: one contrast for every death, so bright = dye taken up
        shared = {}
        dye = [
            c[np.isfinite(c)] for k, c in crops.items() if k[0] == "image" and k[2] == col.ROLE_DYE
        ]
        dye = np.concatenate(dye) if dye else np.zeros(0)
        if dye.size:
            shared[col.ROLE_DYE] = tuple(float(v) for v in np.percentile(dye, [1, 99.9]))
        drawing = [
            _submit(
                self.workers,
                _gallery_rows,
                self.shown.iloc[idx].reset_index(drop=True),
                _crops_of(crops, idx),
                channels,
                shared,
                self.frames_rel,
                self.half,
                n_frames,
                self.interval,
            )
            for idx in self.pieces
        ]
        body = [row for rows in _gather(drawing) for row in rows]
        head = ["<tr><th></th><th></th>"]
        for dt in self.frames_rel:
            if dt == 0:
                head.append("<th>death" + ("<br>0 min" if self.interval else "") + "</th>")
            else:
                when = f"<br>{_signed(dt * self.interval / 60)} min" if self.interval else ""
                head.append(f"<th>{_signed(dt, '+d')} fr{when}</th>")
        head.append("</tr>")
        return "\n".join(
            [
                *(_note(n) for n in notes),
                f"<p>{_gallery_legend(has_images, has_immune)}</p>",
                '<div class="scroll"><table class="gallery">',
                "".join(head),
                *body,
                "</table></div>",
            ]
        )


def _crops_of(crops: dict, events: np.ndarray) -> dict:
    """The crops of the deaths at positions ``events`` (of the gallery's), keyed by their
    positions among those (what :func:`_gallery_rows` takes for those deaths alone)."""
    at = {int(i): k for k, i in enumerate(events)}
    return {(key[0], at[key[1]], *key[2:]): c for key, c in crops.items() if key[1] in at}


def _gallery_crops(
    res: _Results,
    stack_path: Path | None,
    shown: pd.DataFrame,
    frames_rel,
    half,
    frames: Collection[int] | None = None,
):
    """The crops of the deaths in ``shown`` (those of the frames in ``frames`` only;
    ``None``: all), with the channels shown, whether there are images and immune
    outlines, the number of frames and notes for the reader."""
    notes: list[str] = []
    movie, channels, labels = _gallery_sources(res, stack_path, notes)
    has_images, has_immune = movie is not None, col.IMMUNE in labels
    crops: dict = {}
    try:
        n_z = 1
        if movie is not None:
            n_frames = movie.n_frames
            n_z = int(movie.shape[2]) if movie.is_3d else 1
        elif col.CELLS in labels:
            n_z = _label_depth(labels[col.CELLS])
            n_frames = res.n_frames or len(labels[col.CELLS].pages) // n_z
        else:
            n_frames = res.n_frames
        if n_z > 1:
            from .gallery import event_z_ranges, z_range_text

            dz = res.calibration.get("z_step_um")
            z_ranges = event_z_ranges(shown, res.tracks, z_step_um=dz, n_z=n_z)
            for i, zr in enumerate(z_ranges):
                crops["z", i] = z_range_text(zr, n_z=n_z, z_step_um=dz)
        else:
            z_ranges = [(0, 1)] * len(shown)
        if channels:
            crops.update(
                _read_crops(
                    movie,
                    channels,
                    labels,
                    shown,
                    frames_rel,
                    half,
                    n_frames,
                    notes,
                    z_ranges,
                    frames,
                )
            )
    finally:
        if movie is not None:
            movie.close()
        for tif in labels.values():
            tif.close()
    return crops, channels, has_images, has_immune, n_frames, notes


def _gallery_rows(
    shown: pd.DataFrame, crops: dict, channels, shared: dict, frames_rel, half, n_frames, interval
) -> list[str]:
    """The gallery's table rows for the deaths in ``shown`` (one per death and channel)."""
    side = 2 * half + 1
    body = []
    for i, e in enumerate(shown.to_dict("records")):
        colour = np.array(_hex_rgb(MODE_COLORS.get(str(e["call"]), "#ffffff")))
        tid = e.get(col.TRACK_ID)
        tid = None if _isnan(tid) else int(tid)
        for k, ch in enumerate(channels):
            series = [crops.get(("image", i, ch, j)) for j in range(len(frames_rel))]
            if ch in shared:
                lo, hi = shared[ch]
            else:
                finite = [c[np.isfinite(c)] for c in series if c is not None]
                finite = np.concatenate(finite) if finite else np.array([])
                lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
            cells = []
            for j, dt in enumerate(frames_rel):
                rgb = _render_crop(
                    series[j],
                    crops.get(("labels", i, col.CELLS, j)),
                    crops.get(("labels", i, col.IMMUNE, j)),
                    side=side,
                    lo=float(lo),
                    hi=float(max(hi, lo + 1e-6)),
                    cmap="magma" if ch == col.ROLE_DYE else "gray",
                    track_id=tid,
                    colour=colour,
                    in_movie=0 <= int(e[col.FRAME]) + dt < n_frames,
                )
                alt = f"event {e[col.EVENT_ID]}, {ch}, frame {int(e[col.FRAME]) + dt}"
                img = _img(_png_uri(rgb), alt, cls="crop", width=side * GALLERY_SCALE)
                cells.append(f"<td>{img}</td>")
            first = ""
            if k == 0:
                label = _event_label(e, interval, crops.get(("z", i)))
                first = f'<td class="ev" rowspan="{len(channels)}">{label}</td>'
            cls = ' class="first"' if k == 0 else ""
            body.append(f'<tr{cls}>{first}<td class="ch">{_e(ch)}</td>{"".join(cells)}</tr>')
    return body


def _gallery_legend(has_images: bool, has_immune: bool) -> str:
    def swatch(colour: str, text: str, border: str = "") -> str:
        return f'<span class="swatch" style="background:{colour}{border}"></span>{_e(text)}'

    parts = [
        "Each row is one death, centred on the dying cell; columns are frames relative to "
        "its death frame. Outlines: the dying cell",
        *(swatch(MODE_COLORS[m], m) for m in col.MODES),
        swatch("#ffffff", "other target cells", ";border:1px solid #999"),
    ]
    if has_immune:
        parts.append(swatch(_rgb_hex(_IMMUNE_RGB), "immune cells"))
    parts.append(swatch(_rgb_hex(_OUTSIDE_RGB), "outside the image or the movie."))
    if has_images:
        parts.append(
            "Cells channel: contrast stretched per death (1st to 99.5th percentile). "
            "Dye channel: the same contrast for every death, so a bright dye means the "
            "cell's membrane has become permeable."
        )
    else:
        parts.append("Outlines only: the dying cell is filled in the colour of its call.")
    return " ".join(parts)


def _event_label(e: dict, interval: float | None, z_text: str | None = None) -> str:
    call = str(e["call"])
    lines = [f"<b>#{_e(e[col.EVENT_ID])}</b> {_badge(call)}"]
    p = e.get(col.P_NECROPTOTIC)
    if not _isnan(p):
        lines.append(f"p(necroptotic) = {float(p):.2f}")
    auto = e.get(col.MODE)
    if call != auto and not _isnan(auto):
        lines.append(f"automatic call: {_e(auto)}")
    when = f", at {_duration(int(e[col.FRAME]) * interval)}" if interval else ""
    lines.append(f"death: frame {int(e[col.FRAME])}{when}")
    extra = []
    if col.ONSET_FRAME in e:
        extra.append(f"onset {_int_or_dash(e[col.ONSET_FRAME])}")
    if col.DYE_FRAME in e:
        extra.append(f"dye {_int_or_dash(e[col.DYE_FRAME])}")
    if extra:
        lines.append("frames: " + ", ".join(extra))
    if col.TRACK_ID in e and not _isnan(e[col.TRACK_ID]):
        lines.append(f"track {_int_or_dash(e[col.TRACK_ID])}")
    if z_text:
        lines.append(f"crops: {_e(z_text)}")
    return "<br>".join(lines)


def _hex_rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return tuple(int(h[k : k + 2], 16) / 255 for k in (0, 2, 4))  # type: ignore[return-value]


def _rgb_hex(rgb) -> str:
    return "#" + "".join(f"{int(round(float(v) * 255)):02x}" for v in rgb)


def _inner_edges(lab: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another value (``find_boundaries(mode="inner")``,
    without its two grey-level filters: the gallery draws thousands of crops)."""
    # each pair of 4-neighbours that differ marks both (beyond the border: the same value)
    edge = np.zeros(lab.shape, bool)
    rows = lab[1:] != lab[:-1]
    edge[1:] |= rows
    edge[:-1] |= rows
    cols = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= cols
    edge[:, :-1] |= cols
    return edge & (lab != 0)


@functools.lru_cache(maxsize=8)
def _colour_table(cmap: str) -> np.ndarray:
    """(256, 3) RGB floats of a matplotlib colormap."""
    from matplotlib import colormaps

    table = colormaps[cmap](np.arange(256))[:, :3]
    table.setflags(write=False)
    return table


def _upscaled(a: np.ndarray, s: int) -> np.ndarray:
    """``a`` with every pixel repeated into an ``s`` x ``s`` block (its first two axes)."""
    return np.repeat(np.repeat(a, s, 0), s, 1)


def _render_crop(
    crop: np.ndarray | None,
    lab: np.ndarray | None,
    immune: np.ndarray | None,
    *,
    side: int,
    lo: float,
    hi: float,
    cmap: str,
    track_id: int | None,
    colour: np.ndarray,
    in_movie: bool,
) -> np.ndarray:
    """An RGB uint8 crop, upscaled by :data:`GALLERY_SCALE`, with outlines drawn."""
    s = GALLERY_SCALE
    if not in_movie:
        rgb = np.broadcast_to(_OUTSIDE_RGB, (side, side, 3)).copy()
        return _upscaled((rgb * 255).astype(np.uint8), s)
    if crop is not None:
        norm = np.clip((np.nan_to_num(crop, nan=lo) - lo) / (hi - lo), 0, 1)
        # matplotlib's own lookup (256 colours, index floor(x * 256)), from a cached table
        rgb = _colour_table(cmap)[np.minimum((norm * 256).astype(np.intp), 255)]
        outside = ~np.isfinite(crop)
    else:  # outlines only: a dark background
        rgb = np.full((side, side, 3), 0.08)
        outside = lab < 0 if lab is not None else np.zeros((side, side), bool)
        if lab is not None and track_id is not None:
            rgb[lab == track_id] = 0.45 * colour + 0.55 * rgb[lab == track_id]
    rgb[outside] = _OUTSIDE_RGB
    rgb = _upscaled(rgb, s)
    # outlines one pixel wide at the upscaled size; outside the image (< 0) is background
    # (_inner_edges keeps only object pixels, so the outlines are of objects alone)
    if lab is not None:
        lab_s = _upscaled(np.maximum(lab, 0), s)
        edges = _inner_edges(lab_s)
        others = edges & (lab_s != track_id) if track_id is not None else edges
        rgb[others] = 0.5 * rgb[others] + 0.5
        if track_id is not None:
            rgb[_inner_edges(lab_s == track_id)] = colour
    if immune is not None:
        rgb[_inner_edges(_upscaled(np.maximum(immune, 0), s))] = _IMMUNE_RGB
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _events_table(res: _Results) -> str:
    ev = res.events
    if ev.empty:
        return ""
    interval = res.interval_s
    rows = []
    for e in ev.to_dict("records"):
        t = e.get(col.T_S)
        if _isnan(t) and interval:
            t = int(e[col.FRAME]) * interval
        rows.append(
            [
                _e(e[col.EVENT_ID]),
                _int_or_dash(e.get(col.TRACK_ID)),
                _badge(str(e["call"])),
                _num(e.get(col.P_NECROPTOTIC), 2),
                _int_or_dash(e.get(col.ONSET_FRAME)),
                _int_or_dash(e[col.FRAME]),
                _duration(t) if not _isnan(t) else "–",
                _int_or_dash(e.get(col.DYE_FRAME)),
                f"{_num(e.get(col.X_UM, math.nan))}, {_num(e.get(col.Y_UM, math.nan))}",
            ]
        )
    header = [
        "event",
        "track",
        "call",
        "p(necroptotic)",
        "onset frame",
        "death frame",
        "death time",
        "dye frame",
        "position x, y (µm)",
    ]
    return "<details><summary>Table of deaths (events.csv)</summary>" + (
        _table(header, rows, numeric=(0, 1, 3, 4, 5, 6, 7)) + "</details>"
    )


#: motility.csv columns named as in deathtrack.motility.METRICS (µm, s, µm/s, radians):
#: label and factor to the units people read (minutes, µm/min, degrees)
_MOTILITY_UNITS = {
    "n_points": ("number of positions", 1.0),
    "duration": ("duration (min)", 1 / 60),
    "track_length": ("track length (µm)", 1.0),
    "displacement": ("displacement (µm)", 1.0),
    "square_displacement": ("square displacement (µm²)", 1.0),
    "max_displacement": ("maximum displacement (µm)", 1.0),
    "speed": ("speed (µm/min)", 60.0),
    "mean_turning_angle": ("mean turning angle (degrees)", 180 / math.pi),
    "overall_angle": ("overall angle (degrees)", 180 / math.pi),
}


#: motility measures a person looks at first (histograms: these, then the others)
_MOTILITY_FIRST = (
    "speed_um_per_min",
    "speed",
    "straightness",
    "arrest_coefficient",
    "displacement_um",
    "displacement",
    "mean_turning_angle",
    "duration",
    "track_length",
)


def _motility_label(name: str) -> tuple[str, float]:
    """Label with unit, and the factor from the table's units to the label's."""
    if name in _MOTILITY_UNITS:
        return _MOTILITY_UNITS[name]
    if name.endswith("_um_per_s"):
        return f"{name[: -len('_um_per_s')].replace('_', ' ')} (µm/min)", 60.0
    return _pretty(name), 1.0


def _motility_block(res: _Results) -> str:
    mot = res.motility
    if not res.has_immune:
        return _note("No immune channel: immune-cell motility was not measured.")
    if mot is None:
        return _note("No motility.csv in the results: immune-cell motility was not measured.")
    metrics = [
        c
        for c in mot.columns
        if c not in (col.TRACK_ID, col.POPULATION, col.EVENT_ID, "stack", "stem")
        and pd.api.types.is_numeric_dtype(mot[c])
        and not pd.api.types.is_bool_dtype(mot[c])
    ]
    if mot.empty or not metrics:
        return _note("motility.csv has no rows: no immune track was long enough to measure.")
    first = [m for m in _MOTILITY_FIRST if m in metrics]
    metrics = first + [m for m in metrics if m not in first]
    rows = []
    for m in metrics:
        label, factor = _motility_label(m)
        v = mot[m].to_numpy(float) * factor
        v = v[np.isfinite(v)]
        if v.size:
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            rows.append(
                [
                    f"{_e(label)}<br><code>{_e(m)}</code>",
                    _num(v.size),
                    _num(med),
                    f"{_num(q1)} – {_num(q3)}",
                    _num(v.mean()),
                    f"{_num(v.min())} – {_num(v.max())}",
                ]
            )
        else:
            rows.append([f"{_e(label)}<br><code>{_e(m)}</code>", "0", "–", "–", "–", "–"])
    n_tracks = mot[col.TRACK_ID].nunique() if col.TRACK_ID in mot else len(mot)
    out = [
        _note(f"{n_tracks} immune-cell tracks."),
        _table(
            ["measure", "tracks", "median", "middle half (25–75 %)", "mean", "range"],
            rows,
            numeric=range(1, 6),
        ),
    ]
    plotted = [m for m in metrics if np.isfinite(mot[m].to_numpy(float)).sum() > 0][:8]
    if plotted:
        out.insert(1, _img(_fig_to_uri(_fig_motility(mot, plotted)), "immune motility"))
    return "\n".join(out)


def _fig_motility(mot: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows + 0.3))
    _fixed_layout(
        fig,
        left=0.55,
        right=0.12,
        bottom=0.5,
        top=0.45,
        ncols=ncols,
        nrows=nrows,
        wgap=0.6,
        hgap=0.65,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, m in zip(axes, metrics):
        label, factor = _motility_label(m)
        v = mot[m].to_numpy(float) * factor
        v = v[np.isfinite(v)]
        bins = int(np.clip(np.sqrt(v.size) * 2, 5, 30))
        if np.ptp(v) == 0:
            bins = 1
        # one filled outline per panel, not a patch per bin (the same look, a quarter of
        # the figure's making: ~0.5 s of every report with 15 panels of 30 bins)
        ax.hist(v, bins=bins, color="#3f8f5a", alpha=0.85, histtype="stepfilled")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axvline(np.median(v), color="black", lw=1, ls="--")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("immune tracks", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle("Immune-cell tracks: distribution of each measure (dashed: median)", fontsize=10)
    return fig


def _describe(path: Sequence[str]) -> str:
    """The config field's description, from the config models (empty when not found)."""
    try:
        from .config import PipelineConfig

        model: Any = PipelineConfig
        info = None
        for key in path:
            fields = getattr(model, "model_fields", None)
            if not fields or key not in fields:
                return ""
            info = fields[key]
            model = info.annotation
        return (info.description or "") if info is not None else ""
    except Exception:  # the config models changed shape: no description
        return ""


def _is_section(path: Sequence[str]) -> bool | None:
    """Whether the config key at ``path`` is a section (a model); ``None`` when not known."""
    try:
        from pydantic import BaseModel

        from .config import PipelineConfig

        model: Any = PipelineConfig
        for key in path:
            fields = getattr(model, "model_fields", None)
            if not fields or key not in fields:
                return None
            model = fields[key].annotation
        return isinstance(model, type) and issubclass(model, BaseModel)
    except Exception:  # the config models changed shape
        return None


def _flatten(d: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every parameter; sections (config models) are opened."""
    out = []
    for k, v in d.items():
        path = (*prefix, str(k))
        section = _is_section(path)
        if isinstance(v, dict) and v and (section or (section is None and prefix == ())):
            out.extend(_flatten(v, path))
        else:
            out.append((path, v))
    return out


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) if v else "(none)"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) if v else "(none)"
    if v is None:
        return "(not set)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _parameters_block(run: dict) -> str:
    cfg = run.get("config") or {}
    if not cfg:
        return _note("run.json holds no config.")
    rows = ['<div class="scroll"><table>']
    rows.append("<tr><th>parameter</th><th>value</th><th>meaning</th></tr>")
    section = None
    for path, v in _flatten(cfg):
        if path[:-1] != section:
            section = path[:-1]
            name = "[" + ".".join(section) + "]" if section else "(top level)"
            rows.append(f'<tr><th colspan="3" class="mono">{_e(name)}</th></tr>')
        rows.append(
            f"<tr><td><code>{_e(path[-1])}</code></td><td>{_e(_value(v))}</td>"
            f'<td class="note">{_e(_describe(path))}</td></tr>'
        )
    rows.append("</table></div>")
    out = [
        _note(
            "The parameters this run used, as in run.json; the same sections and keys go in "
            "a TOML config file (--config), or on the command line as section.key=value."
        ),
        "\n".join(rows),
    ]
    extra = []
    if run.get("versions"):
        extra.append(
            "<h3>Software versions</h3>"
            + _kv_table((k, _e(v)) for k, v in (run.get("versions") or {}).items())
        )
    if run.get("timings_s"):
        extra.append(
            "<h3>Run time</h3>"
            + _kv_table(
                (k.replace("_", " "), f"{_num(v)} s")
                for k, v in (run.get("timings_s") or {}).items()
            )
        )
    if extra:
        out.append("<details><summary>Software versions and run time</summary>")
        out.extend(extra)
        out.append("</details>")
    return "\n".join(out)


def _warnings_block(warnings: Sequence[str]) -> str:
    if not warnings:
        return _note("No warnings.")
    return "<ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"


# ---------------------------------------------------------------------------
# public API


def write_report(
    stack_dir: str | Path,
    *,
    stack_path: str | Path | None = None,
    max_gallery_events: int | None = None,
) -> Path:
    """Write ``stack_dir/report.html``: the figures and tables a person reads first.

    The report is made from the results folder alone and can be re-made at any
    time (e.g. after reviewing calls: ``reviewed_mode`` wins over ``mode``).
    Sections: header (stack, run date, versions, calibration), counts, deaths
    over time by call, immune-cell recruitment curves by call, the
    necroptotic-vs-apoptotic statistics, a gallery of every death with
    outlines, immune-cell motility, the parameters used and the warnings.
    Optional inputs (``recruitment.csv``, ``recruitment_stats.csv``,
    ``motility.csv``, the input stack, the label stacks) may be missing or
    empty; the report then says so.

    Parameters
    ----------
    stack_dir
        One stack's results folder (``DIR/<stem>/``) holding ``run.json``
        and ``events.csv``.
    stack_path
        The input stack, for the gallery's image crops; defaults to
        ``run.json["stack"]``. When it does not exist, the gallery shows
        segmentation outlines only and says so.
    max_gallery_events
        Show at most this many deaths in the gallery (by event id);
        ``None`` shows every death.

    Returns
    -------
    Path of ``report.html`` (written atomically: a temporary file in the
    same folder, then renamed).

    Raises
    ------
    FileNotFoundError
        ``run.json`` or ``events.csv`` is missing (the run did not finish).
    """
    folder = Path(stack_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder")
    res = _load(folder)
    if stack_path is None and res.run.get("stack"):
        stack_path = res.run["stack"]
    stack = Path(stack_path) if stack_path is not None else None
    notes: list[str] = []
    key = [col.EVENT_ID]
    # a large gallery (seconds of crops to read, draw and encode) is made by the helper
    # processes while this one draws the figures, and by this one after them
    n_shown = len(res.events) if max_gallery_events is None else max_gallery_events
    # as many helpers as the run's frames had, so loky keeps its pool as it is; helper
    # threads if the frames were in threads (the run stays one process)
    from .pipeline import _aside, _one_blas_thread

    workers = int(((res.run.get("config") or {}).get("segment") or {}).get("workers") or 2)
    in_worker = min(n_shown, len(res.events)) >= GALLERY_PARALLEL_MIN_EVENTS
    backend = "threading" if res.run.get("frames_in") == "threads" else "loky"
    helpers = _aside(backend, workers) if in_worker and workers > 1 else 0
    gallery = _Gallery(res, stack, max_events=max_gallery_events, workers=helpers)
    # this process draws beside the helpers: one BLAS thread, as they have
    lift_blas_limit = _one_blas_thread(bool(helpers))
    try:
        body = _report_body(res, stack, gallery, key, notes)
    finally:
        lift_blas_limit()
    nav = [
        ("counts", "Counts"),
        ("incidence", "Deaths over time"),
        ("recruitment", "Recruitment"),
        ("stats", "Statistics"),
        ("gallery", "Gallery"),
        ("motility", "Motility"),
        ("parameters", "Parameters"),
        ("warnings", "Warnings"),
    ]
    text = _page(f"deathtrack report: {res.stem}", nav, body)
    return _write_atomic(text, folder / REPORT_NAME)


def _report_body(res: _Results, stack: Path | None, gallery: _Gallery, key, notes) -> list[str]:
    """The sections of a stack's report, the gallery's gathered last (its pieces are made
    by the helper processes meanwhile)."""
    body = [
        _header(res, stack),
        _counts_section(res),
        _incidence_section(res),
        '<h2 id="recruitment">Immune-cell recruitment</h2>',
        _recruitment_block(
            res.recruitment,
            res.events,
            key,
            interval_s=res.interval_s,
            radius_um=res.radius_um,
            has_immune=res.has_immune,
            notes=notes,
        ),
        '<h2 id="stats">Necroptotic vs apoptotic: statistics</h2>',
        _stats_block(
            res.stats,
            has_immune=res.has_immune,
            source="recruitment_stats.csv",
            radius_um=res.radius_um,
        ),
        '<h2 id="gallery">Gallery of deaths</h2>',
        None,  # the gallery, below
        _events_table(res),
        '<h2 id="motility">Immune-cell motility</h2>',
        _motility_block(res),
        '<h2 id="parameters">Parameters</h2>',
        _parameters_block(res.run),
        '<h2 id="warnings">Warnings</h2>',
        _warnings_block([*(res.run.get("warnings") or []), *res.notes, *notes]),
    ]
    body[body.index(None)] = gallery.html()
    return body


def _summary_rows(out_dir: Path, stack_dirs: Sequence[str | Path] | None) -> pd.DataFrame:
    """summary.csv, with a ``_dir`` column: each stack's folder (or NaN)."""
    from .io import stack_stem

    summary = _read_table(out_dir, "summary")
    if summary is None:
        dirs = (
            [Path(d) for d in stack_dirs]
            if stack_dirs is not None
            else sorted(p for p in out_dir.iterdir() if (p / "run.json").is_file())
        )
        if not dirs:
            raise FileNotFoundError(
                f"{out_dir / 'summary.csv'}: no such file, and no results folders "
                f"(with run.json) in {out_dir}; run `deathtrack run ... --out {out_dir}` first"
            )
        rows = []
        for d in dirs:
            try:
                run = _read_run(d)
                rows.append(
                    {
                        "stack": run.get("stack", ""),
                        "stem": run.get("stem", d.name),
                        "status": run.get("status", "ok"),
                        **(run.get("counts") or {}),
                    }
                )
            except (FileNotFoundError, ValueError) as err:
                rows.append({"stack": "", "stem": d.name, "status": "failed", "reason": str(err)})
        summary = pd.DataFrame(rows)
    summary = summary.reset_index(drop=True)
    if "stem" not in summary:
        summary["stem"] = [
            stack_stem(s) if isinstance(s, str) and s else f"stack {i + 1}"
            for i, s in enumerate(summary.get("stack", pd.Series([""] * len(summary))))
        ]
    if "status" not in summary:
        summary["status"] = "ok"
    if "reason" not in summary:
        summary["reason"] = ""
    # a stack that failed before it had a folder (a glob matching nothing) has no stem
    stems = summary["stem"].astype(object)
    summary["stem"] = stems.where(stems.notna(), "").astype(str)
    summary["status"] = summary["status"].fillna("unknown").astype(str)
    by_name = {}
    if stack_dirs is not None:
        by_name = {Path(d).name: Path(d) for d in stack_dirs}
    given = summary["out_dir"] if "out_dir" in summary else pd.Series([None] * len(summary))
    dirs = []
    for stem, recorded in zip(summary["stem"], given):
        candidates = [by_name.get(stem)]
        if isinstance(recorded, str) and recorded:
            candidates += [Path(recorded), out_dir / Path(recorded).name]
        if stem:
            candidates.append(out_dir / stem)
        dirs.append(next((d for d in candidates if d is not None and d.is_dir()), None))
    summary["_dir"] = dirs
    for name, d in by_name.items():  # folders given but not in summary.csv
        if name not in set(summary["stem"]) and (d / "run.json").is_file():
            run = _read_run(d)
            extra = {"stem": name, "status": run.get("status", "ok"), "reason": "", "_dir": d}
            summary = pd.concat([summary, pd.DataFrame([extra])], ignore_index=True)
    return summary


#: summary.csv columns shown first in the batch table, with their headers
_SUMMARY_LABELS = {
    "n_events": "deaths",
    "n_apoptotic": "apoptotic",
    "n_necroptotic": "necroptotic",
    "n_uncertain": "uncertain",
    "mean_within_r_post_apoptotic": "immune cells within r after death, apoptotic (mean)",
    "mean_within_r_post_necroptotic": "immune cells within r after death, necroptotic (mean)",
    "recruitment_index_apoptotic": "recruitment index, apoptotic",
    "recruitment_index_necroptotic": "recruitment index, necroptotic",
    "n_tracks_cells": "target-cell tracks",
    "n_tracks_immune": "immune-cell tracks",
    "n_divisions": "divisions",
    "n_frames": "frames",
    "skipped": "skipped (done before)",
    "seconds": "run time (s)",
}
#: summary.csv columns not worth a column in the batch table
_SUMMARY_HIDDEN = ("n_channels", "n_objects_cells", "n_objects_immune", "ctc_export", "out_dir")


def write_batch_report(out_dir: str | Path, stack_dirs: Sequence[str | Path] | None = None) -> Path:
    """Write ``out_dir/report.html`` for a batch of stacks.

    Shows a table of every stack with its status, failure reason and counts
    (failed stacks highlighted), deaths by call pooled over stacks and per
    stack, recruitment curves by call pooled over the stacks' deaths, the
    pooled statistics (``out_dir/recruitment_stats.csv``, when present) and a
    link to each stack's ``report.html``.

    Parameters
    ----------
    out_dir
        The batch results folder holding ``summary.csv`` (one row per stack:
        ``stack, stem, status, reason``, counts ...).
    stack_dirs
        The per-stack results folders; defaults to ``out_dir/<stem>`` for each
        row of ``summary.csv`` (or every sub-folder with a ``run.json`` when
        there is no ``summary.csv``).

    Returns
    -------
    Path of ``report.html`` (written atomically).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: no such batch results folder")
    summary = _summary_rows(out_dir, stack_dirs)
    notes: list[str] = []
    loaded: dict[str, _Results] = {}
    # summary.csv of deathtrack run: False for a stack analysed with another config
    pooled = summary["pooled"] if "pooled" in summary else pd.Series(True, index=summary.index)
    for stem, status, folder, in_pool in zip(
        summary["stem"], summary["status"], summary["_dir"], pooled
    ):
        if status != "ok" or folder is None:
            if status == "ok":
                notes.append(f"{stem}: status ok in summary.csv but no results folder found")
            continue
        if in_pool is False or str(in_pool) == "False":
            notes.append(
                f"{stem}: analysed with another config than the others: left out of the pooled "
                "deaths, recruitment and statistics (summary.csv, column note)"
            )
            continue
        try:
            loaded[stem] = _load(folder)
        except (OSError, ValueError) as err:
            notes.append(f"{stem}: could not read its results ({err})")

    n_ok = int((summary["status"] == "ok").sum())
    n_failed = len(summary) - n_ok
    title = f"deathtrack batch report: {out_dir.resolve().name}"
    head = [
        f"<h1>{_e(title)}</h1>",
        _kv_table(
            [
                ("results folder", f'<span class="mono">{_e(out_dir.resolve())}</span>'),
                (
                    "stacks",
                    f"{len(summary)} ({n_ok} ok, "
                    + (
                        f'<span class="status-failed">{n_failed} failed</span>)'
                        if n_failed
                        else "0 failed)"
                    ),
                ),
                ("deathtrack version", _e(__version__) + " (this report)"),
            ]
        ),
    ]
    # stacks table
    first = [c for c in _SUMMARY_LABELS if c in summary.columns]
    skip = {"stack", "stem", "status", "reason", "_dir", *_SUMMARY_HIDDEN, *first}
    extra_cols = first + [c for c in summary.columns if c not in skip]
    rows_html = []
    for row in summary.to_dict("records"):
        failed = row["status"] != "ok"
        d = row["_dir"]
        report = d / REPORT_NAME if d is not None else None
        name = f"<b>{_e(row['stem'])}</b>"
        if report is not None and report.exists():
            rel = Path(os.path.relpath(report, out_dir)).as_posix()
            name = f'<a href="{_e(urllib.parse.quote(rel))}">{name}</a>'
        elif not failed:
            name += ' <span class="note">(no report.html)</span>'
        stack_text = row.get("stack")
        if isinstance(stack_text, str) and stack_text:
            file_name = Path(stack_text).name or stack_text
            name += f'<br><span class="path" title="{_e(stack_text)}">{_e(file_name)}</span>'
        status_cls = "status-failed" if failed else "status-ok"
        reason = row.get("reason")
        cells = [
            f'<td class="stack">{name}</td>',
            f'<td class="{status_cls}">{_e(row["status"])}</td>',
            f'<td class="reason">{"" if _isnan(reason) else _e(reason)}</td>',
            *(f'<td class="num">{_num(row.get(c))}</td>' for c in extra_cols),
        ]
        rows_html.append(f'<tr class="{"failed" if failed else "ok"}">' + "".join(cells) + "</tr>")
    header = [
        "stack (click for its report)",
        "status",
        "reason",
        *(_e(_SUMMARY_LABELS.get(c, _pretty(c))) for c in extra_cols),
    ]
    stacks_table = (
        '<div class="scroll"><table><tr>'
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr>"
        + "".join(rows_html)
        + "</table></div>"
    )

    # pooled events
    pooled = []
    for stem, res in loaded.items():
        if len(res.events):
            pooled.append(res.events.assign(stem=stem))
    events = pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame()
    counts_html = [_note(f"Deaths from the {len(loaded)} stack(s) that finished.")]
    if events.empty:
        counts_html.append(_note("No deaths were found in any stack."))
    else:
        rows = []
        for mode in (*col.MODES, NOT_DEATH):
            sel = events[events["call"] == mode]
            if mode == NOT_DEATH and sel.empty:
                continue
            rows.append([_badge(mode), _num(len(sel)), _num(sel["stem"].nunique())])
        rows.append(
            [
                "<b>all deaths</b>",
                _num(int((events["call"] != NOT_DEATH).sum())),
                _num(events["stem"].nunique()),
            ]
        )
        counts_html.append(_table(["call", "deaths", "stacks"], rows, numeric=(1, 2)))
        counts_html.append(
            _img(_fig_to_uri(_fig_deaths_per_stack(events, list(loaded))), "deaths per stack")
        )

    # pooled recruitment
    recs = []
    any_immune = any(r.has_immune for r in loaded.values())
    for stem, res in loaded.items():
        if res.recruitment is not None and len(res.recruitment):
            rec = res.recruitment
            if col.T_REL_S not in rec and col.DT in rec and res.interval_s:
                rec = rec.assign(**{col.T_REL_S: rec[col.DT] * res.interval_s})
            recs.append(rec.assign(stem=stem))
    radii = {r.radius_um for r in loaded.values() if r.radius_um}
    radius = next(iter(radii)) if len(radii) == 1 else None
    if len(radii) > 1:
        notes.append(
            f"the stacks used different recruitment radii ({sorted(radii)} µm): pooled "
            "curves mix them"
        )
    if recs:
        recruitment = pd.concat(recs, ignore_index=True)
    elif any(r.recruitment is not None for r in loaded.values()):
        recruitment = pd.DataFrame()
    else:
        recruitment = None
    rec_html = _recruitment_block(
        recruitment,
        events if not events.empty else pd.DataFrame(columns=["stem", col.EVENT_ID, "call"]),
        ["stem", col.EVENT_ID],
        interval_s=None,
        radius_um=radius,
        has_immune=any_immune or not loaded,
        notes=notes,
    )
    stats_html = _stats_block(
        _read_table(out_dir, "recruitment_stats"),
        has_immune=any_immune or not loaded,
        source="recruitment_stats.csv in the batch folder",
        radius_um=radius,
    )
    warn = [f"{stem}: {w}" for stem, r in loaded.items() for w in (r.run.get("warnings") or [])]
    body = [
        "\n".join(head),
        '<h2 id="stacks">Stacks</h2>',
        stacks_table,
        '<h2 id="counts">Deaths by call, pooled</h2>',
        *counts_html,
        '<h2 id="recruitment">Immune-cell recruitment, pooled</h2>',
        _note("Every death of every finished stack counts once."),
        rec_html,
        '<h2 id="stats">Necroptotic vs apoptotic: statistics, pooled</h2>',
        stats_html,
        '<h2 id="warnings">Warnings</h2>',
        _warnings_block([*warn, *notes]),
    ]
    nav = [
        ("stacks", "Stacks"),
        ("counts", "Deaths"),
        ("recruitment", "Recruitment"),
        ("stats", "Statistics"),
        ("warnings", "Warnings"),
    ]
    return _write_atomic(_page(title, nav, body), out_dir / REPORT_NAME)


def _fig_deaths_per_stack(events: pd.DataFrame, stems: Sequence[str]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    stems = list(stems)
    height = min(max(1.6, 0.32 * len(stems) + 1.2), 30)
    fig = Figure(figsize=(8.0, height), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(stems))
    left = np.zeros(len(stems))
    for mode in col.MODES:
        n = np.array(
            [((events["stem"] == s) & (events["call"] == mode)).sum() for s in stems], float
        )
        if n.sum():
            ax.barh(y, n, left=left, color=MODE_COLORS[mode], label=mode, height=0.7)
            left += n
    ax.set_yticks(y, stems, fontsize=8 if len(stems) > 20 else 9)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("deaths")
    ax.set_title("Deaths per stack, by call", fontsize=10.5)
    fig.legend(loc="outside right upper", frameon=False, fontsize=9)
    ax.grid(axis="x", alpha=0.25)
    ax.set_axisbelow(True)
    return fig
