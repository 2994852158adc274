"""The trainable classifier: fit on reviewed events, save as JSON, apply, refuse bad files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deathtrack.classify import (
    FEATURES,
    load_model,
    predict_p_necroptotic,
    save_model,
    train_classifier,
)
from deathtrack.cli import main
from deathtrack.errors import ConfigError, DeathtrackError


def _events(n, seed):
    """Feature tables with the biology of DESIGN.md and some noise; truth in reviewed_mode."""
    rng = np.random.default_rng(seed)
    nec = rng.uniform(size=n) < 0.5
    df = pd.DataFrame(
        {
            "area_ratio_before": np.where(nec, 1.5, 0.8) + rng.normal(0, 0.15, n),
            "area_ratio_min": np.where(nec, 1.0, 0.65) + rng.normal(0, 0.05, n),
            "reporter_drop": np.where(nec, 0.6, -0.2) + rng.normal(0, 0.2, n),
            "reporter_ratio_before": np.where(nec, 0.8, 1.3) + rng.normal(0, 0.1, n),
            "circularity_change": rng.normal(0, 0.05, n),
            "solidity_min_after": np.where(nec, 0.95, 0.85) + rng.normal(0, 0.03, n),
            "fragments_max_after": np.where(nec, 1, rng.integers(1, 5, n)),
            "dye_lag_min": np.where(nec, 0.0, np.where(rng.uniform(size=n) < 0.5, 40.0, np.nan)),
        }
    )
    df["reviewed_mode"] = np.where(nec, "necroptotic", "apoptotic")
    return df


def test_trained_model_separates_held_out_events(tmp_path):
    model = train_classifier([_events(60, 1)])
    assert model.n_train["apoptotic"] + model.n_train["necroptotic"] == 60
    test = _events(200, 2)
    p = predict_p_necroptotic(model, test)
    called = np.where(p >= 0.5, "necroptotic", "apoptotic")
    acc = [(called[test.reviewed_mode == m] == m).mean() for m in ("apoptotic", "necroptotic")]
    assert np.mean(acc) >= 0.95
    again = load_model(save_model(model, tmp_path / "m.json"))
    np.testing.assert_allclose(predict_p_necroptotic(again, test), p)
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["format"] == "deathtrack-classifier" and data["features"] == FEATURES


def test_unreviewed_rows_are_left_out_and_too_few_refused():
    ev = _events(40, 3)
    ev.loc[:5, "reviewed_mode"] = "not_death"
    assert sum(train_classifier([ev]).n_train.values()) == 34
    few = _events(40, 3).head(4)
    with pytest.raises(DeathtrackError, match="at least 3 reviewed events of each mode"):
        train_classifier([few])
    with pytest.raises(DeathtrackError, match="has no 'reviewed_mode' column"):
        train_classifier([_events(10, 4).drop(columns="reviewed_mode")])


def test_only_our_json_loads(tmp_path):
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95")
    with pytest.raises(ConfigError, match="not a deathtrack classifier \\(not JSON"):
        load_model(pickled)
    other = tmp_path / "other.json"
    other.write_text('{"coef": [1]}')
    with pytest.raises(ConfigError, match="no format = 'deathtrack-classifier'"):
        load_model(other)
    with pytest.raises(ConfigError, match="classifier model not found"):
        load_model(tmp_path / "missing.json")


def test_train_command(tmp_path):
    csv = tmp_path / "reviewed.csv"
    _events(50, 5).to_csv(csv, index=False)
    result = CliRunner().invoke(main, ["train", str(csv), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.json").n_train["necroptotic"] > 0
    result = CliRunner().invoke(main, ["train", str(tmp_path / "nope.csv"), "--out", "x.json"])
    assert result.exit_code == 2 and "nope.csv: no such events file" in result.output


def test_run_uses_a_trained_model(tmp_path, small_movie):
    model_path = save_model(train_classifier([_events(60, 6)]), tmp_path / "m.json")
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "run",
            str(small_movie["movie"]),
            "--out",
            str(out),
            "--set",
            f"death.classifier='{model_path.as_posix()}'",
        ],
    )
    assert result.exit_code == 0, result.output
    events = pd.read_csv(out / "small" / "events.csv")
    assert len(events) >= 4
    expected = np.round(predict_p_necroptotic(load_model(model_path), events), 4)
    np.testing.assert_allclose(events.p_necroptotic, expected)
    assert set(events["mode"]) <= {"apoptotic", "necroptotic", "uncertain"}
