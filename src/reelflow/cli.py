"""`reelflow ...`: a thin command line over the stages and flows.

Exit codes: 0 done; 1 a reelflow error (message on stderr, no traceback); 2 bad usage or
config; 3 QC found errors (``qc`` and ``ingest``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from reelflow.encoding.codecs import CODECS
from reelflow.errors import ConfigError, QCFailed, ReelflowError
from reelflow.infra.settings import Settings, load_settings
from reelflow.infra.tools import require_encoder

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="reelflow: ingest mezzanine files into per-title DASH and HLS streams.",
)
err = Console(stderr=True, soft_wrap=True)  # long paths stay on one line, copy-pastable

EXIT_ERROR, EXIT_USAGE, EXIT_QC = 1, 2, 3

SourceArg = Annotated[Path, typer.Argument(help="Source media file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (see README); REELFLOW_CONFIG also works.")
]


class _State:
    settings_file: Path | None = None
    verbose: bool = False


state = _State()


@app.callback()
def _root(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each binary's command line.")] = False,
) -> None:
    state.settings_file = config
    state.verbose = verbose
    if config is not None:
        load_settings(config)  # a bad config file is reported by every command, not only those that use it
    # Only reelflow's own loggers: Prefect brings its console handler for its loggers. The level
    # is on the handler, so INFO records still reach Prefect's API handler during a flow run.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    reelflow_log = logging.getLogger("reelflow")
    reelflow_log.addHandler(handler)
    reelflow_log.setLevel(logging.DEBUG if verbose else logging.INFO)
    reelflow_log.propagate = False  # not twice: Prefect's root console handler would print these again


class _ConsoleFormatter(logging.Formatter):
    """Prefect's console format, minus the traceback of a reelflow error.

    A reelflow error is a message for a person; its traceback is noise on a terminal. Only the
    console handler gets this formatter: the Prefect API handler still sends the full record,
    so the UI keeps the traceback.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and isinstance(record.exc_info[1], ReelflowError)):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def _quiet_console_tracebacks() -> None:
    """Give Prefect's console handlers the formatter above (call after importing Prefect)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _ConsoleFormatter):
                handler.setFormatter(_ConsoleFormatter(handler.formatter))


def _settings(ladder_mode: str | None = None, codec: str | None = None) -> Settings:
    """The settings, with ``--mode``/``--ladder`` and ``--codec`` over the file's (the cross-section rules
    checked for them); the codec's encoder must be in the ffmpeg in use."""
    overrides: dict[str, Any] = {}
    if ladder_mode is not None:
        if ladder_mode not in ("fixed", "per-title", "per-shot"):
            raise typer.BadParameter(f"{ladder_mode!r} is not one of fixed, per-title, per-shot")
        overrides["ladder"] = {"mode": ladder_mode}
    if codec is not None:
        if codec not in CODECS:
            raise typer.BadParameter(f"{codec!r} is not one of {', '.join(CODECS)}", param_hint="--codec")
        overrides["encode"] = {"codec": codec}
    settings = load_settings(state.settings_file, **overrides)
    if settings.encode.codec != "h264":
        require_encoder(CODECS[settings.encode.codec].encoder)
    return settings


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def _progress(label: str, total: float, show: bool) -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr (only on a terminal); yields an update(done) callback."""
    if not show or not err.is_terminal:
        yield lambda done: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task_id = bar.add_task(label, total=total)
        yield lambda done: bar.update(task_id, completed=min(done, total))


@app.command()
def probe(source: SourceArg, json_out: JsonOpt = False) -> None:
    """Streams, exact frame rate, duration, size, aspect, colour and audio of SOURCE."""
    from reelflow.encoding.probe import probe as probe_media

    info = probe_media(source)
    if json_out:
        _emit_json(info.to_dict())
        return
    v = info.video
    table = Table(show_header=False, box=None)
    table.add_row("file", f"{info.path} ({info.format_name}, {info.size_bytes:,} bytes)")
    table.add_row("duration", f"{info.duration_s:.3f} s")
    table.add_row("video", f"{v.codec} {v.width}x{v.height} SAR {v.sar} DAR {v.dar}, {v.fps} fps "
                           f"({float(v.fps):.3f}), {v.frames} frames, {v.pix_fmt}, {v.bit_depth}-bit")
    table.add_row("colour", f"primaries {v.color_primaries or '-'}, transfer {v.color_transfer or '-'}, "
                            f"matrix {v.color_matrix or '-'}, range {v.color_range or '-'}, "
                            f"fields {v.field_order or '-'}")
    for a in info.audio:
        table.add_row(f"audio #{a.index}", f"{a.codec} {a.channels} ch ({a.layout}) {a.sample_rate} Hz, "
                                           f"{a.duration_s:.3f} s, start {a.start_s:.3f} s, lang {a.language or '-'}")
    Console().print(table)


@app.command()
def qc(source: SourceArg, json_out: JsonOpt = False) -> None:
    """Quality-check SOURCE in one decode pass; exit 3 when a check fails with severity error."""
    from reelflow.encoding.probe import probe as probe_media
    from reelflow.encoding.qc import run_qc

    settings = _settings()
    info = probe_media(source)
    with _progress("QC", info.duration_s, show=True) as update:
        report = run_qc(source, settings.qc, info=info, progress=update)
    if json_out:
        _emit_json(report.to_dict())
    else:
        table = Table("check", "result", "severity", "message")
        for check in report.checks:
            if check.passed:
                result = "[green]ok[/]"
            else:
                result = "[red]FAIL[/]" if check.severity == "error" else "[yellow]flag[/]"
            table.add_row(check.name, result, check.severity, check.message)
        Console().print(table)
        Console().print(f"verdict: [bold]{report.verdict}[/]")
    if report.verdict == "error":
        raise typer.Exit(EXIT_QC)


@app.command()
def shots(source: SourceArg, json_out: JsonOpt = False) -> None:
    """Detect shots in SOURCE: 0-based frame bounds, end exclusive, and times."""
    from reelflow.encoding.probe import probe as probe_media
    from reelflow.encoding.shots import detect_shots

    settings = _settings()
    info = probe_media(source)
    with _progress("shots", info.video.frames, show=True) as update:
        found = detect_shots(source, settings.shots, info=info, progress=lambda done, total: update(done))
    if json_out:
        _emit_json(found.to_dict())
        return
    table = Table("#", "start frame", "end frame", "start s", "end s", "boundary")
    for s in found.shots:
        table.add_row(str(s.index), str(s.start_frame), str(s.end_frame), f"{s.start_s:.3f}", f"{s.end_s:.3f}",
                      s.boundary)
    Console().print(table)
    Console().print(f"{len(found.shots)} shots, {len(found.cuts)} cuts, {found.frames} frames at {found.fps} fps")


ModeOpt = Annotated[str | None, typer.Option(
    "--mode", help="per-shot (each shot its own CRF per rung), per-title (one CRF per rung) or fixed "
                   "(Apple's ladder); default from settings (per-shot).", show_default=False)]
CodecOpt = Annotated[str | None, typer.Option(
    "--codec", help="Video codec: h264, hevc (libx265) or av1 (SVT-AV1); hevc and av1 for measured ladders "
                    "only. Default from settings (encode.codec: h264).", show_default=False)]


@app.command()
def ladder(
    source: SourceArg,
    mode: ModeOpt = None,
    codec: CodecOpt = None,
    json_out: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write ladder.png (trials, hulls, rungs, the fixed "
                                                              "ladder) to this file.")] = None,
) -> None:
    """Analyse SOURCE (shots, trial encodes, VMAF, convex hulls) and print the ladder it would get."""
    import tempfile

    from reelflow.encoding.analysis import analyse_ladder, fixed_estimates, summary
    from reelflow.encoding.encode import keyframe_frames
    from reelflow.encoding.ladder_plot import plot_ladder
    from reelflow.encoding.probe import probe as probe_media
    from reelflow.encoding.shots import detect_shots

    settings = _settings(mode, codec)
    chosen = settings.ladder.mode
    if plot is not None and chosen == "fixed":
        raise typer.BadParameter("the fixed ladder tries nothing to plot; use --mode per-shot or per-title",
                                 param_hint="--plot")
    info = probe_media(source)
    with _progress("shots", info.video.frames, show=not json_out) as update:
        found = detect_shots(source, settings.shots, info=info, progress=lambda done, total: update(done))
    keyframes = keyframe_frames([s.start_frame for s in found.shots], info.video.frames, info.video.fps,
                                settings.encode.segment_s)
    work_root = settings.storage.work_dir.resolve()
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ladder-", dir=work_root) as work:
        if not json_out:
            err.print(f"[bold]ladder[/] {source}: {len(found.shots)} shots, {chosen} trials ...")
        analysis = analyse_ladder(source, info, found.shots, settings, Path(work), keyframes=keyframes,
                                  mode=chosen, parallel=settings.encode.parallel_encodes)
    result = summary(analysis, settings.encode.codec)
    if plot is not None:
        plot_ladder(plot, analysis.points, analysis.rungs, mode=chosen, fixed=fixed_estimates(analysis),
                    fixed_label="fixed ladder (predicted from the trials)", title=f"{source.name}: {chosen} ladder")
        result["plot"] = str(plot)
    if json_out:
        _emit_json(result)
        return
    table = Table("rung", "size", "kbps", "VMAF", "CRFs")
    for i, r in enumerate(result["rungs"]):
        crfs = r.get("crfs") or []
        span = f"{min(crfs):.1f}-{max(crfs):.1f}" if crfs else "-"
        table.add_row(str(i), f"{r['width']}x{r['height']}", f"{r['kbps']:.0f}",
                      "-" if r["vmaf"] is None else f"{r['vmaf']:.1f}", span)
    out = Console()
    out.print(table)
    out.print(f"{chosen}, {codec}: analysis {result['analysis_cpu_s']:.1f} CPU s over {result['shots']} shots; "
              f"heights tried {result['heights_tried']}, skipped {result['heights_skipped']}")
    if plot is not None:
        out.print(f"plot: {plot}")


@app.command()
def ingest(
    source: SourceArg,
    title_id: Annotated[str | None, typer.Option("--title-id", help="Title id (default: from the file name).")] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Output: a local directory or s3://bucket/prefix (default from settings).")] = None,
    ladder_mode: Annotated[str | None, typer.Option(
        "--ladder", help="fixed | per-title | per-shot (default from settings: per-shot).",
        show_default=False)] = None,
    codec: CodecOpt = None,
    sidecar: Annotated[Path | None, typer.Option(
        "--sidecar", help="Studio sidecar JSON: title id, countries, audio tracks, WebVTT subtitles.")] = None,
    no_drm: Annotated[bool, typer.Option(
        "--no-drm", help="Package in the clear (QA, benchmarks); encrypted (settings.drm) by default.")] = False,
    dask: Annotated[str | None, typer.Option(
        "--dask", help="Run the per-shot trials and encodes on this Dask scheduler (tcp://HOST:PORT); files "
                       "travel through the output store (default: orchestration.dask_address, else a thread "
                       "pool here).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest SOURCE end to end as a Prefect flow run: QC, shots, ladder, encodes, encrypted DASH + HLS, publish."""
    settings = _settings(ladder_mode, codec)
    if dask:
        settings = settings.model_copy(
            update={"orchestration": settings.orchestration.model_copy(update={"dask_address": dask})})
    chosen = settings.ladder.mode
    from reelflow.encoding.probe import probe as probe_media

    # What can be checked without the flow is checked before it starts (and its server with it).
    info = probe_media(source)
    from reelflow.flows.ingest import default_title_id, ingest_flow, plan_title_audio
    from reelflow.infra.storage import open_storage
    from reelflow.packaging.sidecar import load_sidecar
    from reelflow.packaging.titles import check_title_id

    flow = ingest_flow(settings)  # an unreachable Dask scheduler fails here, before any work

    side = load_sidecar(sidecar, [a.channels for a in info.audio]) if sidecar is not None else None
    check_title_id(title_id or (side.title_id if side else None) or default_title_id(source))
    plan_title_audio(side, info, settings, sidecar)   # a sidecar's tracks that do not fit the media
    if not no_drm and settings.drm.enabled:
        from reelflow.packaging.keys import KeyStore

        KeyStore.from_settings(settings)  # database and master key usable before the flow starts
    if storage and "://" not in storage:
        storage = str(Path(storage).resolve())  # a plain path: absolute, so the record's paths are too
    open_storage(storage or settings.storage.output, settings.storage)  # refuses unknown schemes, bad buckets
    _quiet_console_tracebacks()
    source = source.resolve()
    err.print(f"[bold]ingest[/] {source} (Prefect flow run; stage logs follow)")
    record = flow(
        str(source), title_id=title_id, storage=storage,
        config_file=str(state.settings_file) if state.settings_file else None, ladder=chosen, codec=codec,
        sidecar=str(sidecar.resolve()) if sidecar is not None else None, drm=not no_drm,
    )
    if json_out:
        _emit_json(record)
        return
    out = Console(soft_wrap=True)
    kinds = [r["kind"] for r in record["renditions"]]
    out.print(f"[bold green]published[/] {record['title_id']}: {kinds.count('video')} video rungs, "
              f"{kinds.count('audio')} audio track(s), QC {record['qc']['verdict']}")
    encryption = record.get("encryption")
    if encryption:
        kids = ", ".join(f"{tier} {kid}" for tier, kid in encryption["key_ids"].items())
        out.print(f"  encrypted {encryption['scheme']} ({', '.join(encryption['systems'])}); key ids: {kids}")
    else:
        out.print("  [yellow]in the clear[/] (no DRM)")
    out.print(f"  DASH  {record['manifests']['dash']}")
    out.print(f"  HLS   {record['manifests']['hls']}")
    out.print(f"  record {record['package'].rsplit('/', 1)[0]}/title.json")


@app.command()
def simulate(
    traces: Annotated[Path, typer.Option("--traces", help="Folder of two-column throughput traces.")],
    sizes: Annotated[Path, typer.Option("--sizes", help="Folder of per-rung chunk sizes (video_size_N).")],
    abr: Annotated[str, typer.Option("--abr", help="ABR rules, comma-separated: throughput, bba, bola, mpc, "
                                                   "reelflow.")] = "reelflow",
    json_out: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write per-trace PNG time series here.")] = None,
) -> None:
    """Compare ABR rules on recorded network traces in the standard setup (48 chunks of 4 s)."""
    from reelflow.player.simulator import simulate_command

    names = [name.strip() for name in abr.split(",") if name.strip()]
    raise typer.Exit(simulate_command(traces, sizes, names, as_json=json_out, plot_dir=plot))


from reelflow.playback.commands import edge_command, serve_command  # noqa: E402  (after the core commands)

app.command("serve")(serve_command)
app.command("edge")(edge_command)

from reelflow.player.commands import play_command  # noqa: E402

app.command("play")(play_command)

# Watched buckets and the worker: their own module (flows/commands.py), registered here.
from reelflow.flows.commands import watch, worker  # noqa: E402

app.command()(watch)
app.command()(worker)


def main() -> None:
    """Console entry point: run the app; turn reelflow errors into one line and an exit code."""
    try:
        app()  # standalone: usage errors print their message and exit 2 on their own
    except ReelflowError as exc:
        code = EXIT_QC if isinstance(exc, QCFailed) else EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
        err.print(f"reelflow: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(code)
    except KeyboardInterrupt:
        err.print("reelflow: interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
