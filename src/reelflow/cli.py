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
from reelflow.infra.settings import Settings, codec_overrides, load_settings
from reelflow.infra.tools import require_encoder

try:  # typer 0.2x vendors click as typer._click: its usage errors are those classes, not click's
    from typer._click import exceptions as usage_errors
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as usage_errors  # type: ignore[no-redef]

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


def _print_version(value: bool) -> None:
    if value:
        import reelflow

        sys.stdout.write(f"reelflow {reelflow.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each binary's command line.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print reelflow's version and exit.")] = False,
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
        unknown = [c.strip() for c in codec.split(",") if c.strip() not in CODECS] or ([codec] if not codec.strip()
                                                                                     else [])
        if unknown:
            raise typer.BadParameter(f"{', '.join(map(repr, unknown))} is not one of {', '.join(CODECS)}",
                                     param_hint="--codec")
        overrides["encode"] = codec_overrides(codec)
    settings = load_settings(state.settings_file, **overrides)
    for name in {*settings.encode.sdr_codecs, *settings.encode.hdr_codecs} - {"h264"}:
        require_encoder(CODECS[name].encoder)
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
        report = run_qc(source, settings.qc, info=info, progress=update, conform=settings.conform)
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
    "--codec", help="Video codec(s) of the SDR ladders: h264, hevc (libx265), av1 (SVT-AV1), or a list "
                    "(h264,av1: one ladder each; `ladder` analyses the first). HDR sources also get "
                    "encode.hdr_codecs ladders. Default from settings (encode.codec: h264).", show_default=False)]


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
    from reelflow.encoding.encode import half_rate_title, keyframe_frames
    from reelflow.encoding.hdr import ladder_specs
    from reelflow.encoding.ladder_plot import plot_ladder
    from reelflow.encoding.probe import probe as probe_media
    from reelflow.encoding.shots import detect_shots, even_starts
    from reelflow.encoding.tonemap import tonemap_source
    from reelflow.infra.hashing import sha256_file
    from reelflow.infra.settings import ladder_settings

    settings = _settings(mode, codec)
    chosen = settings.ladder.mode
    if plot is not None and chosen == "fixed":
        raise typer.BadParameter("the fixed ladder tries nothing to plot; use --mode per-shot or per-title",
                                 param_hint="--plot")
    if plot is not None:
        from reelflow.infra.outputs import check_output_file

        check_output_file(plot, "--plot")  # before the analysis, not after it
    work_root = settings.storage.work_dir.resolve()
    work_root.mkdir(parents=True, exist_ok=True)
    # The ladder is planned on the picture the ingest would encode: deinterlaced, upright, square pixels.
    from reelflow.encoding.conform import conformed_for_analysis

    given, source_info = source, probe_media(source)
    with _progress("conform", source_info.duration_s, show=not json_out) as update:
        source, info, _ = conformed_for_analysis(source, source_info, settings.conform, settings.qc,
                                                 work_root / "conform", progress=update)
    with _progress("shots", info.video.frames, show=not json_out) as update:
        found = detect_shots(source, settings.shots, info=info, progress=lambda done, total: update(done))
    even = half_rate_title(info.video.fps, settings.encode)   # as ingest: half-rate rungs need even keyframes
    found = even_starts(found) if even else found
    keyframes = keyframe_frames([s.start_frame for s in found.shots], info.video.frames, info.video.fps,
                                settings.encode.segment_s, even=even)
    specs = ladder_specs(info.video, settings)
    results = []
    with tempfile.TemporaryDirectory(prefix="ladder-", dir=work_root) as work:
        # an HDR source's SDR ladders are analysed on its tone-mapped intermediate, as ingest does (made once)
        mapped = (tonemap_source(info, sha256_file(source), settings.tonemap, work_root)
                  if any(spec.tonemapped for spec in specs) else None)
        for spec in specs:
            ladder_source, ladder_info = source, info
            if spec.tonemapped and mapped is not None:
                ladder_source, ladder_info = mapped.path, mapped.info
            if not json_out and chosen != "fixed":
                err.print(f"[bold]ladder[/] {given} ({spec.name}): {len(found.shots)} shots, {chosen} trials ...")
            analysis = analyse_ladder(ladder_source, ladder_info, found.shots, ladder_settings(settings, spec.codec),
                                      Path(work) / spec.name, keyframes=keyframes, mode=chosen,
                                      parallel=settings.encode.parallel_encodes)
            results.append((spec, analysis, {**summary(analysis, spec.codec), "ladder": spec.name,
                                             "range": spec.range}))
    if len(results) > 1:
        if plot is not None:
            raise typer.BadParameter("--plot draws one ladder; give one SDR --codec for an SDR source",
                                     param_hint="--plot")
        if json_out:
            _emit_json({"ladders": [r for _, _, r in results]})
            return
        for _, _, r in results:
            _print_ladder(r, chosen, r["ladder"])
        return
    _, analysis, result = results[0]
    if plot is not None:
        plot_ladder(plot, analysis.points, analysis.rungs, mode=chosen, fixed=fixed_estimates(analysis),
                    fixed_label="fixed ladder (predicted from the trials)", title=f"{given.name}: {chosen} ladder")
        result["plot"] = str(plot)
    if json_out:
        _emit_json(result)
        return
    _print_ladder(result, chosen, result.get("codec") or settings.encode.codec)
    if plot is not None:
        Console().print(f"plot: {plot}")


def _print_ladder(result: dict[str, Any], mode: str, label: str | None) -> None:
    table = Table("rung", "size", "kbps", "VMAF", "CRFs")
    for i, r in enumerate(result["rungs"]):
        crfs = r.get("crfs") or []
        span = f"{min(crfs):.1f}-{max(crfs):.1f}" if crfs else "-"
        table.add_row(str(i), f"{r['width']}x{r['height']}", f"{r['kbps']:.0f}",
                      "-" if r["vmaf"] is None else f"{r['vmaf']:.1f}", span)
    out = Console()
    out.print(table)
    if mode == "fixed":
        out.print(f"fixed ({label}): Apple's HLS authoring ladder, the rungs no taller than the source; nothing "
                  "is tried or measured (use --mode per-shot or per-title for a measured ladder)")
    else:
        out.print(f"{mode}, {label}: analysis {result['analysis_cpu_s']:.1f} CPU s over {result['shots']} shots; "
                  f"heights tried {result['heights_tried']}, skipped {result['heights_skipped']}")


@app.command()
def ingest(
    source: SourceArg,
    title_id: Annotated[str | None, typer.Option("--title-id", help="Title id (default: from the file name).")] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Output: a local directory or s3://bucket/prefix (default from settings).")] = None,
    ladder_mode: Annotated[str | None, typer.Option(
        "--mode", "--ladder", help="Ladder mode, as in `reelflow ladder --mode`: per-shot, per-title or fixed "
                                   "(default from settings: per-shot; --ladder is its older name).",
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

    # What can be checked without the flow is checked before it starts (and before the machine's
    # orchestration service is started or reached).
    info = probe_media(source)
    from reelflow.encoding.audio import plan_title_audio
    from reelflow.infra.outputs import check_free_space
    from reelflow.packaging.titles import check_title_id, default_title_id

    # A conformed intermediate can be as large as the source; encodes are far smaller.
    check_free_space(settings.storage.work_dir, info.size_bytes + int(settings.storage.work_free_margin_gb * 1e9),
                     "the work folder")
    from reelflow.flows.server import ensure_api
    from reelflow.infra.storage import open_storage
    from reelflow.packaging.sidecar import load_sidecar

    side = load_sidecar(sidecar, [a.channels for a in info.audio]) if sidecar is not None else None
    check_title_id(title_id or (side.title_id if side else None) or default_title_id(source))
    # a sidecar's tracks that do not fit the media
    plan_title_audio(side.audio if side is not None else None, info, settings.audio, settings.encode, sidecar)
    if not no_drm and settings.drm.enabled:
        from reelflow.packaging.keys import KeyStore

        KeyStore.from_settings(settings)  # database and master key usable before the flow starts
    if storage and "://" not in storage:
        storage = str(Path(storage).resolve())  # a plain path: absolute, so the record's paths are too
    open_storage(storage or settings.storage.output, settings.storage)  # refuses unknown schemes, bad buckets
    ensure_api()  # before Prefect is imported: it reads PREFECT_API_URL once
    from reelflow.flows.ingest import ingest_flow

    flow = ingest_flow(settings)  # an unreachable Dask scheduler fails here, before any work
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


@app.command()
def orchestrator(
    stop: Annotated[bool, typer.Option("--stop", help="Stop this machine's Prefect server.")] = False,
    start: Annotated[bool, typer.Option("--start", help="Start it now if it is not running.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """This machine's orchestration service (the Prefect API every ingest, watch and worker shares)."""
    import os

    from reelflow.flows.server import API_URL_ENV, ensure_api, healthy, read_state, state_dir, stop_server

    given = os.environ.get(API_URL_ENV)
    if stop:
        stopped = stop_server()
        status: dict[str, Any] = {"stopped": stopped.url if stopped else None}
    else:
        if start and not given:
            ensure_api()
        state = read_state()
        status = {"home": str(state_dir()), "env_api_url": given,
                  "url": state.url if state else None, "pid": state.pid if state else None,
                  "log": state.log if state else None,
                  "running": bool(state and healthy(state.url))}
    if json_out:
        _emit_json(status)
        return
    if stop:
        err.print(f"stopped {status['stopped']}" if status["stopped"] else "no orchestration service was running")
    elif status["running"]:
        err.print(f"running at {status['url']} (pid {status['pid']}, log {status['log']})")
    else:
        err.print(f"not running (it starts with the first ingest; state in {status['home']})")
    if not stop and status["env_api_url"]:
        err.print(f"note: PREFECT_API_URL={status['env_api_url']} is set, so this shell uses that server instead")


from reelflow.playback.commands import edge_command, serve_command  # noqa: E402  (after the core commands)

app.command("serve")(serve_command)
app.command("edge")(edge_command)

from reelflow.player.commands import play_command  # noqa: E402

app.command("play")(play_command)

# Watched buckets and the worker: their own module (flows/commands.py), registered here.
from reelflow.flows.commands import watch, worker  # noqa: E402

app.command()(watch)
app.command()(worker)


@app.command("fill")
def fill_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each edge's plan; push nothing.")] = False,
    serve: Annotated[bool, typer.Option("--serve", help="Register the fill deployment on fill.cron and run its "
                                                        "scheduled runs.")] = False,
) -> None:
    """Off-peak fill: pin on each edge the titles its forecast demand earns (flows/fill.py)."""
    from reelflow.flows.commands import _cli_settings, _connect

    settings, config_file = _cli_settings()
    if dry_run:
        from reelflow.flows.fill import compute_plan

        edges, plans, packages = compute_plan(settings)
        table = Table("edge", "budget", "titles (fill order)", "bytes", "to push")
        for edge in edges:
            placed = plans[edge.name]
            missing = sum(f.size for p in placed for f in packages[p.key].wanted(p) if f.key not in edge.pinned)
            table.add_row(edge.name, f"{edge.budget_bytes:,}", ", ".join(p.key for p in placed) or "-",
                          f"{sum(p.bytes for p in placed):,}", f"{missing:,}")
        Console().print(table)
        return
    _connect()
    from reelflow.flows.fill import fill, fill_deployment

    if serve:
        from prefect import serve as prefect_serve

        prefect_serve(fill_deployment(settings, config_file))
        return
    for result in fill(config_file=config_file):
        Console().print(result)


def error_document(exc: BaseException, code: int) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails: always a JSON document, never nothing."""
    out: dict[str, Any] = {"error": {"type": type(exc).__name__, "message": _message(exc), "exit_code": code}}
    if isinstance(exc, QCFailed):
        out["error"].update(source=exc.source, errors=exc.errors, quarantined_at=exc.quarantined_at)
        if isinstance(exc.report, dict):
            out["qc"] = exc.report
    return out


def _message(exc: BaseException) -> str:
    if isinstance(exc, usage_errors.ClickException):
        return exc.format_message()
    return str(exc)


def _fail(exc: BaseException, code: int, as_json: bool, hint: str = "") -> None:
    """One line on stderr (and the JSON document on stdout with --json), then the exit code."""
    if as_json:
        _emit_json(error_document(exc, code))
    err.print(f"reelflow: error: {_message(exc)}{hint}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: run the app; every failure is one line on stderr and an exit code."""
    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)  # usage errors come here as exceptions, not as a box of text
    except usage_errors.NoArgsIsHelpError as exc:
        err.print(exc.ctx.get_help() if exc.ctx else "reelflow --help", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    except usage_errors.UsageError as exc:
        sub = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else None
        command = f"reelflow {sub}" if sub else "reelflow"
        _fail(exc, EXIT_USAGE, as_json, f" (see {command} --help)")
    except ReelflowError as exc:
        code = EXIT_QC if isinstance(exc, QCFailed) else EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
        _fail(exc, code, as_json)
    except (KeyboardInterrupt, typer.Abort):
        err.print("reelflow: interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
