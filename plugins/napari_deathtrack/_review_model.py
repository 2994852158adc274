"""The events table of one results folder under review (no Qt: the widget drives it).

A reviewer's label goes to three columns added to ``events.csv`` —
``reviewed_mode`` (``apoptotic``, ``necroptotic``, ``uncertain`` or
``not_death``), ``reviewer`` and ``reviewed_at`` (ISO 8601 with the time
zone) — and never to the automatic ``mode`` / ``p_necroptotic``. Only
:meth:`EventReview.retrain` changes those, on purpose. A death the pipeline
missed is added as a new row with an empty ``mode`` and a ``reviewed_mode``.
The table is written atomically (temporary file, then rename) in the format
it was read in (CSV or Parquet).

Every label, cleared label and added death can be undone and redone
(:meth:`EventReview.undo`, :meth:`EventReview.redo`). Retraining is split in
two so that a GUI can fit the model in a worker thread on a copy of the table
(:func:`fit_retrain`) and apply the result on its own thread
(:meth:`EventReview.apply_retrain`).
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from deathtrack import columns as col
from deathtrack.classify import mode_from_p
from deathtrack.errors import DeathtrackError

from ._layers import NOT_DEATH, REVIEWED_MODE, read_run_info, read_table, table_path

logger = logging.getLogger(__name__)

__all__ = [
    "REVIEW_COLUMNS",
    "REVIEW_LABELS",
    "EventReview",
    "RetrainPlan",
    "RetrainResult",
    "ReviewError",
    "carry_over_reviews",
    "default_reviewer",
    "fit_retrain",
    "reviewed_rows",
]

REVIEWER = col.REVIEWER
REVIEWED_AT = col.REVIEWED_AT
REVIEW_COLUMNS = col.REVIEW_COLUMNS
#: the labels a reviewer can give, by keyboard shortcut
REVIEW_LABELS = {
    "A": col.APOPTOTIC,
    "N": col.NECROPTOTIC,
    "X": NOT_DEATH,
    "U": col.UNCERTAIN,
}
MIN_PER_MODE = 3  # deathtrack.classify.train_classifier needs 3 of each mode
MODEL_FILE = "classifier.json"
#: reviewed rows a re-run could not place on its events
UNMATCHED_FILE = "reviews_unmatched.csv"


class ReviewError(DeathtrackError, ValueError):
    """A review action that cannot be done (no events table, too few labels to train...)."""


def default_reviewer() -> str:
    """The login name, or '' when the system does not say."""
    try:
        return getpass.getuser()
    except Exception:  # getpass raises various errors without a login name
        return ""


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _text_column(values: pd.Series) -> pd.Series:
    """A column of strings with None for missing (written as empty cells)."""
    return pd.Series(
        [None if pd.isna(v) or v == "" else str(v) for v in values],
        index=values.index,
        dtype=object,
    )


@dataclass
class RetrainPlan:
    """A classifier fitted on reviewed events and its calls (see :func:`fit_retrain`)."""

    model: object
    event_ids: np.ndarray
    p_necroptotic: np.ndarray
    modes: np.ndarray
    n_train: dict[str, int]


@dataclass
class RetrainResult:
    """What :meth:`EventReview.retrain` did."""

    n_train: dict[str, int]
    n_changed: int
    n_classified: int
    model_path: Path

    def summary(self) -> str:
        a = self.n_train.get(col.APOPTOTIC, 0)
        n = self.n_train.get(col.NECROPTOTIC, 0)
        return (
            f"Trained on {a} apoptotic + {n} necroptotic reviewed events; re-classified "
            f"{self.n_classified} events, {self.n_changed} changed their automatic mode. "
            f"Model saved to {self.model_path.name} (use it in a run as death.classifier)."
        )


class EventReview:
    """``events.csv`` of one results folder, with the review columns.

    Parameters
    ----------
    folder
        A results folder written by ``deathtrack run``.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = table_path(self.folder, "events")
        if path is None:
            raise ReviewError(
                f"{self.folder}: no events.csv (or events.parquet); open a folder written by "
                "deathtrack run"
            )
        self.path = path
        self.table_format = "parquet" if path.suffix == ".parquet" else "csv"
        events = read_table(self.folder, "events")
        for c in REVIEW_COLUMNS:
            events[c] = _text_column(events[c]) if c in events.columns else None
            events[c] = events[c].astype(object)
        self.events: pd.DataFrame = events.reset_index(drop=True)
        self.run = read_run_info(self.folder) or {}
        cal = (self.run.get("input") or {}).get("calibration") or {}
        self.pixel_size_um: float | None = cal.get("pixel_size_um")
        self.interval_s: float | None = cal.get("interval_s")
        self.dirty = False
        #: edits that :meth:`undo` takes back (and :meth:`redo` makes again), newest last
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []

    # -- lookup -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.events)

    def event_ids(self) -> list[int]:
        return [int(v) for v in self.events[col.EVENT_ID]]

    def index_of(self, event_id: int) -> int:
        hits = np.flatnonzero(self.events[col.EVENT_ID].to_numpy() == event_id)
        if not len(hits):
            raise ReviewError(f"{self.path}: no event with event_id {event_id}")
        return int(hits[0])

    def event(self, event_id: int) -> pd.Series:
        return self.events.iloc[self.index_of(event_id)]

    def recruitment(self) -> pd.DataFrame | None:
        """``recruitment.csv`` of the folder, or None when the run did not write it."""
        return read_table(self.folder, "recruitment")

    # -- edits --------------------------------------------------------------

    def _review_values(self, i: int) -> tuple:
        return tuple(self.events.at[i, c] for c in REVIEW_COLUMNS)

    def _put_review_values(self, event_id: int, values: tuple) -> None:
        i = self.index_of(event_id)
        for c, v in zip(REVIEW_COLUMNS, values):
            self.events.at[i, c] = (
                None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
            )
        self.dirty = True

    def _record(self, edit: tuple) -> None:
        self._undo.append(edit)
        self._redo.clear()

    def set_review(
        self, event_id: int, label: str, *, reviewer: str, when: str | None = None
    ) -> None:
        """Give ``event_id`` the reviewed label ``label`` (one of :data:`REVIEW_LABELS`)."""
        allowed = tuple(REVIEW_LABELS.values())
        if label not in allowed:
            raise ReviewError(f"reviewed label {label!r} is not one of {', '.join(allowed)}")
        i = self.index_of(event_id)
        before = self._review_values(i)
        after = (label, reviewer or None, when or _now())
        self._put_review_values(event_id, after)
        self._record(("review", int(event_id), before, after))

    def clear_review(self, event_id: int) -> None:
        """Remove the reviewed label of ``event_id`` (the automatic call counts again)."""
        i = self.index_of(event_id)
        before = self._review_values(i)
        after = (None, None, None)
        if all(_blank(v) for v in before):
            return
        self._put_review_values(event_id, after)
        self._record(("review", int(event_id), before, after))

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> int | None:
        """Take back the newest label, cleared label or added death; its event_id, or None."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._apply_edit(edit, backwards=True)
        self._redo.append(edit)
        return edit[1]

    def redo(self) -> int | None:
        """Make the newest undone edit again; its event_id, or None."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._apply_edit(edit, backwards=False)
        self._undo.append(edit)
        return edit[1]

    def _apply_edit(self, edit: tuple, *, backwards: bool) -> None:
        kind, event_id = edit[0], edit[1]
        if kind == "review":
            self._put_review_values(event_id, edit[2] if backwards else edit[3])
        elif backwards:  # "add": remove the added row
            self.events = self.events.drop(index=self.index_of(event_id)).reset_index(drop=True)
            self.dirty = True
        else:
            self.events = pd.concat([self.events, edit[2]], ignore_index=True)
            self.dirty = True

    def add_missed(
        self,
        frame: int,
        y: float,
        x: float,
        *,
        reviewer: str,
        label: str = col.UNCERTAIN,
        when: str | None = None,
    ) -> int:
        """Append a death the pipeline missed (pixel ``y, x`` at ``frame``); return its id.

        Its automatic columns (``mode``, ``p_necroptotic``, features) stay empty.
        """
        allowed = tuple(REVIEW_LABELS.values())
        if label not in allowed:
            raise ReviewError(f"reviewed label {label!r} is not one of {', '.join(allowed)}")
        ev = self.events
        new_id = int(ev[col.EVENT_ID].max()) + 1 if len(ev) else 1
        px = self.pixel_size_um or 1.0
        row = {
            col.EVENT_ID: new_id,
            col.FRAME: int(frame),
            col.Y: float(y),
            col.X: float(x),
            col.Y_UM: float(y) * px,
            col.X_UM: float(x) * px,
        }
        if self.interval_s:
            row[col.T_S] = float(frame) * self.interval_s
        # keep integer columns integer (nullable) so that the other rows are written unchanged
        for c in ev.columns:
            if pd.api.types.is_integer_dtype(ev[c].dtype) and not isinstance(
                ev[c].dtype, pd.Int64Dtype
            ):
                ev[c] = ev[c].astype("Int64")
        new = pd.DataFrame([row]).reindex(columns=ev.columns)
        for c in ev.columns:
            if isinstance(ev[c].dtype, pd.Int64Dtype):
                new[c] = new[c].astype("Int64")
            elif ev[c].dtype == object:
                new[c] = new[c].astype(object)
        self.events = pd.concat([ev, new], ignore_index=True)
        i = len(self.events) - 1
        for c, v in zip(REVIEW_COLUMNS, (label, reviewer or None, when or _now())):
            self.events.at[i, c] = v
        if label not in REVIEW_LABELS.values():
            raise ReviewError(
                f"reviewed label {label!r} is not one of {', '.join(REVIEW_LABELS.values())}"
            )
        self.dirty = True
        self._record(("add", new_id, self.events.iloc[[i]].copy()))
        return new_id

    def save(self) -> Path:
        """Write the table back to its file atomically; return the path."""
        out = write_events(self.events, self.path, self.table_format)
        self.dirty = False
        return out

    def snapshot(self) -> pd.DataFrame:
        """A copy of the table to write in another thread (see :func:`write_events`)."""
        return self.events.copy()

    # -- retraining ---------------------------------------------------------

    def review_counts(self) -> dict[str, int]:
        """Reviewed events of each label (all rows)."""
        counts = self.events[REVIEWED_MODE].value_counts()
        return {lab: int(counts.get(lab, 0)) for lab in REVIEW_LABELS.values()}

    def uncertain_margin(self) -> float:
        """``death.uncertain_margin`` of the run (the default when run.json does not say)."""
        from deathtrack.config import DeathConfig

        death = (self.run.get("config") or {}).get("death") or {}
        return float(death.get("uncertain_margin", DeathConfig().uncertain_margin))

    def retrain(self) -> RetrainResult:
        """Train the classifier on the reviewed events, then re-classify every detected event.

        Only events the pipeline detected (they carry its features) and that the reviewer
        called apoptotic (A) or necroptotic (N) train the model; X (not a death), U
        (uncertain) and added missed deaths are left out. ``p_necroptotic`` and ``mode``
        of every detected event are replaced by the new model's; the model is saved as
        ``classifier.json`` in the results folder.

        Raises
        ------
        ReviewError
            When fewer than 3 events of either mode were reviewed.
        """
        return self.apply_retrain(fit_retrain(self.events, self.uncertain_margin()))

    def apply_retrain(self, plan: RetrainPlan) -> RetrainResult:
        """Save the plan's model as ``classifier.json`` and put its calls in the table."""
        from deathtrack.classify import save_model

        model_path = save_model(plan.model, self.folder / MODEL_FILE)
        return self.apply_calls(plan, model_path)

    def apply_calls(self, plan: RetrainPlan, model_path: Path) -> RetrainResult:
        """Put the calls of a fitted plan (model already saved) in the table."""
        rows = self.events[col.EVENT_ID].isin(plan.event_ids).to_numpy()
        order = pd.Index(plan.event_ids).get_indexer(self.events.loc[rows, col.EVENT_ID])
        before = self.events.loc[rows, col.MODE].astype(object).to_numpy()
        modes = plan.modes[order]
        self.events.loc[rows, col.P_NECROPTOTIC] = np.round(plan.p_necroptotic[order], 4)
        self.events[col.MODE] = self.events[col.MODE].astype(object)
        self.events.loc[rows, col.MODE] = modes
        self.dirty = True
        return RetrainResult(
            n_train=dict(plan.n_train),
            n_changed=int((before != modes).sum()),
            n_classified=int(rows.sum()),
            model_path=Path(model_path),
        )


def write_events(events: pd.DataFrame, path: Path, table_format: str = "csv") -> Path:
    """Write an events table atomically (temporary file, then rename); return the path."""
    from deathtrack.pipeline import write_table

    return write_table(events, path, table_format)


def _detected(events: pd.DataFrame) -> np.ndarray:
    """Rows the pipeline detected (they carry its features), as opposed to added deaths."""
    from deathtrack.classify import FEATURES

    present = [f for f in FEATURES if f in events.columns]
    if len(present) < len(FEATURES):
        return np.zeros(len(events), bool)
    values = events[present].apply(pd.to_numeric, errors="coerce")
    return values.notna().any(axis=1).to_numpy()


def fit_retrain(events: pd.DataFrame, uncertain_margin: float) -> RetrainPlan:
    """Fit the classifier on the reviewed A/N events of ``events`` and call every detected one.

    Pure: ``events`` is not changed (a GUI runs this in a worker thread on a copy).

    Raises
    ------
    ReviewError
        When fewer than 3 events of either mode were reviewed.
    """
    from deathtrack.classify import predict_p_necroptotic, train_classifier

    has = _detected(events)
    labels = events[REVIEWED_MODE]
    counts = {m: int(((labels == m) & has).sum()) for m in (col.APOPTOTIC, col.NECROPTOTIC)}
    if min(counts.values()) < MIN_PER_MODE:
        need = ", ".join(
            f"{MIN_PER_MODE - n} more {m}" for m, n in counts.items() if n < MIN_PER_MODE
        )
        raise ReviewError(
            f"Too few reviewed events to retrain: the classifier needs at least "
            f"{MIN_PER_MODE} apoptotic (A) and {MIN_PER_MODE} necroptotic (N) detected "
            f"events; you have reviewed {counts[col.APOPTOTIC]} apoptotic and "
            f"{counts[col.NECROPTOTIC]} necroptotic. Review {need}. "
            "(X, U and added missed deaths are not used for training.)"
        )
    detected = events.loc[has]
    model = train_classifier([detected], label_column=REVIEWED_MODE)
    p = np.asarray(predict_p_necroptotic(model, detected), dtype=float)
    return RetrainPlan(
        model=model,
        event_ids=detected[col.EVENT_ID].to_numpy(),
        p_necroptotic=p,
        modes=np.asarray(mode_from_p(p, uncertain_margin), dtype=object),
        n_train=dict(model.n_train),
    )


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v) or (not isinstance(v, str) and pd.isna(v))


# ---------------------------------------------------------------------------
# keeping reviews across a re-run


def reviewed_rows(folder: str | Path) -> pd.DataFrame:
    """The events of a results folder that carry a reviewed label (empty when none)."""
    events = read_table(folder, "events") if table_path(folder, "events") else None
    if events is None or REVIEWED_MODE not in events.columns:
        return pd.DataFrame(columns=[col.EVENT_ID, *REVIEW_COLUMNS])
    labels = events[REVIEWED_MODE]
    return events[labels.notna() & (labels.astype(str) != "")].reset_index(drop=True)


def carry_over_reviews(folder: str | Path, reviewed: pd.DataFrame) -> tuple[int, int]:
    """Put the labels of an earlier review back on the events of ``folder``.

    The rules are :func:`deathtrack.review.carry_over_reviews` (what
    ``run_stack`` applies on every re-run); labels without a match are written
    to ``reviews_unmatched.csv`` so nothing a person decided is lost.

    Returns
    -------
    (kept, unmatched)
    """
    from deathtrack.pipeline import write_table
    from deathtrack.review import carry_over_reviews as carry

    folder = Path(folder)
    review = EventReview(folder)
    review.events, unmatched = carry(review.events, reviewed)
    review.save()
    if len(unmatched):
        write_table(unmatched, folder / UNMATCHED_FILE)
    return len(reviewed) - len(unmatched), len(unmatched)
