"""Train the apoptotic / necroptotic classifier from reviewed events, and apply it.

The model is a logistic regression (scikit-learn) on the interpretable event
features that ``deathtrack.death`` writes to ``events.csv``. It is saved as a
small JSON file — feature names, scaling, coefficients — that a person can read
and that loads without executing anything (never a pickle: a model file may
come from someone else).

Examples
--------
>>> model = train_classifier([events_with_reviewed_mode])  # doctest: +SKIP
>>> save_model(model, "model.json"); model = load_model("model.json")  # doctest: +SKIP
>>> p = predict_p_necroptotic(model, events)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as col
from .errors import ConfigError, DeathtrackError

__all__ = [
    "FEATURES",
    "ClassifierModel",
    "load_model",
    "mode_from_p",
    "predict_p_necroptotic",
    "save_model",
    "train_classifier",
]

#: event columns the model uses (``dye_lag_min`` may be NaN: no dye, or dye not seen)
FEATURES = [
    "area_ratio_before",
    "area_ratio_min",
    "reporter_drop",
    "reporter_ratio_before",
    "circularity_change",
    "solidity_min_after",
    "fragments_max_after",
    "dye_lag_min",
]
FORMAT = "deathtrack-classifier"
REVIEWED = "reviewed_mode"


@dataclass
class ClassifierModel:
    """A trained logistic model: p = sigmoid(((x - mean) / scale) · coef + intercept)."""

    features: list[str]
    fill: list[float]  # value used for a missing feature (training median)
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    n_train: dict[str, int]
    format: str = FORMAT
    version: int = 1


def _matrix(events: pd.DataFrame, features: list[str], fill: list[float] | None) -> np.ndarray:
    missing = [f for f in features if f not in events.columns]
    if missing:
        raise DeathtrackError(
            f"events lack the feature column(s) {missing}; use events.csv written by "
            "deathtrack run (it holds the features of every call)"
        )
    x = events[features].to_numpy(float)
    # a missing dye lag (no dye channel, or no uptake seen) is informative: keep it as an
    # indicator by filling with the training median and letting the other features speak
    if fill is not None:
        x = np.where(np.isnan(x), np.asarray(fill)[None, :], x)
    return x


def train_classifier(
    tables: Iterable[pd.DataFrame], *, label_column: str = REVIEWED, seed: int = 0
) -> ClassifierModel:
    """Fit the model on events whose ``label_column`` is ``apoptotic`` or ``necroptotic``.

    Rows labelled otherwise (``not_death``, ``uncertain``, empty) are left out.

    Raises
    ------
    DeathtrackError
        When the label column is missing, or fewer than 3 events of either mode remain.
    """
    from sklearn.linear_model import LogisticRegression

    frames = []
    for k, t in enumerate(tables):
        if label_column not in t.columns:
            raise DeathtrackError(
                f"events table {k + 1} has no {label_column!r} column; review the events first "
                f"(napari review panel) or pass --label-column with the column holding the modes"
            )
        frames.append(t)
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    data = data[data[label_column].isin([col.APOPTOTIC, col.NECROPTOTIC])] if len(data) else data
    counts = {
        m: int((data[label_column] == m).sum()) if len(data) else 0
        for m in (col.APOPTOTIC, col.NECROPTOTIC)
    }
    if min(counts.values()) < 3:
        raise DeathtrackError(
            f"training needs at least 3 reviewed events of each mode; found {counts}"
        )
    raw = data[FEATURES].to_numpy(float)
    fill = [float(np.nanmedian(c)) if np.isfinite(c).any() else 0.0 for c in raw.T]
    x = _matrix(data, FEATURES, fill)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    y = (data[label_column] == col.NECROPTOTIC).to_numpy(int)
    clf = LogisticRegression(class_weight="balanced", C=1.0, random_state=seed, max_iter=1000)
    clf.fit((x - mean) / scale, y)
    return ClassifierModel(
        features=list(FEATURES),
        fill=fill,
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=clf.coef_[0].tolist(),
        intercept=float(clf.intercept_[0]),
        n_train=counts,
    )


def predict_p_necroptotic(model: ClassifierModel, events: pd.DataFrame) -> np.ndarray:
    """p_necroptotic of every event under ``model``."""
    if events.empty:
        return np.zeros(0)
    x = _matrix(events, model.features, model.fill)
    z = ((x - np.asarray(model.mean)) / np.asarray(model.scale)) @ np.asarray(model.coef)
    return 1 / (1 + np.exp(-(z + model.intercept)))


def save_model(model: ClassifierModel, path: str | Path) -> Path:
    """Write the model as JSON (readable, no code)."""
    path = Path(path)
    path.write_text(json.dumps(asdict(model), indent=2) + "\n", encoding="utf-8")
    return path


def _numbers(path: Path, key: str, value, n: int | None) -> list[float]:
    """``value`` as a list of finite numbers (of length ``n``), or a ConfigError naming it."""
    if not isinstance(value, list) or (n is not None and len(value) != n):
        want = f"a list of {n} numbers (one per feature)" if n is not None else "a list"
        raise ConfigError(f"{path}: malformed classifier: {key!r} must be {want}, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(
                f"{path}: malformed classifier: {key}[{i}] = {v!r} is not a finite number; "
                "re-train it with `deathtrack train`"
            )
        out.append(float(v))
    return out


def load_model(path: str | Path) -> ClassifierModel:
    """Read a model written by :func:`save_model`; anything else is refused with a reason.

    Every field is checked: the features are known event columns, ``fill``,
    ``mean``, ``scale`` and ``coef`` are finite numbers, one per feature, and
    every ``scale`` is positive (a zero scale would make every p undefined).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: classifier model not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a deathtrack classifier (not JSON: {err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a deathtrack classifier (no format = {FORMAT!r})")
    try:
        model = ClassifierModel(**data)
    except TypeError as err:
        raise ConfigError(f"{path}: malformed classifier ({err})") from None
    features = model.features
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) for f in features)
        or len(set(features)) != len(features)
    ):
        raise ConfigError(
            f"{path}: malformed classifier: 'features' must be a list of distinct event "
            f"column names, got {features!r}"
        )
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ConfigError(
            f"{path}: malformed classifier: unknown feature(s) {unknown}; known: {FEATURES}"
        )
    n = len(features)
    model.fill = _numbers(path, "fill", model.fill, n)
    model.mean = _numbers(path, "mean", model.mean, n)
    model.scale = _numbers(path, "scale", model.scale, n)
    model.coef = _numbers(path, "coef", model.coef, n)
    (model.intercept,) = _numbers(path, "intercept", [model.intercept], 1)
    bad = [f for f, sc in zip(features, model.scale) if sc <= 0]
    if bad:
        raise ConfigError(
            f"{path}: malformed classifier: the scale of {bad} is not positive, which makes "
            "every p_necroptotic undefined; re-train it with `deathtrack train`"
        )
    return model


def mode_from_p(p, margin: float):
    """The call from ``p_necroptotic``: necroptotic at or above 0.5 + ``margin``,
    apoptotic at or below 0.5 - ``margin``, uncertain in between.

    ``p`` is a number (returns a str) or an array (returns an array of str).

    Examples
    --------
    >>> mode_from_p(0.9, 0.15), mode_from_p(0.55, 0.15)
    ('necroptotic', 'uncertain')
    """
    out = np.where(
        np.asarray(p) >= 0.5 + margin,
        col.NECROPTOTIC,
        np.where(np.asarray(p) <= 0.5 - margin, col.APOPTOTIC, col.UNCERTAIN),
    )
    return str(out) if out.ndim == 0 else out
