"""Batch runs: many stacks in one command, resumable, serial or on a Dask cluster.

:func:`run_batch` is what ``deathtrack run STACK... --out DIR`` calls. Each
stack is analysed by :func:`process_stack` (the pipeline, then its
report) — in this process, in ``workers`` local processes, or on the
workers of a Dask cluster at ``scheduler``; all three take the same code
path through a :class:`concurrent.futures.Executor`-like client, so their
tables are byte-identical. One bad stack fails alone: its row in
``DIR/summary.csv`` says why, the others finish. A stack whose folder holds
a complete run (``run.json`` with status ``ok``, every output present) of the
same input bytes and the same config is skipped, so re-running a command
after an interruption picks up where it stopped (``force=True`` redoes all).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as col
from .config import PipelineConfig, config_from_dict, config_to_dict
from .errors import DeathtrackError
from .pipeline import read_table, table_path

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_OUTPUTS",
    "SUMMARY_COLUMNS",
    "BatchResult",
    "expand_stacks",
    "is_complete",
    "process_stack",
    "run_batch",
]

#: files a finished stack folder holds (tables may be .parquet instead of .csv)
REQUIRED_OUTPUTS = (
    "tracks",
    "events",
    "recruitment",
    "lineage",
    "run.json",
    "report.html",
)

#: columns of ``summary.csv``
SUMMARY_COLUMNS = [
    "stack",
    "stem",
    "status",
    "reason",
    "skipped",
    "n_frames",
    "n_tracks_cells",
    "n_tracks_immune",
    "n_divisions",
    "n_events",
    "n_apoptotic",
    "n_necroptotic",
    "n_uncertain",
    "mean_within_r_post_apoptotic",
    "mean_within_r_post_necroptotic",
    "recruitment_index_apoptotic",
    "recruitment_index_necroptotic",
    "seconds",
    "out_dir",
]

_STACK_SUFFIXES = (".tif", ".tiff", ".btf", ".zarr")
_FRAME_FILE = re.compile(r"^[A-Za-z_\-]*\d+\.tiff?$", re.IGNORECASE)


@dataclass
class BatchResult:
    """What :func:`run_batch` did: one summary row per stack, and where it wrote."""

    summary: pd.DataFrame
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return int((self.summary["status"] != "ok").sum())


def _is_stack_path(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith(_STACK_SUFFIXES) and not name.startswith(".")


def _is_frame_folder(p: Path) -> bool:
    """A folder of numbered single-frame TIFFs (Cell Tracking Challenge layout): one stack."""
    tiffs = [f.name for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".tif", ".tiff")]
    return bool(tiffs) and all(_FRAME_FILE.match(n) for n in tiffs)


def expand_stacks(items: Iterable[str | Path]) -> list[tuple[str, Path | None, str]]:
    """Turn files, globs and folders into the list of stacks to analyse.

    - a file, or a ``.zarr`` folder, is one stack;
    - a glob (``plate1/*.ome.tif``, quoted so the shell leaves it) is every
      stack it matches, in sorted order;
    - a folder of numbered single-frame TIFFs (``t000.tif, t001.tif, ...``)
      is one stack; any other folder stands for the stacks directly inside it.

    Returns
    -------
    list of (given, path, problem)
        ``problem`` is empty, or says why ``given`` yields no stack (then
        ``path`` is None); such items become ``failed`` rows, not errors.
    """
    out: list[tuple[str, Path | None, str]] = []
    for item in items:
        s = str(item)
        p = Path(s)
        if any(ch in s for ch in "*?[") and not p.exists():
            hits = sorted(Path(h) for h in glob.glob(s, recursive=True))
            hits = [h for h in hits if h.is_file() or h.suffix.lower() == ".zarr"]
            if not hits:
                out.append((s, None, f"{s}: no file matches this pattern"))
            out.extend((str(h), h, "") for h in hits)
        elif p.is_dir() and p.suffix.lower() != ".zarr" and not _is_frame_folder(p):
            inside = sorted(q for q in p.iterdir() if _is_stack_path(q))
            if not inside:
                out.append(
                    (
                        s,
                        None,
                        f"{s}: folder holds no stacks (.tif, .tiff, .ome.tif, .zarr) "
                        "and is not a folder of numbered frames (t000.tif, ...)",
                    )
                )
            out.extend((str(q), q, "") for q in inside)
        else:
            out.append((s, p, ""))
    return out


def _normalised(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def is_complete(
    stack_dir: str | Path, checksum: str, config: PipelineConfig, *, report: bool = True
) -> bool:
    """Whether ``stack_dir`` holds a finished run of these input bytes and this config.

    ``report``: whether ``report.html`` must be there too.
    """
    folder = Path(stack_dir)
    try:
        info = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    if info.get("status") != "ok" or info.get("input_checksum") != checksum:
        return False
    if _normalised(info.get("config")) != _normalised(
        json.loads(json.dumps(config_to_dict(config), default=str))
    ):
        return False
    for name in REQUIRED_OUTPUTS:
        if name == "report.html" and not report:
            continue
        if "." in name:
            if not (folder / name).exists():
                return False
        elif table_path(folder, name) is None:
            return False
    return True


def _row_from_folder(row: dict, folder: Path) -> dict:
    """Fill a summary row with the counts and recruitment means of a finished folder."""
    info = json.loads((folder / "run.json").read_text())
    counts = info.get("counts", {})
    for key in SUMMARY_COLUMNS:
        if key.startswith("n_") and key in counts:
            row[key] = counts[key]
    ev = read_table(folder, "events")
    if ev is not None:
        for metric in ("mean_within_r_post", "recruitment_index"):
            for mode in (col.APOPTOTIC, col.NECROPTOTIC):
                vals = ev.loc[ev[col.MODE] == mode, metric] if metric in ev else pd.Series()
                vals = pd.to_numeric(vals, errors="coerce").dropna()
                row[f"{metric}_{mode}"] = float(vals.mean()) if len(vals) else math.nan
    return row


def process_stack(
    stack: str | Path,
    config: PipelineConfig | dict,
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = False,
    export_ctc: str | Path | None = None,
    report: bool = True,
) -> dict:
    """Analyse one stack (unless already done) and return its ``summary.csv`` row.

    Never raises for a bad stack: a user error (unreadable file, wrong axes,
    missing calibration, ...) or an unexpected failure becomes a ``failed``
    row whose ``reason`` says what went wrong. Ctrl-C still stops the run.
    """
    from .io import stack_stem
    from .pipeline import input_checksum, run_stack

    cfg = config if isinstance(config, PipelineConfig) else config_from_dict(config)
    stack = Path(stack)
    folder = Path(out_dir) / stack_stem(stack)
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
    row.update(stack=str(stack), stem=folder.name, status="failed", reason="", skipped=False,
               out_dir=str(folder))  # fmt: skip
    t0 = time.perf_counter()
    try:
        if not stack.exists():
            from .errors import StackNotFoundError

            raise StackNotFoundError(f"{stack}: no such file or folder")
        if not force and folder.exists():
            checksum = input_checksum(stack)
            if is_complete(folder, checksum, cfg, report=report):
                row.update(status="ok", skipped=True)
                return _row_from_folder(row, folder)
        result = run_stack(stack, cfg, out_dir, progress=progress, export_ctc=export_ctc)
        if report:
            from .report import write_report

            write_report(result.out_dir, stack_path=stack)
        row.update(status="ok")
        _row_from_folder(row, folder)
    except DeathtrackError as err:
        row["reason"] = str(err)
    except Exception as err:
        # a bug or an unforeseen input: this stack fails, the batch goes on, the log has it all
        logger.error("%s: unexpected error\n%s", stack, traceback.format_exc())
        row["reason"] = f"{stack}: unexpected {type(err).__name__}: {err} (see the log)"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


class _Deferred:
    """A job of :class:`_SerialClient`: runs when its result is asked for."""

    def __init__(self, fn, args, kwargs):
        self._call = (fn, args, kwargs)

    def result(self):
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)


class _SerialClient:
    """The client used without workers: runs each job in this process, one after another."""

    def submit(self, fn, *args, **kwargs) -> _Deferred:
        return _Deferred(fn, args, kwargs)

    def close(self) -> None:
        pass


def _client(workers: int, scheduler: str | None):
    if scheduler is None and workers <= 1:
        return _SerialClient(), None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        from .errors import ConfigError

        raise ConfigError(
            "--workers and --scheduler need Dask distributed: pip install 'deathtrack[dask]'"
        ) from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as err:
            from .errors import ConfigError

            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}); is it running? "
                "Start one with `dask scheduler` (see the README)"
            ) from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster


def _as_completed(futures: Sequence, client):
    if isinstance(client, _SerialClient):
        yield from futures
    else:
        from distributed import as_completed

        yield from as_completed(futures)


def run_batch(
    stacks: Iterable[str | Path],
    config: PipelineConfig | None = None,
    out_dir: str | Path = "results",
    *,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    export_ctc: str | Path | None = None,
    report: bool = True,
) -> BatchResult:
    """Analyse every stack and write ``out_dir/<stem>/``, ``summary.csv`` and the pooled stats.

    Parameters
    ----------
    stacks
        Files, globs and folders (see :func:`expand_stacks`).
    config
        Pipeline parameters, the same for every stack.
    out_dir
        Results folder.
    workers
        Local worker processes (a Dask ``LocalCluster``); 1 runs in this process.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); overrides
        ``workers``.
    force
        Redo stacks whose outputs are complete.
    progress
        Progress bars (over stacks; over frames too when serial).
    export_ctc
        Also write Cell Tracking Challenge results per stack to this folder.
    report
        Write ``report.html`` per stack and for the batch.

    Returns
    -------
    BatchResult
        ``summary`` (one row per stack, in the order given) and the files written.
    """
    from tqdm.auto import tqdm

    from .io import stack_stem
    from .pipeline import write_table

    cfg = config or PipelineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = expand_stacks(stacks)
    rows: list[dict | None] = [None] * len(items)
    seen: dict[str, str] = {}
    todo = []
    for i, (given, path, problem) in enumerate(items):
        if path is not None:
            stem = stack_stem(path)
            if stem in seen:
                problem = (
                    f"{given}: its results folder {out / stem} is also {seen[stem]}'s; "
                    "rename one of the files or run them with different --out folders"
                )
            else:
                seen[stem] = given
        if problem:
            row = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
            row.update(stack=given, stem="", status="failed", reason=problem, skipped=False)
            rows[i] = row
        else:
            todo.append((i, path))

    serial = scheduler is None and workers <= 1
    client, cluster = _client(workers, scheduler)
    cfg_arg: Any = cfg if serial else config_to_dict(cfg)
    t0 = time.perf_counter()
    try:
        futures = {}
        for i, path in todo:
            fut = client.submit(
                process_stack,
                path,
                cfg_arg,
                out,
                force=force,
                progress=progress and serial,
                export_ctc=export_ctc,
                report=report,
                **({} if serial else {"pure": False, "key": f"deathtrack-{i}-{path.name}"}),
            )
            futures[fut] = i
        bar = tqdm(
            total=len(items), desc="stacks", unit="stack", disable=not progress or len(items) < 2
        )
        bar.update(len(items) - len(todo))
        for fut in _as_completed(list(futures), client):
            row = fut.result()
            rows[futures[fut]] = row
            bar.update(1)
            if row["status"] == "ok":
                logger.info("%s: %s", row["stack"], "done before, skipped" if row["skipped"]
                            else f"ok ({row['seconds']} s)")  # fmt: skip
            else:
                logger.error("%s: failed: %s", row["stack"], row["reason"])
        bar.close()
    finally:
        # interrupted or not, the summary says what is done; a re-run resumes from it
        for i, row in enumerate(rows):
            if row is None:
                given = items[i][0]
                rows[i] = {
                    **dict.fromkeys(SUMMARY_COLUMNS, math.nan),
                    "stack": given,
                    "stem": stack_stem(given),
                    "status": "not run",
                    "reason": "interrupted before this stack finished",
                    "skipped": False,
                }
        summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
        files = {"summary": write_table(summary, out / "summary.csv")}
        client.close()
        if cluster is not None:
            cluster.close()
    files.update(_pooled(summary, out, cfg, report))
    logger.info(
        "%d stack(s): %d ok, %d failed, in %.0f s",
        len(summary),
        int((summary.status == "ok").sum()),
        int((summary.status != "ok").sum()),
        time.perf_counter() - t0,
    )
    return BatchResult(summary=summary, out_dir=out, files=files)


def _pooled(summary: pd.DataFrame, out: Path, cfg: PipelineConfig, report: bool) -> dict:
    """Pooled comparison of recruitment by mode across stacks, and the batch report."""
    from .pipeline import write_table
    from .recruit import compare_modes

    files = {}
    tables = []
    for row in summary[summary.status == "ok"].itertuples(index=False):
        ev = read_table(row.out_dir, "events")
        if ev is None:
            continue
        tables.append(ev.assign(stack=row.stem))
    if tables:
        events = pd.concat(tables, ignore_index=True)
        stats = compare_modes(
            events,
            n_bootstrap=cfg.recruit.n_bootstrap,
            n_permutations=cfg.recruit.n_permutations,
            seed=cfg.recruit.seed,
            stack_col="stack",
        )
        files["recruitment_stats"] = write_table(stats, out / "recruitment_stats.csv")
    if report:
        try:
            from .report import write_batch_report

            files["report"] = write_batch_report(out)
        except Exception as err:
            logger.error("the batch report could not be written: %s", err)
    return files
