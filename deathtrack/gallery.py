"""Event galleries: crops over time around each death, as a person reviews them.

Examples
--------
>>> from deathtrack.io import open_stack
>>> import pandas as pd
>>> with open_stack("sample_data/demo.ome.tif") as movie:  # doctest: +SKIP
...     events = pd.read_csv("sample_data/demo_truth/events.csv")
...     event_gallery(movie, events, "gallery.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as col

__all__ = ["event_gallery"]


def _crop(image: np.ndarray, cy: float, cx: float, half: int) -> np.ndarray:
    """A (2 half + 1)² crop centred on (cy, cx), padded with NaN outside the image."""
    out = np.full((2 * half + 1, 2 * half + 1), np.nan, np.float32)
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + 2 * half + 1, image.shape[0]), min(x0 + 2 * half + 1, image.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out


def _fmt(name: str, value) -> str:
    if name == col.MODE:
        return str(value)
    if isinstance(value, float):
        return f"{name} {value:.2f}" if not value.is_integer() else f"{name} {int(value)}"
    return f"{name} {value}"


def event_gallery(
    movie,
    events: pd.DataFrame,
    out_path: str | Path,
    *,
    channels: Sequence[str] = (col.ROLE_CELLS, col.ROLE_DYE),
    frames_rel: Sequence[int] = (-6, -3, -1, 0, 1, 3, 8),
    half_size_px: int = 28,
    title_columns: Sequence[str] = (col.MODE,),
    max_events: int = 40,
) -> Path:
    """Save a PNG with one row per event and one column per (channel, relative frame).

    Parameters
    ----------
    movie
        An open :class:`deathtrack.io.Movie`.
    events
        ``event_id, frame, y, x`` and the ``title_columns`` (e.g. ``mode``,
        ``p_necroptotic``) shown in each row's title.
    out_path
        PNG path.
    channels
        Roles (or names) to show; roles the movie lacks are skipped.
    frames_rel
        Frames relative to each event's ``frame``; frames outside the movie are blank.
    half_size_px
        Half the crop size in pixels.

    Returns
    -------
    Path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in channels if c in movie.roles or c in movie.channel_names]
    ev = events.head(max_events).reset_index(drop=True)
    n_rows = max(len(ev), 1)
    n_cols = len(shown) * len(frames_rel)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.45 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if ev.empty:
        axes[0, 0].set_title("no events")
    for i, e in ev.iterrows():
        for k, ch in enumerate(shown):
            crops = []
            for dt in frames_rel:
                t = int(e[col.FRAME]) + dt
                if 0 <= t < movie.n_frames:
                    crops.append(
                        _crop(
                            movie.read(ch, t).astype(np.float32), e[col.Y], e[col.X], half_size_px
                        )
                    )
                else:
                    crops.append(np.full((2 * half_size_px + 1,) * 2, np.nan, np.float32))
            stack = np.stack(crops)
            finite = stack[np.isfinite(stack)]
            lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0, 1)
            for j, (dt, crop) in enumerate(zip(frames_rel, crops)):
                ax = axes[i, k * len(frames_rel) + j]
                cmap = plt.get_cmap("magma" if ch == col.ROLE_DYE else "gray").copy()
                cmap.set_bad("#3a6ea5")  # outside the image (or NaN): blue, not black
                ax.imshow(np.ma.masked_invalid(crop), cmap=cmap, vmin=lo, vmax=max(hi, lo + 1e-6))
                if i == 0:
                    ax.set_title(f"{ch} {dt:+d}", fontsize=7)
        label = "\n".join(_fmt(c, e[c]) for c in title_columns if c in e)
        axes[i, 0].set_ylabel(
            f"#{e.get(col.EVENT_ID, i + 1)} {label}\nframe {int(e[col.FRAME])}", fontsize=7
        )
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
