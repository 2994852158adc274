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

__all__ = ["death_scores", "detection_scores", "link_scores", "match_events", "match_labels"]

MATCH_COLUMNS = ["frame", "true_label", "pred_label", "iou"]


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
    if truth.shape != pred.shape:
        raise ValueError(
            f"`truth` (shape {truth.shape}) must have the same shape as `pred` (shape {pred.shape})"
        )
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    nt, npred = int(t.max(initial=0)) + 1, int(p.max(initial=0)) + 1
    inter = np.bincount(t * npred + p, minlength=nt * npred).reshape(nt, npred)
    area_t = inter.sum(axis=1)
    area_p = inter.sum(axis=0)
    inter[0, :] = 0
    inter[:, 0] = 0
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
) -> pd.DataFrame:
    """Match called deaths to true ones: within ``max_um`` and ``max_frames``.

    Greedy in the order of the true events; each call matches at most one
    true death.

    Returns
    -------
    DataFrame
        One row per true death: ``true_id, pred_id`` (-1 when missed),
        ``true_mode``, ``called`` (the call, or ``missed``), ``frame_error``
        (called minus true frame) and ``p`` (``p_necroptotic`` of the call).
    """
    used: set[int] = set()
    rows = []
    for e in truth.itertuples():
        hit = None
        if len(pred):
            d = np.hypot(pred["y_um"] - e.y_um, pred["x_um"] - e.x_um)
            ok = pred[
                (d <= max_um)
                & ((pred["frame"] - e.frame).abs() <= max_frames)
                & ~pred["event_id"].isin(used)
            ]
            if len(ok):
                hit = ok.iloc[0]
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
