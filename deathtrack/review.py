"""Reviewed labels: what a person decided about each event, kept across re-runs.

A reviewer's label lives in three columns of ``events.csv`` —
``reviewed_mode`` (``apoptotic``, ``necroptotic``, ``uncertain`` or
``not_death``), ``reviewer`` and ``reviewed_at`` — beside, never instead of,
the automatic ``mode`` and ``p_necroptotic``. When the pipeline runs again
into a folder whose events were reviewed (other parameters, a retrained
classifier), :func:`carry_over_reviews` puts each label back on the new
event of the same cell, so no decision a person made is lost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import columns as col

__all__ = ["carry_over_reviews", "reviewed_events"]

#: a reviewed event and a new one are the same death within these distances
MATCH_UM = 10.0
MATCH_FRAMES = 4


def reviewed_events(events: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of ``events`` that carry a reviewed label (empty when none)."""
    if events is None or col.REVIEWED_MODE not in events.columns:
        return pd.DataFrame(columns=[col.EVENT_ID, *col.REVIEW_COLUMNS])
    labels = events[col.REVIEWED_MODE]
    has = labels.notna() & (labels.astype(str).str.strip() != "")
    return events[has].reset_index(drop=True)


def carry_over_reviews(new: pd.DataFrame, old: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put the reviewed labels of ``old`` events on the matching ``new`` events.

    A reviewed event matches the new event on the same track at the same
    frame; failing that (track ids change when parameters do), the nearest
    new event within 10 µm and 4 frames not matched yet. A death the reviewer
    added by hand (no ``track_id``) is added again as a new row with the next
    event id and an empty automatic ``mode``.

    Parameters
    ----------
    new
        Events of the new run (``event_id, track_id, frame, y_um, x_um, ...``).
    old
        Events of the earlier run, with the review columns.

    Returns
    -------
    events : DataFrame
        ``new`` with the review columns (a copy; ``new`` is not changed).
    unmatched : DataFrame
        Reviewed rows of ``old`` that found no event (write them somewhere a
        person will see them).
    """
    out = new.copy()
    for c in col.REVIEW_COLUMNS:
        if c not in out:
            out[c] = pd.Series([None] * len(out), index=out.index, dtype=object)
        else:
            out[c] = out[c].astype(object)
    reviewed = reviewed_events(old)
    if reviewed.empty:
        return out, reviewed
    taken: set[int] = set()
    unmatched, added = [], []
    tracks = pd.to_numeric(out.get(col.TRACK_ID), errors="coerce") if len(out) else None
    for _, r in reviewed.iterrows():
        track = pd.to_numeric(pd.Series([r.get(col.TRACK_ID)]), errors="coerce").iloc[0]
        if pd.isna(track):  # added by hand: add it again
            added.append(r)
            continue
        hit = None
        if len(out):
            same = np.flatnonzero(
                (tracks == track).to_numpy() & (out[col.FRAME] == r[col.FRAME]).to_numpy()
            )
            same = [i for i in same if i not in taken]
            if same:
                hit = same[0]
            else:
                d = np.hypot(out[col.Y_UM] - r[col.Y_UM], out[col.X_UM] - r[col.X_UM]).to_numpy()
                ok = (d <= MATCH_UM) & (
                    (out[col.FRAME] - r[col.FRAME]).abs() <= MATCH_FRAMES
                ).to_numpy()
                cand = [i for i in np.argsort(d, kind="stable") if ok[i] and i not in taken]
                hit = cand[0] if cand else None
        if hit is None:
            unmatched.append(r)
            continue
        taken.add(hit)
        for c in col.REVIEW_COLUMNS:
            out.iloc[hit, out.columns.get_loc(c)] = r.get(c)
    if added:
        extra = pd.DataFrame(added).reindex(columns=out.columns)
        start = int(pd.to_numeric(out[col.EVENT_ID]).max()) + 1 if len(out) else 1
        extra[col.EVENT_ID] = np.arange(start, start + len(extra))
        extra[col.MODE] = None
        out = pd.concat([out, extra], ignore_index=True)
    return out, pd.DataFrame(unmatched).reset_index(drop=True)
