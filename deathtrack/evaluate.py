"""Score segmentation and tracking against ground truth (simulator truth or annotations).

Matching follows the Cell Tracking Challenge convention: a predicted object
matches a true object when their intersection over union (IoU) is above a
threshold (0.5 makes the match one-to-one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "COMPOSITE_PARTS",
    "ERROR_KINDS",
    "composite_score",
    "death_scores",
    "detection_errors",
    "detection_scores",
    "leave_one_family_out",
    "link_scores",
    "match_events",
    "match_labels",
    "recruitment_errors",
    "score_run",
    "score_tracking",
]

MATCH_COLUMNS = ["frame", "true_label", "pred_label", "iou"]


def _check_same_shape(truth: np.ndarray, pred: np.ndarray) -> None:
    if truth.shape != pred.shape:
        raise ValueError(
            f"`truth` (shape {truth.shape}) must have the same shape as `pred` (shape {pred.shape})"
        )


def _overlaps(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by every (true, predicted) label pair, indexed by the labels
    themselves (background row and column zeroed), and each label's area."""
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    nt, npred = int(t.max(initial=0)) + 1, int(p.max(initial=0)) + 1
    inter = np.bincount(t * npred + p, minlength=nt * npred).reshape(nt, npred)
    area_t = inter.sum(axis=1)
    area_p = inter.sum(axis=0)
    inter[0, :] = 0
    inter[:, 0] = 0
    return inter, area_t, area_p


def match_labels(
    truth: np.ndarray, pred: np.ndarray, *, iou_threshold: float = 0.5, frame: int = 0
) -> pd.DataFrame:
    """Pairs of (true, predicted) labels whose IoU exceeds ``iou_threshold``.

    Parameters
    ----------
    truth, pred : ndarray of int, shape (Y, X)
        Label images (0 = background) of the same shape.
    iou_threshold : float
        Minimum IoU; at >= 0.5 every object matches at most one other.

    Returns
    -------
    DataFrame
        Columns ``frame, true_label, pred_label, iou``.
    """
    _check_same_shape(truth, pred)
    inter, area_t, area_p = _overlaps(truth, pred)
    ti, pi = np.nonzero(inter)
    iou = inter[ti, pi] / (area_t[ti] + area_p[pi] - inter[ti, pi])
    keep = iou > iou_threshold
    if iou_threshold < 0.5:  # keep the best partner of each true object only
        order = np.argsort(-iou[keep], kind="stable")
        df = pd.DataFrame(
            {"true_label": ti[keep][order], "pred_label": pi[keep][order], "iou": iou[keep][order]}
        )
        df = df.drop_duplicates("true_label").drop_duplicates("pred_label")
    else:
        df = pd.DataFrame({"true_label": ti[keep], "pred_label": pi[keep], "iou": iou[keep]})
    df.insert(0, "frame", frame)
    return df.sort_values("true_label", kind="stable").reset_index(drop=True)


#: the kinds of :func:`detection_errors`, in the order they are tested
ERROR_KINDS = ("ok", "missed", "split", "merged", "small", "large", "false")
ERROR_COLUMNS = ["frame", "true_label", "kind", "pred_label", "iou"]


def detection_errors(
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    min_share: float = 0.2,
) -> pd.DataFrame:
    """What went wrong with each true object: why it was not detected, if it was not.

    Detection F1 says how many objects were missed; this says how. For each true
    object of each frame, in this order:

    - ``ok``: a prediction matches it (IoU above ``iou_threshold``);
    - ``missed``: no prediction covers ``min_share`` of it;
    - ``split``: two or more predictions each cover ``min_share`` of it;
    - ``merged``: the one prediction covering it also covers ``min_share`` of
      another true object (touching cells drawn as one);
    - ``small`` / ``large``: one prediction on it alone, but smaller / larger than
      it (an outline too tight or too loose, e.g. apoptotic bodies drawn as one blob
      with the gaps between them).

    Predictions on no true object (none covers ``min_share`` of them, and they cover
    ``min_share`` of none) are added as ``false`` (``true_label`` 0): objects drawn in
    the background.

    Parameters
    ----------
    truth, pred : ndarray of int, shape (Y, X) or (T, Y, X)
        Label images (0 = background) of the same shape.
    iou_threshold, min_share : float
        The match's IoU (as :func:`match_labels`) and the share of an object a
        prediction must cover to count as on it.

    Returns
    -------
    DataFrame
        Columns ``frame, true_label, kind, pred_label, iou``: one row per true object
        and frame (``pred_label`` the prediction of highest IoU with it, 0 if none),
        then one per false prediction.
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    _check_same_shape(truth, pred)
    if truth.ndim == 3:
        parts = [
            _frame_errors(t, p, f, iou_threshold, min_share)
            for f, (t, p) in enumerate(zip(truth, pred))
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ERROR_COLUMNS)
    if truth.ndim != 2:
        raise ValueError(f"label images must be (Y, X) or (T, Y, X), not shape {truth.shape}")
    return _frame_errors(truth, pred, 0, iou_threshold, min_share)


def _frame_errors(truth, pred, frame, iou_threshold, min_share) -> pd.DataFrame:
    inter, area_t, area_p = _overlaps(truth, pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_t[:, None] + area_p[None, :] - inter)
    # a prediction on a share of the true object / a true object on a share of the
    # prediction (labels absent from the frame have area 0: only shared pixels count)
    on_t = (inter >= min_share * area_t[:, None]) & (inter > 0)
    on_p = (inter >= min_share * area_p[None, :]) & (inter > 0)
    rows = []
    for i in np.flatnonzero(area_t[1:]) + 1:
        j = int(np.argmax(iou[i])) if inter[i].any() else -1
        best_iou = float(iou[i, j]) if j >= 0 else 0.0
        covering = np.flatnonzero(on_t[i])
        if best_iou > iou_threshold:
            kind = "ok"
        elif not len(covering):
            kind = "missed"
        elif len(covering) >= 2:
            kind = "split"
        elif on_t[:, covering[0]].sum() >= 2:
            kind = "merged"
        else:
            kind = "small" if area_p[covering[0]] < area_t[i] else "large"
        rows.append((frame, int(i), kind, max(j, 0), best_iou))
    drawn = area_p > 0
    drawn[0] = False
    for j in np.flatnonzero(drawn & ~on_p.any(axis=0) & ~on_t.any(axis=0)):
        rows.append((frame, 0, "false", int(j), 0.0))
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def detection_scores(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, iou_threshold: float = 0.5
) -> tuple[dict[str, float], pd.DataFrame]:
    """Object detection precision, recall and F1 over frames.

    Parameters
    ----------
    pairs
        ``(truth, pred)`` label images, one pair per frame (in frame order).

    Returns
    -------
    scores : dict
        ``n_true, n_pred, tp, fp, fn, precision, recall, f1, mean_iou``.
    matches : DataFrame
        All matches (``frame, true_label, pred_label, iou``).
    """
    n_true = n_pred = 0
    found = []
    for frame, (truth, pred) in enumerate(pairs):
        n_true += len(np.unique(truth)) - (1 if (truth == 0).any() else 0)
        n_pred += len(np.unique(pred)) - (1 if (pred == 0).any() else 0)
        found.append(match_labels(truth, pred, iou_threshold=iou_threshold, frame=frame))
    matches = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=MATCH_COLUMNS)
    tp = len(matches)
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    scores = {
        "n_true": n_true,
        "n_pred": n_pred,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_true - tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou": float(matches["iou"].mean()) if tp else float("nan"),
    }
    return scores, matches


def link_scores(
    matches: pd.DataFrame, true_ids: pd.DataFrame, pred_ids: pd.DataFrame
) -> dict[str, float]:
    """Fraction of true frame-to-frame links that the tracks recover.

    Parameters
    ----------
    matches
        From :func:`detection_scores`: ``frame, true_label, pred_label``.
    true_ids
        ``frame, true_label, true_track`` — the true track of every true object
        (for simulator labels the label is the track: pass the same column).
    pred_ids
        ``frame, pred_label, track_id`` — the predicted track of every object.

    Returns
    -------
    dict
        ``n_true_links`` (links t -> t+1 of one true track), ``recovered`` (both
        ends matched and given the same track_id), ``link_recall``, and
        ``link_precision`` (of predicted links between matched objects, the
        fraction that join the same true track).
    """
    m = matches.merge(true_ids, on=["frame", "true_label"]).merge(
        pred_ids, on=["frame", "pred_label"]
    )
    tt = true_ids.sort_values(["true_track", "frame"])
    nxt = tt.groupby("true_track")["frame"].shift(-1)
    n_true_links = int((nxt == tt["frame"] + 1).sum())
    a = m[["frame", "true_track", "track_id"]]
    b = a.assign(frame=a["frame"] - 1)
    joined = a.merge(b, on=["frame", "true_track"], suffixes=("", "_next"))
    recovered = int((joined["track_id"] == joined["track_id_next"]).sum())
    pj = a.merge(b, on=["frame", "track_id"], suffixes=("", "_next"))
    n_pred_links = len(pj)
    correct = int((pj["true_track"] == pj["true_track_next"]).sum())
    return {
        "n_true_links": n_true_links,
        "recovered": recovered,
        "link_recall": recovered / n_true_links if n_true_links else 1.0,
        "link_precision": correct / n_pred_links if n_pred_links else 1.0,
    }


def score_tracking(
    truth_frames: Iterable[np.ndarray],
    pred_frames: Iterable[np.ndarray],
    *,
    iou_threshold: float = 0.5,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Detection and linking scores of label stacks whose values are track ids.

    Parameters
    ----------
    truth_frames, pred_frames
        Per-frame (Y, X) label images; a label value is the object's track
        (as in the simulator's truth and deathtrack's ``labels_*.tif``).

    Returns
    -------
    scores : dict
        :func:`detection_scores` plus :func:`link_scores`.
    matches : DataFrame
        ``frame, true_label, pred_label, iou``.
    """
    all_true: list[pd.DataFrame] = []

    def pairs():
        for t, (truth, pred) in enumerate(zip(truth_frames, pred_frames)):
            ids = np.unique(truth)
            ids = ids[ids > 0]
            all_true.append(pd.DataFrame({"frame": t, "true_label": ids, "true_track": ids}))
            yield truth, pred

    scores, matches = detection_scores(pairs(), iou_threshold=iou_threshold)
    true_ids = (
        pd.concat(all_true, ignore_index=True)
        if all_true
        else pd.DataFrame(columns=["frame", "true_label", "true_track"])
    )
    pred_ids = matches[["frame", "pred_label"]].assign(track_id=matches["pred_label"])
    links = link_scores(matches, true_ids, pred_ids)
    return {**scores, **links}, matches


def match_events(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    max_um: float = 10.0,
    max_frames: int = 4,
    max_minutes: float | None = None,
    interval_s: float | None = None,
    min_frames: int = 2,
) -> pd.DataFrame:
    """Match called deaths to true ones: within ``max_um`` and a time tolerance.

    Greedy in the order of the true events; each call matches at most one
    true death. When both tables have ``z_um`` (3D), the distance is 3D. The
    time tolerance is ``max_frames`` by default; with
    ``max_minutes`` (and the movie's ``interval_s``) it is physical:
    ``max(min_frames, max_minutes / interval)`` frames, and each true death
    takes the eligible call nearest in time (then in space) rather than the
    first one listed.

    Returns
    -------
    DataFrame
        One row per true death: ``true_id, pred_id`` (-1 when missed),
        ``true_mode``, ``called`` (the call, or ``missed``), ``frame_error``
        (called minus true frame) and ``p`` (``p_necroptotic`` of the call).
    """
    nearest = max_minutes is not None
    if nearest:
        if interval_s is None or not interval_s > 0:
            raise ValueError(
                f"`interval_s` (got {interval_s!r}) must be a positive frame interval in "
                "seconds when `max_minutes` is given"
            )
        tol = max(float(min_frames), max_minutes * 60.0 / interval_s)
    else:
        tol = max_frames
    used: set[int] = set()
    rows = []
    for e in truth.itertuples():
        hit = None
        if len(pred):
            d = np.hypot(pred["y_um"] - e.y_um, pred["x_um"] - e.x_um)
            if "z_um" in pred and hasattr(e, "z_um"):  # 3D: the distance in 3D
                d = np.sqrt(d**2 + (pred["z_um"] - e.z_um) ** 2)
            df = (pred["frame"] - e.frame).abs()
            ok = (d <= max_um) & (df <= tol) & ~pred["event_id"].isin(used)
            if ok.any():
                if nearest:
                    cand = np.flatnonzero(ok.to_numpy())
                    order = np.lexsort((d.to_numpy()[cand], df.to_numpy()[cand]))
                    hit = pred.iloc[cand[order[0]]]
                else:
                    hit = pred[ok].iloc[0]
        if hit is None:
            rows.append((e.event_id, -1, e.mode, "missed", np.nan, np.nan))
            continue
        used.add(int(hit["event_id"]))
        rows.append(
            (
                e.event_id,
                int(hit["event_id"]),
                e.mode,
                hit["mode"],
                int(hit["frame"]) - int(e.frame),
                float(hit["p_necroptotic"]),
            )
        )
    return pd.DataFrame(
        rows, columns=["true_id", "pred_id", "true_mode", "called", "frame_error", "p"]
    )


def death_scores(pred: pd.DataFrame, truth: pd.DataFrame, **match_kw) -> dict[str, float]:
    """Detection precision / recall / F1, median |frame error|, balanced accuracy of the mode.

    The balanced accuracy is the mean over true modes of the fraction of
    matched deaths called that mode (``uncertain`` counts as wrong); NaN when
    nothing matched. ``false`` counts calls that match no true death.
    """
    m = match_events(pred, truth, **match_kw)
    tp = int((m["pred_id"] >= 0).sum())
    precision = tp / len(pred) if len(pred) else math.nan
    recall = tp / len(truth) if len(truth) else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision == precision and recall == recall and precision + recall > 0
        else math.nan
    )
    hit = m[m["pred_id"] >= 0]
    per_mode = [
        float((g["called"] == mode).mean()) for mode, g in hit.groupby("true_mode") if len(g)
    ]
    return {
        "n_true": len(truth),
        "n_called": len(pred),
        "tp": tp,
        "false": len(pred) - tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "median_frame_error": float(hit["frame_error"].abs().median()) if len(hit) else math.nan,
        "balanced_accuracy": float(np.mean(per_mode)) if per_mode else math.nan,
    }


def recruitment_errors(
    pred: pd.DataFrame, truth: pd.DataFrame, matches: pd.DataFrame
) -> dict[str, float]:
    """Error of the immune counts within R, per event-frame, on matched deaths.

    Parameters
    ----------
    pred, truth
        Recruitment tables (``event_id, dt, n_within_r``): the pipeline's
        ``recruitment.csv`` and the simulator's.
    matches
        From :func:`match_events`: ``true_id, pred_id`` (-1 when missed).

    Returns
    -------
    dict
        ``n`` event-frames compared (aligned on ``dt``, each relative to its own
        death frame), ``mae`` and ``bias`` (mean of predicted minus true; NaN
        when nothing was compared).
    """
    pairs = matches.loc[matches["pred_id"] >= 0, ["true_id", "pred_id"]]
    if pred is None or truth is None or not len(pairs) or not len(pred) or not len(truth):
        return {"n": 0, "mae": math.nan, "bias": math.nan}
    t = truth[["event_id", "dt", "n_within_r"]].rename(
        columns={"event_id": "true_id", "n_within_r": "n_true"}
    )
    p = pred[["event_id", "dt", "n_within_r"]].rename(
        columns={"event_id": "pred_id", "n_within_r": "n_pred"}
    )
    both = pairs.merge(t, on="true_id").merge(p, on=["pred_id", "dt"])
    if not len(both):
        return {"n": 0, "mae": math.nan, "bias": math.nan}
    err = both["n_pred"].to_numpy(float) - both["n_true"].to_numpy(float)
    return {"n": len(both), "mae": float(np.abs(err).mean()), "bias": float(err.mean())}


def _read_csv(path) -> pd.DataFrame | None:
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        return pd.read_csv(path)
    parquet = path.with_suffix(".parquet")
    if parquet.is_file():
        return pd.read_parquet(parquet)
    return None


def _stack_frames(path):
    """Frames of a (T, Y, X) label TIFF, or the (Z, Y, X) frames of a (T, Z, Y, X) one,
    one at a time (memory holds one frame)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        n_z = series.shape[series.axes.index("Z")] if "Z" in series.axes else 1
        pages = iter(tif.pages)
        while True:
            planes = [p.asarray() for _, p in zip(range(n_z), pages)]
            if not planes:
                return
            yield planes[0] if n_z == 1 else np.stack(planes)


def score_run(
    results_folder,
    truth_folder,
    *,
    interval_s: float | None = None,
    match_um: float = 10.0,
    match_minutes: float = 30.0,
    min_frames: int = 2,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Score one finished run (a ``deathtrack run`` results folder) against simulator truth.

    Parameters
    ----------
    results_folder
        ``DIR/<stem>/`` of a run: ``labels_cells.tif``, ``labels_immune.tif``,
        ``tracks.csv``, ``events.csv``, ``recruitment.csv``.
    truth_folder
        A simulator truth folder (``<name>_truth/``: ``labels_*.tif``,
        ``events.csv``, ``cells.csv``, ``recruitment.csv``, ``simulation.toml``).
    interval_s
        Frame interval; read from the truth's ``simulation.toml`` when not given.
    match_um, match_minutes, min_frames
        A call matches a true death within ``match_um`` and
        ``max(min_frames, match_minutes)`` (see :func:`match_events`).
    iou_threshold
        Object matching for detection and links (:func:`score_tracking`).

    Returns
    -------
    dict
        ``cells_*`` and ``immune_*``: detection (``f1, precision, recall,
        mean_iou, n_true, n_pred``) and links (``link_recall,
        link_precision``); deaths: ``deaths_n_true, deaths_n_called,
        deaths_tp, deaths_false, deaths_precision, deaths_recall, deaths_f1``,
        ``false_per_100_tracks`` (false calls per 100 true target-cell
        tracks), ``death_frame_error`` (median |called - true frame|),
        ``mode_balanced_accuracy`` (matched deaths; ``uncertain`` counts as
        wrong); immune counts within R on matched deaths: ``recruit_mae``,
        ``recruit_bias``, ``recruit_n`` (event-frames). NaN where a measure
        does not apply (no immune channel, no true deaths, nothing matched).
    """
    from pathlib import Path

    from .config import read_toml

    res, truth = Path(results_folder), Path(truth_folder)
    if interval_s is None:
        toml = truth / "simulation.toml"
        if not toml.is_file():
            raise FileNotFoundError(
                f"{toml} not found: pass `interval_s` (the frame interval in seconds)"
            )
        interval_s = float(read_toml(toml).get("interval_s", 120.0))
    out: dict[str, float] = {}
    for pop in ("cells", "immune"):
        t_path, p_path = truth / f"labels_{pop}.tif", res / f"labels_{pop}.tif"
        keys = ("f1", "precision", "recall", "mean_iou", "n_true", "n_pred")
        if t_path.is_file() and p_path.is_file():
            s, _ = score_tracking(
                _stack_frames(t_path), _stack_frames(p_path), iou_threshold=iou_threshold
            )
            for k in (*keys, "link_recall", "link_precision"):
                out[f"{pop}_{k}"] = float(s[k])
        else:
            for k in (*keys, "link_recall", "link_precision"):
                out[f"{pop}_{k}"] = math.nan

    true_events = _read_csv(truth / "events.csv")
    pred_events = _read_csv(res / "events.csv")
    if pred_events is None:
        pred_events = pd.DataFrame(
            columns=["event_id", "frame", "y_um", "x_um", "mode", "p_necroptotic"]
        )
    cells = _read_csv(truth / "cells.csv")
    n_tracks = int(cells["cell_id"].nunique()) if cells is not None and len(cells) else 0
    match_kw = dict(
        max_um=match_um, max_minutes=match_minutes, interval_s=interval_s, min_frames=min_frames
    )
    d = death_scores(pred_events, true_events, **match_kw)
    m = match_events(pred_events, true_events, **match_kw)
    out.update(
        {
            "deaths_n_true": d["n_true"],
            "deaths_n_called": d["n_called"],
            "deaths_tp": d["tp"],
            "deaths_false": d["false"],
            "deaths_precision": d["precision"],
            "deaths_recall": d["recall"],
            "deaths_f1": d["f1"],
            "n_true_tracks": n_tracks,
            "false_per_100_tracks": 100.0 * d["false"] / n_tracks if n_tracks else math.nan,
            "death_frame_error": d["median_frame_error"],
            "mode_balanced_accuracy": d["balanced_accuracy"],
        }
    )
    rec = recruitment_errors(
        _read_csv(res / "recruitment.csv"), _read_csv(truth / "recruitment.csv"), m
    )
    out.update({"recruit_mae": rec["mae"], "recruit_bias": rec["bias"], "recruit_n": rec["n"]})
    return out


#: what :func:`composite_score` averages (each in 0..1, higher is better)
COMPOSITE_PARTS = (
    "cells_f1",
    "cells_link_recall",
    "immune_f1",
    "deaths",
    "mode_balanced_accuracy",
    "recruit",
)


def composite_score(scores: dict[str, float]) -> float:
    """One number in 0..1 per scored movie, to choose parameters on (higher is better).

    The mean of the parts that apply: target-cell detection F1, links kept,
    immune detection F1, deaths (F1 when the movie has deaths; with none,
    ``1 - false_per_100_tracks / 10`` floored at 0), mode balanced accuracy,
    and immune counts (``1 - recruit_mae`` floored at 0).
    """
    parts = []
    for key in ("cells_f1", "cells_link_recall", "immune_f1", "mode_balanced_accuracy"):
        v = scores.get(key, math.nan)
        if v == v:
            parts.append(float(v))
    if scores.get("deaths_n_true", 0):
        f1 = scores.get("deaths_f1", math.nan)
        parts.append(0.0 if f1 != f1 else float(f1))
    else:
        fp = scores.get("false_per_100_tracks", math.nan)
        if fp == fp:
            parts.append(max(0.0, 1.0 - fp / 10.0))
    mae = scores.get("recruit_mae", math.nan)
    if mae == mae:
        parts.append(max(0.0, 1.0 - float(mae)))
    return float(np.mean(parts)) if parts else math.nan


def leave_one_family_out(
    table: pd.DataFrame, *, score: str = "composite", baseline: str | None = None
) -> pd.DataFrame:
    """Leave-one-family-out choice of parameters: chosen on the others, scored on the one.

    Parameters
    ----------
    table
        One row per scored movie and parameter set: ``family``, ``point`` (the
        parameter set's name) and the ``score`` column (higher is better).
    score
        The column to choose on.
    baseline
        A ``point`` to report beside the chosen one (e.g. the defaults).

    Returns
    -------
    DataFrame
        One row per held-out family: ``held_out``, ``chosen`` (the point with
        the best mean score over the other families, each family weighted
        equally; ties go to the point listed first), ``score_others`` (that
        mean), ``score_held_out`` (the chosen point's mean score on the
        held-out family) and, with ``baseline``, ``baseline_held_out``.
    """
    points = list(dict.fromkeys(table["point"]))
    per_family = table.groupby(["point", "family"], sort=False)[score].mean().unstack("family")
    rows = []
    for fam in dict.fromkeys(table["family"]):
        others = per_family.drop(columns=[fam])
        means = others.mean(axis=1, skipna=True).reindex(points)
        chosen = means.idxmax() if means.notna().any() else points[0]
        row = {
            "held_out": fam,
            "chosen": chosen,
            "score_others": float(means.get(chosen, math.nan)),
            "score_held_out": float(per_family.loc[chosen, fam]),
        }
        if baseline is not None:
            row["baseline_held_out"] = (
                float(per_family.loc[baseline, fam]) if baseline in per_family.index else math.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)
