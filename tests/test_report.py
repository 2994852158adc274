"""report: self-contained HTML reports of a results folder and of a batch."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deathtrack.config import PipelineConfig
from deathtrack.pipeline import run_stack
from deathtrack.report import MODE_COLORS, _mean_ci, write_batch_report, write_report

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
STACK_SECTIONS = {
    "counts",
    "incidence",
    "recruitment",
    "stats",
    "gallery",
    "motility",
    "parameters",
    "warnings",
}
GALLERY_COLUMNS = 7  # report.GALLERY_FRAMES_REL


# ---------------------------------------------------------------------------
# fixtures: one real pipeline run, copied per test


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory, small_movie) -> Path:
    out = tmp_path_factory.mktemp("report_run")
    return run_stack(small_movie["movie"], PipelineConfig(), out, progress=False).out_dir


@pytest.fixture
def results(tmp_path, pipeline_dir) -> Path:
    """A fresh copy of the pipeline's results folder (no recruitment tables)."""
    folder = tmp_path / pipeline_dir.name
    shutil.copytree(pipeline_dir, folder)
    return folder


STATS = pd.DataFrame(
    {
        "metric": ["mean_within_r_post", "first_contact_s"],
        "n_apoptotic": [4, 4],
        "n_necroptotic": [3, 3],
        "mean_apoptotic": [1.3, 900.0],
        "mean_necroptotic": [3.4, 300.0],
        "difference": [2.1, -600.0],
        "ci_low": [1.2, -1000.0],
        "ci_high": [3.0, -100.0],
        "effect_size": [0.9, -0.6],
        "effect_size_ci_low": [0.5, -1.0],
        "effect_size_ci_high": [1.0, 0.1],
        "effect_size_name": ["Cliff's delta", "Cliff's delta"],
        "p_value": [0.03, 0.0004],
        "test": ["Mann-Whitney U, two-sided"] * 2,
        "p_permutation": [0.028, 0.001],
    }
)


OPTIONAL = ("recruitment.csv", "recruitment_stats.csv", "motility.csv")


def add_optional_tables(folder: Path, *, overwrite: bool = False, seed: int = 0) -> None:
    """Synthetic recruitment.csv, recruitment_stats.csv and motility.csv.

    Only the tables the pipeline did not write, unless ``overwrite``.
    """
    rng = np.random.default_rng(seed)
    events = pd.read_csv(folder / "events.csv")
    rows = []
    for e in events.itertuples():
        for dt in range(-10, 21):
            lam = 1.0 + (2.5 if e.mode == "necroptotic" and dt >= 0 else 0.3 * (dt >= 0))
            rows.append(
                {
                    "event_id": e.event_id,
                    "dt": dt,
                    "t_rel_s": dt * 120.0,
                    "frame": e.frame + dt,
                    "n_within_r": rng.poisson(lam),
                    "n_contact": rng.poisson(lam / 3),
                    "expected_within_r": 1.0 + 0.1 * rng.random(),
                }
            )
    if overwrite or not (folder / "recruitment.csv").exists():
        pd.DataFrame(rows).to_csv(folder / "recruitment.csv", index=False)
    if overwrite or not (folder / "recruitment_stats.csv").exists():
        STATS.to_csv(folder / "recruitment_stats.csv", index=False)
    if not overwrite and (folder / "motility.csv").exists():
        return
    tracks = pd.read_csv(folder / "tracks.csv", usecols=["track_id", "population"])
    ids = tracks.loc[tracks["population"] == "immune", "track_id"].unique()
    pd.DataFrame(
        {
            "track_id": ids,
            "n_frames": rng.integers(5, 40, len(ids)),
            "speed_um_per_min": rng.gamma(4, 1.5, len(ids)),
            "straightness": rng.random(len(ids)),
            "arrest_coefficient": rng.random(len(ids)),
        }
    ).to_csv(folder / "motility.csv", index=False)


# ---------------------------------------------------------------------------
# reading the HTML back


class Page(HTMLParser):
    """Tags, ids and visible text of a report."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.raw = text
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.chunks: list[str] = []
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    in_style = False

    def handle_starttag(self, tag, attrs):
        self.in_style = tag == "style"
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if not self.in_style:
            self.chunks.append(data)

    def imgs(self) -> list[dict]:
        return [a for t, a in self.tags if t == "img"]


def read_page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    data = base64.b64decode(src[len(prefix) :], validate=True)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


def check_images(page: Page) -> dict[str, Image.Image]:
    """Every <img> is a decodable PNG data URI of non-trivial size; returns them by alt."""
    out = {}
    imgs = page.imgs()
    assert imgs
    for a in imgs:
        image = decode_png(a["src"])
        assert min(image.size) >= 40, (a.get("alt"), image.size)
        assert a.get("alt")
        out[a["alt"]] = image
    return out


def check_self_contained(page: Page) -> None:
    """No scripts, style sheets or images from elsewhere; links are in-page or relative."""
    for tag, attrs in page.tags:
        assert tag not in {"script", "link", "iframe", "object", "embed"}, tag
        if "src" in attrs:
            assert attrs["src"].startswith("data:image/png;base64,"), attrs["src"][:80]
        if "href" in attrs:
            href = attrs["href"]
            assert href.startswith("#") or (":" not in href and not href.startswith("/")), href
    lowered = page.raw.lower()
    for bad in ("http:", "https:", "file:", "url("):
        assert bad not in lowered, bad


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".report.html.*"))


# ---------------------------------------------------------------------------
# stack report


def test_stack_report_has_every_section_figure_and_event(results):
    add_optional_tables(results)
    events = pd.read_csv(results / "events.csv")
    assert len(events) >= 3
    out = write_report(results)
    assert out == results / "report.html"
    assert no_temp_files(results)
    page = read_page(out)
    assert STACK_SECTIONS <= page.ids
    check_self_contained(page)
    images = check_images(page)
    for alt in (
        "cumulative number of deaths by mode over time",
        "immune-cell recruitment around deaths by call",
        "immune motility",
    ):
        assert alt in images
        assert images[alt].size[0] >= 400
    # gallery: cells and dye crops at 7 frames for every event, with outlines
    crops = [a for a in page.imgs() if a.get("class") == "crop"]
    assert len(crops) == len(events) * 2 * GALLERY_COLUMNS
    first = events.iloc[0]
    crop = np.asarray(images[f"event {first.event_id}, cells, frame {first.frame}"].convert("RGB"))
    colour = tuple(int(MODE_COLORS[first["mode"]][k : k + 2], 16) for k in (1, 3, 5))
    assert (crop == colour).all(-1).sum() > 20  # the dying cell's outline in its call's colour
    assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 100  # image pixels, not just outlines

    text = page.text
    assert "deathtrack report: small" in text
    assert "0.65 µm (from ome)" in text and "120 s = 2 min" in text
    assert "0.1.0" in text  # deathtrack version
    for e in events.itertuples():
        assert f"#{e.event_id} {e.mode}" in text
    assert "p(necroptotic)" in text
    stats = pd.read_csv(results / "recruitment_stats.csv")
    for metric in stats["metric"]:
        assert metric in text
    assert "noise_k" in text  # parameters
    assert "Warnings" in text


def test_statistics_put_effect_sizes_first_in_the_units_of_people(results):
    add_optional_tables(results, overwrite=True)
    page = read_page(write_report(results, max_gallery_events=1))
    text = page.text
    assert text.index("effect size: Cliff's delta [95 % CI]") < text.index("p-value")
    assert "difference of means (necroptotic − apoptotic) [95 % CI]" in text
    assert "time from death to first contact (min)" in text
    assert "−10 [−16.7, −1.67]" in text  # first_contact_s: seconds shown as minutes
    assert "2.1 [1.2, 3] 0.90 [0.50, 1.00] 0.030 0.028" in text
    assert "< 0.001" in text
    assert "(Mann-Whitney U, two-sided)" in text


def test_report_without_optional_tables_says_what_was_not_measured(results):
    for name in OPTIONAL:
        (results / name).unlink(missing_ok=True)
    page = read_page(write_report(results))
    assert STACK_SECTIONS <= page.ids
    check_self_contained(page)
    check_images(page)
    assert "No recruitment.csv in the results" in page.text
    assert "No recruitment_stats.csv" in page.text
    assert "No motility.csv in the results" in page.text


def test_report_with_empty_optional_tables(results):
    add_optional_tables(results)
    for name in ("recruitment", "motility"):
        df = pd.read_csv(results / f"{name}.csv")
        df.head(0).to_csv(results / f"{name}.csv", index=False)  # header only
    (results / "recruitment_stats.csv").write_text("")  # 0 bytes
    page = read_page(write_report(results))
    check_images(page)
    assert "recruitment.csv has no rows" in page.text
    assert "recruitment_stats.csv has no rows" in page.text
    assert "motility.csv has no rows" in page.text


def test_report_without_immune_channel(results):
    run = json.loads((results / "run.json").read_text())
    del run["input"]["roles"]["immune"]
    (results / "run.json").write_text(json.dumps(run))
    tracks = pd.read_csv(results / "tracks.csv")
    tracks[tracks["population"] == "cells"].to_csv(results / "tracks.csv", index=False)
    (results / "labels_immune.tif").unlink()
    page = read_page(write_report(results, max_gallery_events=2))
    assert "No immune channel: recruitment was not measured." in page.text
    assert "No immune channel: immune-cell motility was not measured." in page.text
    assert "immune-cell tracks – (no immune channel)" in page.text


def test_gallery_shows_outlines_only_when_the_stack_is_gone(results, tmp_path):
    n_events = len(pd.read_csv(results / "events.csv"))
    gone = tmp_path / "moved_away.ome.tif"
    page = read_page(write_report(results, stack_path=gone))
    assert f"The input stack {gone} was not found: showing outlines only." in page.text
    crops = [a for a in page.imgs() if a.get("class") == "crop"]
    assert len(crops) == n_events * GALLERY_COLUMNS  # one "outlines" row per event
    images = check_images(page)
    crop = np.asarray(images[crops[3]["alt"]].convert("RGB"))
    assert len(np.unique(crop.reshape(-1, 3), axis=0)) < 20  # outlines and fills, no image

    # the same when run.json points at a stack that has moved
    run = json.loads((results / "run.json").read_text())
    run["stack"] = str(gone)
    (results / "run.json").write_text(json.dumps(run))
    assert "showing outlines only" in read_page(write_report(results)).text


def test_report_with_no_deaths(results):
    add_optional_tables(results)
    events = pd.read_csv(results / "events.csv")
    events.head(0).to_csv(results / "events.csv", index=False)
    pd.read_csv(results / "recruitment.csv").head(0).to_csv(
        results / "recruitment.csv", index=False
    )
    page = read_page(write_report(results))
    assert "No deaths were found in this movie." in page.text
    assert "No deaths, so there was no recruitment to measure." in page.text
    assert not [a for a in page.imgs() if a.get("class") == "crop"]
    check_self_contained(page)


def test_reviewed_calls_win_and_text_is_escaped(results):
    events = pd.read_csv(results / "events.csv")
    events["reviewed_mode"] = ""
    events.loc[0, "reviewed_mode"] = (
        "necroptotic" if events.loc[0, "mode"] != "necroptotic" else "apoptotic"
    )
    events.loc[1, "reviewed_mode"] = "not_death"
    events.to_csv(results / "events.csv", index=False)
    run = json.loads((results / "run.json").read_text())
    run["warnings"] = ["<script>alert('x')</script> & more"]
    (results / "run.json").write_text(json.dumps(run))
    out = write_report(results, max_gallery_events=3)
    raw = out.read_text()
    assert "<script>" not in raw
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in raw
    page = Page(raw)
    assert f"2 of {len(events)} calls were reviewed by a person (2 changed)" in page.text
    assert f"deaths (all calls) {len(events) - 1}" in page.text
    assert "not a death (reviewed) 1" in page.text
    assert f"automatic call: {events.loc[0, 'mode']}" in page.text
    assert "Showing the first 3 of" in page.text


def test_report_is_written_atomically(results, monkeypatch):
    (results / "report.html").write_text("old report")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("deathtrack.report.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(results, max_gallery_events=1)
    assert (results / "report.html").read_text() == "old report"
    assert no_temp_files(results)


def test_report_leaves_pyplot_and_the_backend_alone(results, monkeypatch):
    """A napari session calls write_report: it must not use pyplot or switch backends."""
    import matplotlib

    def no_switch(*args, **kwargs):
        raise AssertionError("write_report switched the matplotlib backend")

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # importing it fails
    monkeypatch.setattr(matplotlib, "use", no_switch)
    add_optional_tables(results)
    page = read_page(write_report(results, max_gallery_events=1))
    assert len(check_images(page)) > 3


def test_missing_results_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run\.json: no such file"):
        write_report(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(FileNotFoundError, match=r"events\.csv: no such file.*status: failed"):
        write_report(tmp_path)


def test_bootstrap_ci_of_the_mean():
    rng = np.random.default_rng(0)
    m = rng.normal(2.0, 1.0, (40, 5))
    m[3, 2] = np.nan
    mean, lo, hi = _mean_ci(m, np.random.default_rng(1))
    np.testing.assert_allclose(mean, np.nanmean(m, 0))
    assert (lo < mean).all() and (mean < hi).all()
    assert ((hi - lo) < 1.0).all()  # about 4 standard errors (1/sqrt(40) each)
    _, lo1, hi1 = _mean_ci(m[:1], np.random.default_rng(1))
    assert np.isnan(lo1).all() and np.isnan(hi1).all()  # one event: no interval


# ---------------------------------------------------------------------------
# batch report


def make_batch(tmp_path: Path, pipeline_dir: Path) -> Path:
    out = tmp_path / "batch"
    out.mkdir()
    for stem in ("A01", "A02"):
        shutil.copytree(pipeline_dir, out / stem)
        run = json.loads((out / stem / "run.json").read_text())
        run["stem"] = stem
        (out / stem / "run.json").write_text(json.dumps(run))
    add_optional_tables(out / "A01")
    write_report(out / "A01", max_gallery_events=1)
    run = json.loads((out / "A01" / "run.json").read_text())
    rows = [
        {"stack": f"/data/{s}.ome.tif", "stem": s, "status": "ok", "reason": "", **run["counts"]}
        for s in ("A01", "A02")
    ]
    rows.append(
        {
            "stack": "/data/A03.ome.tif",
            "stem": "A03",
            "status": "failed",
            "reason": "StackReadError: cannot read frame 12 <corrupt page>",
        }
    )
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    STATS.to_csv(out / "recruitment_stats.csv", index=False)
    return out


def test_batch_report_lists_failed_stack_and_pools_the_rest(tmp_path, pipeline_dir):
    out = make_batch(tmp_path, pipeline_dir)
    n_events = len(pd.read_csv(out / "A01" / "events.csv"))
    path = write_batch_report(out)
    assert path == out / "report.html"
    assert no_temp_files(out)
    page = read_page(path)
    assert {"stacks", "counts", "recruitment", "stats", "warnings"} <= page.ids
    check_self_contained(page)
    images = check_images(page)
    assert "deaths per stack" in images
    assert "immune-cell recruitment around deaths by call" in images
    raw = page.raw
    failed_rows = [r for r in raw.split("<tr") if 'class="failed"' in r]
    assert len(failed_rows) == 1
    assert "A03" in failed_rows[0]
    assert "cannot read frame 12 &lt;corrupt page&gt;" in failed_rows[0]
    hrefs = [a["href"] for t, a in page.tags if t == "a" and not a["href"].startswith("#")]
    assert hrefs == ["A01/report.html"]  # A02 has no report yet, A03 failed
    assert "A02 (no report.html)" in page.text
    assert re.search(r"stacks 3 \(2 ok, 1 failed ?\)", page.text)
    assert f"all deaths {2 * n_events} 2" in page.text
    assert "mean_within_r_post" in page.text  # pooled statistics


def test_batch_report_without_summary_uses_the_folders(tmp_path, pipeline_dir):
    out = make_batch(tmp_path, pipeline_dir)
    (out / "summary.csv").unlink()
    (out / "recruitment_stats.csv").unlink()
    page = read_page(write_batch_report(out, stack_dirs=[out / "A01", out / "A02"]))
    assert "2 (2 ok, 0 failed)" in page.text
    assert "No recruitment_stats.csv in the batch folder" in page.text
    check_images(page)


# ---------------------------------------------------------------------------
# rendered by a browser


def screenshot(html_path: Path, png: Path, profile: Path, height: int = 4000) -> Image.Image:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size=1400,{height}",
        html_path.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return Image.open(png).convert("L")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_reports_render_in_a_browser(tmp_path, pipeline_dir):
    out = make_batch(tmp_path, pipeline_dir)
    write_batch_report(out)
    for name, html_path in (("stack", out / "A01" / "report.html"), ("batch", out / "report.html")):
        shot = np.asarray(
            screenshot(html_path, tmp_path / f"{name}.png", tmp_path / f"profile_{name}")
        )
        assert shot.shape == (4000, 1400)
        top = shot[:1500]
        assert top.std() > 20, name  # text, tables and figures, not a blank page
        assert (top < 128).mean() > 0.01, name


def test_crop_outlines_and_colours_are_scikit_image_and_matplotlib_s():
    """The gallery draws thousands of crops with its own edge finder and colour tables."""
    from matplotlib import colormaps
    from skimage.segmentation import find_boundaries

    from deathtrack.report import _colour_table, _inner_edges

    rng = np.random.default_rng(0)
    for _ in range(100):
        lab = rng.integers(0, 4, (rng.integers(1, 15), rng.integers(1, 15)))
        assert np.array_equal(_inner_edges(lab), find_boundaries(lab, mode="inner"))
        assert np.array_equal(_inner_edges(lab > 1), find_boundaries(lab > 1, mode="inner"))
    x = np.concatenate([rng.random(5000), [0.0, 1.0, 0.5, 255 / 256, 1 - 1e-12]])
    for name in ("gray", "magma"):
        got = _colour_table(name)[np.minimum((x * 256).astype(np.intp), 255)]
        assert np.array_equal(got, colormaps[name](x)[:, :3])


def test_gallery_drawn_by_helper_processes_is_the_same(results, monkeypatch):
    """A large gallery is made in pieces by the helper processes while the figures are
    drawn here (and here, the pieces no helper has started); the page is the same as
    drawn here alone."""
    import deathtrack.report as report

    add_optional_tables(results)
    assert len(pd.read_csv(results / "events.csv")) >= 3  # pieces of unequal sizes
    serial = write_report(results).read_text(encoding="utf-8")
    monkeypatch.setattr(report, "GALLERY_PARALLEL_MIN_EVENTS", 1)
    parallel = write_report(results).read_text(encoding="utf-8")

    def gallery(page):
        return page[page.index('<h2 id="gallery">') : page.index('<h2 id="motility">')]

    assert gallery(parallel) == gallery(serial)
    assert gallery(serial).count('class="crop"') >= 7
    assert len(parallel) == len(serial)


def test_gallery_of_a_run_in_threads_is_made_by_helper_threads(results, monkeypatch, threads_only):
    """A run whose frames were segmented in threads (run.json's ``frames_in``) stays one
    process: its large gallery is made in pieces by helper threads, never by helper
    processes, and is the same as drawn here alone."""
    import deathtrack.report as report

    add_optional_tables(results)
    serial = write_report(results).read_text(encoding="utf-8")
    run = json.loads((results / "run.json").read_text())
    run["frames_in"] = "threads"
    (results / "run.json").write_text(json.dumps(run))

    monkeypatch.setattr(report, "GALLERY_PARALLEL_MIN_EVENTS", 1)
    used = threads_only(report, "_gallery_rows")
    threaded = write_report(results).read_text(encoding="utf-8")

    def gallery(page):
        return page[page.index('<h2 id="gallery">') : page.index('<h2 id="motility">')]

    assert gallery(threaded) == gallery(serial)
    n_events = len(pd.read_csv(results / "events.csv"))
    assert n_events >= 2
    # in pieces, each drawn by a helper thread or here
    assert len(used) == min(report.GALLERY_PARTS, n_events)
    assert set(used) <= {"MainThread"} | {f"deathtrack-aside_{i}" for i in range(2)}


def test_gallery_in_pieces_reads_each_frame_once(results, monkeypatch, threads_only):
    """The gallery's pieces are read by frames: each frame of each channel shown is read
    once, however many deaths of however many pieces need it."""
    import collections

    import deathtrack.io as dio
    import deathtrack.report as report

    run = json.loads((results / "run.json").read_text())
    run["frames_in"] = "threads"
    (results / "run.json").write_text(json.dumps(run))
    monkeypatch.setattr(report, "GALLERY_PARALLEL_MIN_EVENTS", 1)
    reads = collections.Counter()
    read = dio.Movie.read

    def counted(self, role, t):
        reads[role, t] += 1
        return read(self, role, t)

    monkeypatch.setattr(dio.Movie, "read", counted)
    page = write_report(results).read_text(encoding="utf-8")
    events = pd.read_csv(results / "events.csv")
    wanted = {
        int(f) + dt
        for f in events["frame"]
        for dt in report.GALLERY_FRAMES_REL
        if 0 <= int(f) + dt < run["input"]["n_frames"]
    }
    assert len(events) >= 2 and len(wanted) > len(report.GALLERY_FRAMES_REL)
    assert {t for _, t in reads} == wanted
    assert set(reads.values()) == {1}
    assert 'class="crop"' in page


def test_gallery_without_deaths_says_so_and_reads_nothing(results, monkeypatch):
    import deathtrack.report as report

    events = pd.read_csv(results / "events.csv")
    events.iloc[:0].to_csv(results / "events.csv", index=False)
    read = []
    monkeypatch.setattr(report, "_gallery_crops", lambda *a, **k: read.append(a))
    page = write_report(results).read_text(encoding="utf-8")
    gallery = page[page.index('<h2 id="gallery">') : page.index('<h2 id="motility">')]
    assert "No deaths were found, so there is nothing to show." in gallery
    assert 'class="crop"' not in gallery and read == []


def test_gallery_in_pieces_says_each_source_note_once(results, monkeypatch, tmp_path):
    """Every piece finds the stack missing; the reader is told once."""
    import deathtrack.report as report

    monkeypatch.setattr(report, "GALLERY_PARALLEL_MIN_EVENTS", 1)
    missing = tmp_path / "moved_away.ome.tif"
    page = write_report(results, stack_path=missing).read_text(encoding="utf-8")
    gallery = page[page.index('<h2 id="gallery">') : page.index('<h2 id="motility">')]
    assert gallery.count("was not found: showing outlines only") == 1
    assert gallery.count('class="crop"') >= 7  # outlines are still drawn


def test_label_crops_are_int32_and_keep_every_track_id():
    from deathtrack.gallery import crop_labels

    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5:15] = 65535  # the largest id of a uint16 label stack
    crop = crop_labels(labels, 3, 3, 4)  # 9 x 9, partly outside the image
    assert crop.dtype == np.int32  # half the bytes of int64: the gallery ships thousands
    assert crop[0, 0] == -1 and crop[-1, -1] == 65535 and crop[4, 4] == 0
