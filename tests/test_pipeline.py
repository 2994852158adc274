"""run_stack: progress callback and cancelling a run."""

from __future__ import annotations

import pytest

from deathtrack.config import PipelineConfig
from deathtrack.pipeline import run_stack


class Cancelled(Exception):
    pass


def test_progress_callback_reports_every_frame_and_stage(tmp_path, small_movie):
    calls = []
    run_stack(
        small_movie["movie"],
        PipelineConfig(),
        tmp_path,
        progress=False,
        on_progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    seg = [c for c in calls if c[0] == "segment"]
    assert [c[1] for c in seg] == list(range(1, 41))
    assert all(c[2] == 40 for c in seg)
    assert [c[0] for c in calls if c[0] != "segment"][:2] == ["track", "death"]


def test_exception_in_callback_cancels_and_leaves_no_half_written_outputs(tmp_path, small_movie):
    seen = []

    def cancel_at_5(stage, done, total):
        seen.append(done)
        if done == 5:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_stack(
            small_movie["movie"], PipelineConfig(), tmp_path, progress=False, on_progress=cancel_at_5
        )
    assert max(seen) == 5
    out = tmp_path / "small"
    # no tables, no run.json, no temporary work folder left behind
    assert sorted(p.name for p in out.iterdir()) == []
