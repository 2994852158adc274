"""The ``deathtrack`` command line.

Heavy modules are imported inside the commands, so ``deathtrack --help``
returns at once. A user mistake (missing file, bad channel, bad config key)
prints one clear message and exits with status 2, without a traceback (the
log file keeps tracebacks). Exit statuses: 0 all done; 1 some stacks of a
batch failed (or an unexpected error); 2 a usage or input error, or every
stack failed; 130 Ctrl-C; 143 SIGTERM (finished outputs and ``summary.csv``
are kept either way).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path

import click

from ._memory import claim_process
from .errors import DeathtrackError, interrupt_behind

logger = logging.getLogger("deathtrack")

#: the demo movie and its truth ship inside the package (package data), so a wheel has them
SAMPLE_DIR = Path(str(importlib.resources.files("deathtrack") / "sample_data"))
DEMO_STACK = SAMPLE_DIR / "demo.ome.tif"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``kill`` and SLURM send), handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While a command runs, SIGTERM stops it the way Ctrl-C does: the summary is written,
    finished outputs are kept, the exit status is 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _friendly_errors(func):
    """Turn user errors into one line and exit status 2; Ctrl-C into status 130, SIGTERM
    into 143; anything else into one line and status 1 (its traceback goes to the log)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with _sigterm_as_interrupt():
                try:
                    return func(*args, **kwargs)
                except Exception as err:
                    stop = interrupt_behind(err)
                    if stop is None:
                        raise
                    raise stop from None
        except DeathtrackError as err:
            click.echo(f"deathtrack: error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as err:
            what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
            click.echo(f"deathtrack: {what}; finished outputs are kept.", err=True)
            sys.exit(143 if isinstance(err, Terminated) else 130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            logger.error(
                "unexpected error\n%s", traceback.format_exc(), extra={"deathtrack_console": False}
            )
            click.echo(
                f"deathtrack: error: unexpected {type(err).__name__}: {err} (a bug, please "
                "report it; the log file or -vv shows the details)",
                err=True,
            )
            sys.exit(1)

    return wrapper


class _ConsoleFormatter(logging.Formatter):
    """One line per record on the terminal: the first line of the message, no traceback
    (the log file keeps both); everything with -vv."""

    def __init__(self, full: bool):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.full = full

    def format(self, record: logging.LogRecord) -> str:
        if self.full:
            return super().format(record)
        first = record.getMessage().split("\n", 1)[0]
        return f"{record.levelname} {record.name}: {first}"


def _console_record(record: logging.LogRecord) -> bool:
    # a batch's per-stack failures are printed by the command itself, once
    return getattr(record, "deathtrack_console", True)


def _setup_logging(verbose: int, quiet: bool) -> None:
    # the terminal shows warnings (and progress bars); -v adds what each stage did
    level = (
        logging.DEBUG if verbose > 1 else logging.INFO if verbose and not quiet else logging.WARNING
    )
    handler = logging.StreamHandler()
    handler.setFormatter(_ConsoleFormatter(full=verbose > 1))
    handler.addFilter(_console_record)
    handler.setLevel(level)
    root = logging.getLogger("deathtrack")
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(min(level, logging.INFO))  # a log file gets INFO even with -q


def _parse_channels(values: tuple[str, ...]) -> dict[str, int | str]:
    from .columns import ROLES

    out: dict[str, int | str] = {}
    for item in values:
        role, sep, ch = item.partition("=")
        role = role.strip().lower()
        if not sep or not role or not ch.strip():
            raise click.BadParameter(
                f"{item!r} must look like ROLE=INDEX or ROLE=NAME, e.g. cells=0 or immune=CD8",
                param_hint="--channel",
            )
        if role not in ROLES:
            raise click.BadParameter(
                f"unknown role {role!r} in {item!r}; roles are: {', '.join(ROLES)}",
                param_hint="--channel",
            )
        ch = ch.strip()
        value = int(ch) if ch.isdigit() else ch
        if role in out and out[role] != value:
            raise click.BadParameter(
                f"role {role!r} is given twice ({role}={out[role]} and {item}); give each role "
                "once",
                param_hint="--channel",
            )
        out[role] = value
    return out


def _build_config(
    config_file, channels, pixel_size, interval, z_step, axes, overrides, force_calibration=False
):
    from .config import PipelineConfig, apply_overrides, load_config

    cfg = load_config(config_file) if config_file else PipelineConfig()
    flat: dict[str, object] = {}
    merged = {**cfg.input.channels, **_parse_channels(channels)}
    if channels:
        flat["input.channels"] = merged
    for key, value in (
        ("input.pixel_size_um", pixel_size),
        ("input.interval_s", interval),
        ("input.z_step_um", z_step),
        ("input.axes", axes),
        ("input.force_calibration", True if force_calibration else None),
    ):
        if value is not None:
            flat[key] = value
    if flat:
        cfg = apply_overrides(cfg, flat)
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    return cfg


def _input_options(func):
    opts = [
        click.option(
            "--channel",
            "channels",
            multiple=True,
            metavar="ROLE=INDEX|NAME",
            help="Channel role, repeatable: cells (required), immune, dye, caspase, nuclei. "
            "E.g. --channel cells=0 --channel immune=CD8. Default: from channel names.",
        ),
        click.option(
            "--pixel-size",
            type=float,
            default=None,
            metavar="UM",
            help="Pixel size in µm (overrides the file's metadata).",
        ),
        click.option(
            "--interval",
            type=float,
            default=None,
            metavar="S",
            help="Frame interval in seconds (overrides the file's metadata).",
        ),
        click.option(
            "--z-step",
            type=float,
            default=None,
            metavar="UM",
            help="Z step in µm for 3D stacks (overrides the file's metadata).",
        ),
        click.option(
            "--axes",
            default=None,
            metavar="AXES",
            help="Axes of the stored array when the file does not say, e.g. TCYX.",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="deathtrack")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """deathtrack: find, classify and measure cell deaths in live-cell movies.

    Start with `deathtrack info STACK` to check what deathtrack reads from a file,
    then `deathtrack run STACK --out DIR`. `deathtrack demo` runs on the bundled
    sample movie.
    """
    _setup_logging(verbose, quiet)
    # this process is deathtrack's own: trackpy comes without the optional modules it
    # would load
    claim_process()
    ctx.obj = {"progress": not quiet}


@main.command()
@click.argument("stack", type=click.Path(path_type=Path))
@_input_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_friendly_errors
def info(stack, channels, pixel_size, interval, z_step, axes, as_json):
    """Show a stack's shape, axes, dtype, calibration, channels and roles."""
    from .io import open_input

    cfg = _build_config(None, channels, pixel_size, interval, z_step, axes, ())
    with open_input(stack, cfg.input) as movie:
        data = movie.info()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(_format_info(data))


def _format_info(data: dict) -> str:
    cal = data.get("calibration", {})
    src = cal.get("source", {}) or {}

    notes = cal.get("notes", {}) or {}

    def fmt(key, unit, flag):
        value = cal.get(key)
        if value is None:
            said = f"; {notes[key]}" if key in notes else ""
            return f"unknown (pass {flag}{said})"
        origin = src.get(key)
        return f"{value:g} {unit}" + (f"  [{origin}]" if origin else "")

    from .io import INTERVAL_RANGE_S, PIXEL_SIZE_RANGE_UM

    checks = []
    px, py = cal.get("pixel_size_um"), cal.get("pixel_size_y_um")
    for key, what, unit, (lo, hi) in (
        ("pixel_size_um", "pixel size", "µm", PIXEL_SIZE_RANGE_UM),
        ("interval_s", "interval", "s", INTERVAL_RANGE_S),
    ):
        v = cal.get(key)
        if v is not None and not lo <= v <= hi:
            checks.append(
                f"{what} {v:g} {unit} is outside the plausible {lo:g}-{hi:g} {unit}: `run` "
                "refuses it unless --force-calibration"
            )
    if px is not None and py is not None and abs(px - py) > 0.01 * max(px, py):
        checks.append(
            f"pixels are not square ({py:g} µm along Y, {px:g} µm along X): `run` refuses them; "
            "resample the stack, or pass --pixel-size if the metadata is wrong"
        )

    lines = [
        f"file:        {data.get('path')}",
        f"format:      {data.get('format')}",
        f"axes:        {data.get('axes')}",
        f"shape:       {' x '.join(map(str, data.get('shape', ())))}",
        f"dtype:       {data.get('dtype')}",
        f"frames:      {data.get('n_frames')}",
        f"pixel size:  {fmt('pixel_size_um', 'µm', '--pixel-size UM')}",
        f"interval:    {fmt('interval_s', 's', '--interval S')}",
    ]
    if "Z" in str(data.get("axes", "")):
        lines.append(f"z step:      {fmt('z_step_um', 'µm', '--z-step UM')}")
    roles = data.get("roles", {}) or {}
    by_index = {}
    for role, idx in roles.items():
        by_index.setdefault(idx, []).append(role)
    lines.append("channels:")
    for i, name in enumerate(data.get("channel_names", [])):
        role = ", ".join(by_index.get(i, [])) or "-"
        lines.append(f"  {i}: {name:<20} role: {role}")
    for w in [*checks, *(data.get("warnings") or [])]:
        lines.append(f"warning:     {w}")
    return "\n".join(lines)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file of simulation parameters (see `deathtrack simulate --show-config`).",
)
@click.option(
    "--preset",
    default="default",
    help="Named scenario: default, dense, low_snr, divisions, no_deaths, no_dye, "
    "caspase, ignore, large, demo.",
)
@click.option("--seed", type=int, default=None, help="Random seed (overrides the config).")
@click.option("--name", default="movie", help="File name stem of the movie.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one parameter, e.g. --set n_frames=30 (repeatable).",
)
@click.option("--show-config", is_flag=True, help="Print the resolved parameters and exit.")
@_friendly_errors
def simulate(out, config_file, preset, seed, name, overrides, show_config):
    """Write a synthetic movie with known truth to OUT (a folder).

    OUT/NAME.ome.tif is the movie; OUT/NAME_truth/ holds the truth tables and
    label stacks, and simulation.toml, which regenerates the same movie.
    """
    from .config import apply_overrides, config_from_dict, config_to_dict, read_toml
    from .simulate import PRESETS, SimulationConfig, write_simulation
    from .simulate import preset as make_preset
    from .simulate import simulate as run_simulation

    cfg = make_preset(preset)  # validates the preset name
    if config_file:  # the file's values win over the preset's
        data = {**PRESETS[preset], **read_toml(config_file)}
        cfg = config_from_dict(data, SimulationConfig, source=str(config_file))
    if seed is not None:
        cfg = apply_overrides(cfg, {"seed": seed})
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    if show_config:
        import tomli_w

        click.echo(tomli_w.dumps(config_to_dict(cfg)))
        return
    sim = run_simulation(cfg)
    paths = write_simulation(sim, out, name=name, progress=True)
    ev = sim.truth()["events"]
    counts = ev["mode"].value_counts().to_dict() if len(ev) else {}
    click.echo(
        f"wrote {paths['movie']} ({' x '.join(map(str, sim.shape))}, TCYX) with "
        f"{len(ev)} deaths {counts or ''}; truth in {paths['events'].parent}"
    )


@main.command()
@click.argument("stacks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Results folder; one sub-folder per stack.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file (see `deathtrack config`).",
)
@_input_options
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config value, e.g. --set input.interval_s=120 (repeatable).",
)
@click.option(
    "--export-ctc",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Also write target-cell tracks in Cell Tracking Challenge format to DIR/<stem>_RES/ "
    "(for traccuracy, py-ctcmetrics, Fiji).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Stacks analysed in parallel, each in its own process (a local Dask cluster).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.5:8786); "
    "see the README for a laptop or a SLURM cluster.",
)
@click.option("--force", is_flag=True, help="Redo stacks whose results are already complete.")
@click.option(
    "--force-calibration",
    is_flag=True,
    help="Analyse stacks whose pixel size is outside 0.01-50 µm or whose frame interval is "
    "outside 0.1 s - 1 day (input.force_calibration); refused otherwise.",
)
@click.option("--no-report", is_flag=True, help="Do not write report.html files.")
@click.option(
    "--log-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Append the log here too.  [default: OUT/deathtrack.log]",
)
@_friendly_errors
def run(
    stacks,
    out_dir,
    config_file,
    channels,
    pixel_size,
    interval,
    z_step,
    axes,
    overrides,
    export_ctc,
    workers,
    scheduler,
    force,
    force_calibration,
    no_report,
    log_file,
):
    """Analyse STACK(s) and write results to --out DIR/<stem>/.

    STACK may be a file, a quoted glob ('plate1/*.ome.tif') or a folder (its
    stacks, or one stack if it holds numbered frames). Stacks whose results are
    complete for the same input and config are skipped, so re-running after an
    interruption resumes. DIR/summary.csv has one row per stack folder in DIR
    (ok / failed, and why); the exit status is 1 when some stacks of this run
    failed, 2 when all did; 130 after Ctrl-C, 143 after SIGTERM.
    """
    from .batch import run_batch
    from .io import ensure_folder

    cfg = _build_config(
        config_file, channels, pixel_size, interval, z_step, axes, overrides, force_calibration
    )
    ensure_folder(out_dir, "--out folder")
    _add_log_file(log_file or out_dir / "deathtrack.log")
    progress = click.get_current_context().obj["progress"]
    try:
        result = run_batch(
            stacks,
            cfg,
            out_dir,
            workers=workers,
            scheduler=scheduler,
            force=force,
            progress=progress,
            export_ctc=export_ctc,
            report=not no_report,
        )
    except KeyboardInterrupt as err:
        done = getattr(err, "batch_result", None)
        if done is not None:
            _echo_rows(done.summary)
            click.echo(f"summary: {done.files['summary']}")
        raise
    finally:
        _close_log_file()
    summary = result.this_run
    _echo_rows(result.summary)
    click.echo(f"summary: {result.files['summary']}")
    failed = result.n_failed
    if failed:
        if len(summary) > 1:
            click.echo(f"deathtrack: {failed} of {len(summary)} stack(s) failed", err=True)
        sys.exit(1 if failed < len(summary) else 2)


def _echo_rows(summary) -> None:
    """The lines a batch prints: one per stack of this run, a note on the other folders."""
    ours = summary["in_this_run"].astype(bool)
    for row in summary[ours].to_dict("records"):
        if row["status"] == "ok":
            note = " (complete already: skipped; --force redoes it)" if row["skipped"] else ""
            click.echo(f"{row['stack']}: wrote {row['out_dir']}{note}")
        elif row["status"] == "not run":
            continue
        else:
            click.echo(f"deathtrack: error: {row['reason']}", err=True)
    not_run = summary[ours & (summary["status"] == "not run")]
    if len(not_run):
        click.echo(
            f"deathtrack: {len(not_run)} stack(s) not run (interrupted): run the same command "
            "again to resume",
            err=True,
        )
    others = summary[~ours]
    if len(others):
        n_ok = int((others["status"] == "ok").sum())
        click.echo(
            f"summary: also {len(others)} other stack folder(s) in the results folder "
            f"({n_ok} complete, from earlier runs: column run_id)"
        )
    flagged = summary[(summary["status"] == "ok") & (summary["note"].astype(str) != "")]
    if len(flagged):
        click.echo(
            f"deathtrack: note: {len(flagged)} stack(s) analysed with another config "
            f"({', '.join(map(str, flagged['stem'][:5]))}) are left out of the pooled "
            "statistics (summary.csv, column note)",
            err=True,
        )


def _close_log_file() -> None:
    root = logging.getLogger("deathtrack")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(old)
        old.close()


def _add_log_file(path: Path) -> None:
    from .errors import OutputError

    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as err:
        raise OutputError(
            f"{path}: cannot write the log file ({err.strerror or err}); pass --log-file with "
            "a path you can write to"
        ) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    _close_log_file()
    logging.getLogger("deathtrack").addHandler(handler)


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo_results"),
    help="Results folder.",
)
@_friendly_errors
def demo(out_dir):
    """Run the pipeline on the bundled sample movie (sample_data/demo.ome.tif)."""
    from .batch import run_batch
    from .config import PipelineConfig
    from .errors import StackNotFoundError
    from .io import open_stack

    if not DEMO_STACK.exists():
        raise StackNotFoundError(
            f"{DEMO_STACK}: the sample movie is missing; regenerate it with "
            "`deathtrack simulate sample_data --preset demo --seed 8 --name demo`"
        )
    with open_stack(DEMO_STACK) as movie:
        click.echo(_format_info(movie.info()))
    progress = click.get_current_context().obj["progress"]
    result = run_batch([DEMO_STACK], PipelineConfig(), out_dir, force=True, progress=progress)
    row = result.summary.iloc[0]
    if row.status != "ok":
        raise DeathtrackError(f"the demo failed: {row.reason}")
    folder = Path(row.out_dir)
    info = json.loads((folder / "run.json").read_text())
    c = info["counts"]
    click.echo(
        f"\n{c.get('n_tracks_cells', 0)} target-cell tracks, {c.get('n_tracks_immune', 0)} "
        f"immune-cell tracks, {c.get('n_divisions', 0)} division(s) in {c['n_frames']} frames "
        f"({row.seconds:.0f} s). Deaths: {c.get('n_events', 0)} "
        f"({c.get('n_apoptotic', 0)} apoptotic, {c.get('n_necroptotic', 0)} necroptotic, "
        f"{c.get('n_uncertain', 0)} uncertain). "
        f"The truth is in {SAMPLE_DIR / 'demo_truth'} (8 deaths: 4 + 4, 2 divisions)."
    )
    click.echo(f"wrote {folder}:")
    for p in sorted(folder.iterdir()):
        click.echo(f"  {p.name}")
    click.echo(f"Open {folder / 'report.html'} in a web browser to see the results.")


@main.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file to write (JSON).",
)
@click.option(
    "--label-column",
    default="reviewed_mode",
    help="Column holding the reviewed mode (apoptotic / necroptotic).",
)
@_friendly_errors
def train(events, out_path, label_column):
    """Train the apoptotic / necroptotic classifier from reviewed EVENTS.csv files.

    Use the model with --set death.classifier=MODEL.json in deathtrack run.
    """
    import pandas as pd

    from .classify import save_model, train_classifier
    from .errors import StackNotFoundError

    tables = []
    for path in events:
        if not path.is_file():
            raise StackNotFoundError(f"{path}: no such events file")
        try:
            tables.append(pd.read_csv(path))
        except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
            raise DeathtrackError(
                f"{path}: not an events table (CSV): {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}; give the events.csv files of "
                "deathtrack results folders"
            ) from None
    model = train_classifier(tables, label_column=label_column)
    try:
        save_model(model, out_path)
    except OSError as err:
        from .errors import OutputError

        raise OutputError(
            f"{out_path}: cannot write the model ({err.strerror or err}); choose another --out"
        ) from None
    click.echo(f"wrote {out_path} (trained on {model.n_train})")


@main.command(name="config")
@click.option(
    "--file",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Validate this TOML file and print it with defaults filled in.",
)
@_friendly_errors
def config_cmd(config_file):
    """Print the full pipeline config (defaults, or a validated file) as TOML."""
    import tomli_w

    from .config import PipelineConfig, config_to_dict, load_config

    cfg = load_config(config_file) if config_file else PipelineConfig()
    click.echo(tomli_w.dumps(config_to_dict(cfg)))


def console_main() -> None:
    """The ``deathtrack`` console script: :func:`main`, then an exit without Python's final
    garbage collection over every object of NumPy, pandas, scikit-learn, trackpy, numba...
    (``gc.freeze``: ~1 s after a large run). Files are closed by then and the exit
    functions (log file, worker processes) still run."""
    import gc

    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    console_main()
