"""The Prefect flow ``ingest``: probe, QC, shots, encodes, package, publish, title record.

Tasks are thin shells around the stage functions in ``encoding/`` and ``packaging/``; this
module only wires them and adds what an orchestrator is for:

- fan-out: per-shot trial encodes (in groups of consecutive shots) and the ladder's rungs are
  encoded with ``.map`` under a bounded thread pool, as is the delivered rungs' VMAF; or, with
  ``orchestration.dask_address``, on that Dask cluster, the files then travelling through the
  output store (flows/workfiles.py);
- caching: QC, shots and trials are cached by Prefect on the source's SHA-256, the stage's
  config and code (trials also on the shots and keyframes they were planned for). Encodes go to
  content-addressed folders (``<work>/<sha>/<stage>-<config digest>/``, the digest covering the
  planned per-shot CRFs of a measured ladder) and a finished encode is recognised by its file,
  which only gets its final name once verified. A re-run after a crash therefore skips every
  finished encode. The encodes are not cached by Prefect itself: a cache record can outlive the
  file it describes, the file cannot;
- retries: only storage calls are retried, and only on TransientStorageError;
- the title record is written last; it is the only thing readers trust.

Encryption (the default; ``drm=False`` or ``drm.enabled = false`` packages in the clear): the
title's content keys, one per tier present, are in the KeyStore before the package that needs
them is made. A re-ingest reuses the title's stored keys (new tiers get new keys), so a player of
the previous version keeps working while the new one is published; to rotate, delete the title's
keys (``KeyStore.delete_title_keys``) and ingest again. Keys never cross a task boundary: tasks
pass key ids, and the package task reads the keys from the store itself. Each encrypted ingest
publishes to a folder of its own, since the packager draws fresh IVs on every run.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import inspect
import json
import logging
import math
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task

import reelflow
from reelflow.encoding import analysis, audio, codecs, conform, encode, hdr, probe, qc, shots, trials, vmaf
from reelflow.encoding import chunks as chunks_module
from reelflow.encoding.analysis import Delivered, LadderAnalysis
from reelflow.encoding.chunks import Chunk
from reelflow.encoding.codecs import CodecName, codec_for
from reelflow.encoding.encode import Rendition
from reelflow.encoding.hdr import LadderSpec, ladder_specs
from reelflow.encoding.ladder import PlannedRung, select_ladder
from reelflow.encoding.ladder_plot import plot_ladder
from reelflow.encoding.tonemap import ToneMapped, tonemap_source
from reelflow.errors import ConfigError, InvalidMedia, KeyNotFound, QCFailed, StageError, TransientStorageError
from reelflow.flows.workfiles import WorkStore, source_name, stage_source
from reelflow.infra.hashing import config_digest, sha256_file
from reelflow.infra.remote import fetch_s3_object, is_remote
from reelflow.infra.settings import (
    ConformConfig,
    EncodeConfig,
    QCConfig,
    Rung,
    Settings,
    ShotConfig,
    StorageConfig,
    TrialConfig,
    codec_overrides,
    ladder_settings,
    load_settings,
)
from reelflow.infra.storage import Storage, open_storage
from reelflow.infra.workfolder import finish_with_work_folder, use_work_folder
from reelflow.packaging import publish
from reelflow.packaging.keys import TIERS, KeyStore, Tier, generate_keys
from reelflow.packaging.packager import Encryption, Package, package, tier_of
from reelflow.packaging.sidecar import Sidecar, load_sidecar
from reelflow.packaging.subtitles import SubtitleTrack, copy_webvtt
from reelflow.packaging.titles import check_title_id, default_title_id, title_key

log = logging.getLogger(__name__)



class _RunLogHandler(logging.Handler):
    """Forwards stage records to Prefect's API handler, but only inside a flow or task run.

    Outside a run (a stage called directly, a benchmark) there is no run to attach them to, and
    Prefect's handler would warn on every record.
    """

    def __init__(self, api_handler: logging.Handler) -> None:
        super().__init__()
        self.api_handler = api_handler

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            self.api_handler.handle(record)


def _send_stage_logs_to_prefect() -> None:
    """Stage modules log to logging.getLogger("reelflow...."): send those records to the run's logs.

    This is what PREFECT_LOGGING_EXTRA_LOGGERS does, done here so it holds whatever imported
    Prefect first; and with a level, or the logger inherits the root's WARNING and the stages'
    INFO lines never reach the UI.
    """
    stage_logger = logging.getLogger("reelflow")
    if not any(isinstance(h, _RunLogHandler) for h in stage_logger.handlers):
        for handler in logging.getLogger("prefect.extra").handlers:
            stage_logger.addHandler(_RunLogHandler(handler))
    if stage_logger.level == logging.NOTSET:
        stage_logger.setLevel(logging.INFO)


_send_stage_logs_to_prefect()

P = ParamSpec("P")
R = TypeVar("R")

TITLES_PREFIX = "titles"


# --- retries: transient storage errors only --------------------------------------------------

def _transient_only(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry a failed task only when it failed on a transient storage error."""
    try:
        state.result()
    except TransientStorageError:
        return True
    except Exception:
        return False
    return False


def storage_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task that talks to the output storage: retried on transient storage errors only."""
    return task(name=name, cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 4, 15],
                retry_condition_fn=_transient_only)


# --- cache keys: content hash + the stage's result-changing config ---------------------------

@functools.cache
def _code_digest(module: ModuleType) -> str:
    """The stage's code is result-changing too: a fixed QC bug must not be masked by old results."""
    return hashlib.sha256(Path(inspect.getfile(module)).read_bytes()).hexdigest()[:12]


def _stage_key(stage: str, module: ModuleType) -> Any:
    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        # QC judges with the conform config too (what conform resolves is info, not a warning)
        config = config_digest(parameters.get("config"), parameters.get("conform"))
        code = _code_digest(module) + _code_digest(probe) + _code_digest(conform)  # all judge from probe's fields
        return f"reelflow-{stage}-{parameters['source_sha']}-{config}-{code}"

    return key


def _trials_key(stage: str) -> Any:
    """Trials depend on the source, the trial config, the shots and keyframes, and (per group) the plan."""
    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        parts: list[Any] = [parameters["config"], [(s.start_frame, s.end_frame) for s in parameters["shots"]],
                            list(parameters.get("keyframes", ()))]
        plan = parameters.get("plan")
        if plan is not None:
            parts.append([plan.heights, plan.crfs, plan.probes, plan.correction])
        code = "".join(_code_digest(m) for m in (trials, vmaf, encode, probe, codecs, hdr))
        return f"reelflow-{stage}-{parameters['source_sha']}-{config_digest(*parts)}-{code}"

    return key


# --- progress: a log line per tenth of the work, so the console and the UI both show it -------

def progress_logger(label: str, total: float, unit: str = "s") -> Callable[[float], None]:
    """A progress callback (seconds of media, or frames) that logs each 10% step of ``total``, with the
    time the stage has taken and, at its pace so far, the time it still needs."""
    logger = get_run_logger()
    next_step = [10]
    started = time.monotonic()

    def report(done: float) -> None:
        percent = 100 * done / total if total > 0 else 100
        if percent >= next_step[0] and next_step[0] < 100:
            elapsed = time.monotonic() - started
            left = elapsed * (100 - percent) / percent  # percent is 10 or more here
            logger.info("%s: %d%% (%.1f of %.1f %s) in %s, about %s left", label, int(percent), done, total, unit,
                        _duration(elapsed), _duration(left))
            next_step[0] = int(percent // 10 + 1) * 10

    return report


def rung_stage_left_cpu(done: Sequence[tuple[float, float, float]], left_pixels: Sequence[float]) -> float:
    """CPU seconds the rungs still to make will take, at the pace of those made: ``done`` holds each made
    rung's (pixels encoded, encode CPU, VMAF CPU). Encode CPU goes with the pixels a rung encodes; its
    every-frame VMAF compares at the source's display size whatever the rung, so it costs about the same
    per rung."""
    if not done:
        return 0.0
    per_pixel = sum(d[1] for d in done) / max(1.0, sum(d[0] for d in done))
    vmaf_each = sum(d[2] for d in done) / len(done)
    return sum(p * per_pixel + vmaf_each for p in left_pixels)


class RungStageProgress:
    """The rung stage of one ladder as a whole: a log line per rung made, with its share of the stage's
    estimated CPU (rung_stage_left_cpu), the time taken and, at that pace, the time left."""

    def __init__(self, label: str, rungs: Sequence[PlannedRung], frames: int,
                 half_rate: Callable[[PlannedRung], bool]) -> None:
        self.label, self.started = label, time.monotonic()
        self.pixels = {r.name: r.width * r.height * (math.ceil(frames / 2) if half_rate(r) else frames)
                       for r in rungs}
        self.done: dict[str, tuple[float, float, float]] = {}      # name: (pixels, encode CPU, VMAF CPU)
        self.pending: dict[str, tuple[float, float, float]] = {}   # checked on every n-th frame only, so far
        self.counted: set[Path] = set()

    def scored(self, rung: str, rendition: Rendition, vmaf_cpu: float, *, made: bool) -> None:
        """``rendition`` of the planned rung ``rung`` scored (its encode's CPU counts once, however often it is
        scored); ``made``: on every frame, so the rung is made (an encode again adds to what it took)."""
        pixels, enc, vm = self.done.get(rung, self.pending.get(rung, (self.pixels.get(rung, 0.0), 0.0, 0.0)))
        if rendition.path not in self.counted:
            self.counted.add(rendition.path)
            enc += rendition.cpu_s
        if not made:
            self.pending[rung] = (pixels, enc, vm + vmaf_cpu)
            return
        self.pending.pop(rung, None)
        self.done[rung] = (pixels, enc, vm + vmaf_cpu)
        spent = sum(d[1] + d[2] for d in (*self.done.values(), *self.pending.values()))
        left = rung_stage_left_cpu(list(self.done.values()),
                                   [p for name, p in self.pixels.items() if name not in self.done])
        elapsed = time.monotonic() - self.started
        get_run_logger().info(
            "%s: %s made, %d of %d rungs, %d%% of the rung stage's CPU in %s, about %s left", self.label, rung,
            len(self.done), len(self.pixels), round(100 * spent / max(spent + left, 1e-9)), _duration(elapsed),
            _duration(elapsed * left / max(spent, 1e-9)))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- distributed tasks: files through the shared store (flows/workfiles.py) -------------------
# ``remote`` is None on the local thread pool: the tasks then read and write the flow's work folder.

def _task_source(source: Path, info: probe.MediaInfo, remote: WorkStore | None,
                 frames: tuple[int, int] | None = None) -> tuple[Path, probe.MediaInfo]:
    """The source as this task reads it: the flow's file, or on a worker the store's copy, of which
    only ``frames`` [first, last) are fetched when given (workfiles.WorkStore.fetch_frames)."""
    if remote is None:
        return source, info
    name = source_name(source)
    local = remote.fetch(name) if frames is None else remote.fetch_frames(name, max(0, frames[0]), frames[1])
    return local, dataclasses.replace(info, path=local)


def _task_work(work: Path, remote: WorkStore | None) -> Path:
    """The task's folder: ``work`` itself, or the folder of that name in this machine's cache."""
    return work if remote is None else remote.cache() / work.name


def _encode_to(work: Path, name: str, remote: WorkStore | None, make: Callable[[Path], Rendition]) -> Rendition:
    """``make(out)`` for the encode file ``work/name``; distributed, the file is first looked for in the
    store (an earlier run's) and put there when made, under the same folder name."""
    out = _task_work(work, remote) / name
    if remote is not None:
        remote.fetch_if_stored(f"{work.name}/{name}", out)  # the encoder verifies and reuses it
    rendition = make(out)
    if remote is not None:
        remote.put(rendition.path, f"{work.name}/{rendition.path.name}")
    return rendition


def _fetched(renditions: list[Rendition], work: Path, remote: WorkStore | None) -> list[Rendition]:
    """The encodes made on the cluster, fetched from the store into the flow's ``work`` (for the packager)."""
    if remote is None:
        return renditions
    return [dataclasses.replace(r, path=remote.fetch(f"{work.name}/{r.path.name}", work / r.path.name))
            for r in renditions]


@storage_task("stage source")
def stage_source_task(source: Path, storage: Storage, config: StorageConfig, sha: str) -> WorkStore:
    work = stage_source(source, storage, config, sha)
    get_run_logger().info("source staged at %s for the Dask workers", storage.url_for(work.key(source_name(source))))
    return work


def _distributed() -> bool:
    """Whether this flow run's tasks go to a Dask cluster (then files travel through the store)."""
    from prefect_dask.task_runners import DaskTaskRunner

    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, DaskTaskRunner)


# --- tasks ------------------------------------------------------------------------------------

@task(name="hash source", cache_policy=NO_CACHE)
def hash_task(source: Path) -> str:
    digest = sha256_file(source)
    get_run_logger().info("source %s sha256 %s", source.name, digest)
    return digest


@storage_task("check storage")
def storage_preflight_task(storage: Storage, prefix: str) -> bool:
    """True when the title was published before (it is then replaced); raises if the store is unusable.

    Writes a small marker: a read-only or unreachable store fails here, not after every encode.
    """
    # At the store's root, not under the title: a refused source must leave no title folder behind.
    storage.put_bytes(b"reelflow write check\n", ".reelflow/write-check", content_type="text/plain")
    published_before = storage.exists(f"{prefix}/title.json")
    if published_before:
        get_run_logger().info("%s was published before: it will be replaced", storage.url_for(prefix))
    return published_before


@task(name="probe", cache_policy=NO_CACHE)  # demux only: cheaper than a cache lookup's bookkeeping
def probe_task(source: Path) -> probe.MediaInfo:
    info = probe.probe(source)
    v = info.video
    get_run_logger().info("%s: %dx%d %s fps, %d frames, %.3f s, %d audio stream(s)",
                          source.name, v.width, v.height, v.fps, v.frames, info.duration_s, len(info.audio))
    return info


@task(name="qc", cache_key_fn=_stage_key("qc", qc), persist_result=True)
def qc_task(source: Path, source_sha: str, config: QCConfig, info: probe.MediaInfo,
            conform: ConformConfig | None = None) -> dict[str, Any]:
    """QC of a title short enough for one pass (qc_stage splits longer ones)."""
    report = qc.run_qc(source, config, info=info, progress=progress_logger("QC", info.duration_s), conform=conform)
    return _logged_qc(report)


def _logged_qc(report: qc.QCReport) -> dict[str, Any]:
    logger = get_run_logger()
    for check in report.checks:
        if not check.passed:
            logger.log(logging.ERROR if check.severity == "error" else logging.WARNING,
                       "QC %s %s: %s", check.severity, check.name, check.message)
    logger.info("QC verdict: %s", report.verdict)
    return report.to_dict()


def _split_key(stage: str, *modules: ModuleType) -> Any:
    """A chunk's result (or the sound pass's) depends on the source, the frames it owns and reads, the
    stage's config (not the chunk length, which only moves the ranges) and the code that made it."""
    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        chunk: Chunk | None = parameters.get("chunk")
        frames = [chunk.start, chunk.end, chunk.decode_start, chunk.decode_end] if chunk is not None else "whole"
        config = config_digest(parameters["config"].model_dump(mode="json", exclude={"chunk_s"}), frames)
        code = "".join(_code_digest(m) for m in (*modules, probe, chunks_module))
        return f"reelflow-{stage}-{parameters['source_sha']}-{config}-{code}"

    return key


@task(name="qc chunk", cache_key_fn=_split_key("qc-chunk", qc, vmaf), persist_result=True,
      task_run_name="QC frames {chunk.start}-{chunk.end}")
def qc_chunk_task(source: Path, source_sha: str, config: QCConfig, info: probe.MediaInfo, chunk: Chunk,
                  remote: WorkStore | None = None) -> dict[str, Any]:
    source, info = _task_source(source, info, remote, (chunk.decode_start, chunk.decode_end))
    return qc.measure_chunk(source, info, config, chunk)


@task(name="qc sound", cache_key_fn=_split_key("qc-sound", qc), persist_result=True)
def qc_sound_task(source: Path, source_sha: str, config: QCConfig, info: probe.MediaInfo) -> dict[str, Any]:
    return qc.measure_audio(source, info, config)


@task(name="qc merge", cache_policy=NO_CACHE)  # pure and quick; its inputs are the cached chunks
def qc_merge_task(source: Path, info: probe.MediaInfo, found: list[dict[str, Any]], sound: dict[str, Any] | None,
                  config: QCConfig, conform: ConformConfig | None) -> dict[str, Any]:
    measurements = qc.merge_qc(info, found, sound)
    get_run_logger().info("QC in %d chunks: %.1f s of decoding", len(found),
                          sum(c["decode_s"] for c in found) + (sound["decode_s"] if sound else 0.0))
    return _logged_qc(qc.qc_report(source, info, measurements, config, conform))


def qc_stage(source: Path, sha: str, settings: Settings, info: probe.MediaInfo, store: Storage) -> dict[str, Any]:
    """QC split by time: the picture's chunks and the sound's pass fan out over the task runner (on a
    Dask cluster, on any worker: the source is staged first), then merge into one report."""
    chunks = qc.qc_chunks(info, settings.qc)
    if len(chunks) == 1:
        return qc_task(source, sha, settings.qc, info, settings.conform)
    remote = stage_source_task(source, store, settings.storage, sha) if _distributed() else None
    found = qc_chunk_task.map(unmapped(source), unmapped(sha), unmapped(settings.qc), unmapped(info), chunks,
                              unmapped(remote))
    sound = None
    if info.audio:
        # On the pool beside the chunks; with a cluster here, on the flow's own copy, while the workers
        # take the chunks (the sound needs every audio packet, a worker only the frames of its chunk).
        sound = (qc_sound_task(source, sha, settings.qc, info) if remote is not None else
                 qc_sound_task.submit(source, sha, settings.qc, info).result())
    return qc_merge_task(source, info, [f.result() for f in found], sound, settings.qc, settings.conform)


@task(name="conform", cache_policy=NO_CACHE)  # content-addressed file instead: a cache record can outlive it
def conform_task(source: Path, source_sha: str, config: ConformConfig, info: probe.MediaInfo,
                 report: dict[str, Any], qc_config: QCConfig, work: Path) -> tuple[Path, probe.MediaInfo, str]:
    """The picture every video stage reads: the conformed intermediate, or the source when nothing needs a filter.

    Returns it, its probe and its identity for cache keys (the source's sha, or the sha with the
    conformed file's content address when the picture was conformed).
    """
    plan = conform.plan_conform(info, report, config, qc_config)
    logger = get_run_logger()
    for step in plan.steps:
        logger.info("conform %s: %s -> %s%s", step.step, step.found, step.action,
                    f" [{step.filter}]" if step.filter else "")
    video_source, video_info = conform.conform_source(
        source, info, plan, work, config=config, source_sha=source_sha,
        progress=progress_logger("conform", info.duration_s))
    if video_source == source:
        return video_source, video_info, source_sha
    # A sha of its own (not a prefix of the source's): Dask staging keys its folder on the first 16 digits.
    return video_source, video_info, hashlib.sha256(f"{source_sha}-{video_source.name}".encode()).hexdigest()


@task(name="shots", cache_key_fn=_stage_key("shots", shots), persist_result=True)
def shots_task(source: Path, source_sha: str, config: ShotConfig, info: probe.MediaInfo) -> dict[str, Any]:
    """Shots of a title short enough for one pass (shots_stage splits longer ones)."""
    report = progress_logger("shots", info.video.frames, unit="frames")
    found = shots.detect_shots(source, config, info=info, progress=lambda done, total: report(done))
    get_run_logger().info("%d shots (%d cuts)", len(found.shots), len(found.cuts))
    return found.to_dict()


@task(name="shots chunk", cache_key_fn=_split_key("shots-chunk", shots), persist_result=True,
      task_run_name="shots frames {chunk.start}-{chunk.end}")
def shots_chunk_task(source: Path, source_sha: str, config: ShotConfig, info: probe.MediaInfo, chunk: Chunk,
                     remote: WorkStore | None = None) -> list[shots.Transition]:
    source, info = _task_source(source, info, remote, (chunk.decode_start, chunk.decode_end))
    return shots.detect_chunk_transitions(source, chunk, config, info=info)


def shots_stage(source: Path, sha: str, settings: Settings, info: probe.MediaInfo, store: Storage) -> shots.ShotList:
    """Shot detection split by time: chunks fan out over the task runner (on a Dask cluster, on any
    worker), their cuts merge into the whole pass's, then bound into shots once."""
    chunks = shots.shot_chunks(info, settings.shots)
    if len(chunks) == 1:
        return shots.ShotList.from_dict(shots_task(source, sha, settings.shots, info))
    remote = stage_source_task(source, store, settings.storage, sha) if _distributed() else None
    found = shots_chunk_task.map(unmapped(source), unmapped(sha), unmapped(settings.shots), unmapped(info), chunks,
                                 unmapped(remote))
    cuts = shots.merge_chunk_cuts(chunks, [f.result() for f in found], info.video.frames)
    shot_list = shots.shots_from_cuts(cuts, info, settings.shots)
    get_run_logger().info("%d shots (%d cuts) from %d chunks", len(shot_list.shots), len(shot_list.cuts), len(chunks))
    return shot_list


@storage_task("quarantine")
def quarantine_task(source: Path, storage: Storage, title_id: str, report: dict[str, Any]) -> str:
    return publish.quarantine(source, storage, title_id, report)


@task(name="encode rung", cache_policy=NO_CACHE, task_run_name="encode {rung.height}p {rung.kbps}k")
def encode_rung_task(source: Path, rung: Rung, keyframes: tuple[int, ...], info: probe.MediaInfo,
                     config: EncodeConfig, work: Path, remote: WorkStore | None = None) -> Rendition:
    source, info = _task_source(source, info, remote)
    rendition = _encode_to(work, f"{rung.name}.mp4", remote, lambda out: encode.encode_video_rung(
        source, rung, keyframes, info, config, out, progress=progress_logger(f"encode {rung.name}", info.duration_s)))
    get_run_logger().info("%s: %.0f kbps (target %d)", rung.name, rendition.kbps, rung.kbps)
    return rendition


@task(name="plan trials", cache_key_fn=_trials_key("trial-plan"), persist_result=True)
def plan_trials_task(source: Path, source_sha: str, info: probe.MediaInfo, shots: tuple[shots.Shot, ...],
                     config: TrialConfig, work: Path) -> trials.TrialPlan:
    plan = trials.plan_trials(source, info, shots, config, work)
    get_run_logger().info("trials at %s (skipped %s), CRFs %s; correction %s; sample %.1f CPU s",
                          [f"{h}p" for h in plan.heights], [f"{h}p" for h in plan.skipped],
                          {f"{h}p": list(plan.crfs_at(h)) for h in plan.heights},
                          "measured on the sample" if plan.correction.measured else "fixed", plan.cpu_s)
    return plan


def _trial_group_name() -> str:
    from prefect.runtime import task_run

    group = task_run.parameters["shots"]
    return f"trials shots {group[0].index}-{group[-1].index}"


@task(name="trial encodes", cache_key_fn=_trials_key("trials"), persist_result=True,
      task_run_name=_trial_group_name)
def trial_group_task(source: Path, source_sha: str, info: probe.MediaInfo, shots: tuple[shots.Shot, ...],
                     config: TrialConfig, plan: trials.TrialPlan, keyframes: tuple[int, ...],
                     work: Path, remote: WorkStore | None = None) -> list[trials.ShotTrials]:
    # Trials leave no files behind (their results are values), so distributed they only need the source.
    source, info = _task_source(source, info, remote, (shots[0].start_frame - 1, shots[-1].end_frame + 1))
    return trials.trial_shots(source, info, shots, config, _task_work(work, remote), plan=plan, keyframes=keyframes)


def _piece_group_name() -> str:
    from prefect.runtime import task_run

    rung, group = task_run.parameters["rung"], task_run.parameters["pieces"]
    return f"encode {rung.name} frames {group[0].start_frame}-{group[-1].end_frame}"


def _piece_name(rung: PlannedRung, piece: encode.ShotCrf, keyframes: tuple[int, ...], config: EncodeConfig,
                half_rate: bool) -> str:
    """The piece's file below the encode folder."""
    name = encode.piece_file_name(rung.width, rung.height, piece, keyframes, config.preset, config.codec,
                                  config.preroll_frames, half_rate)
    return f"{encode.PIECES}/{name}"


@dataclass(frozen=True)
class EncodedPieces:
    """What a task of pieces made: the CPU seconds it spent (0 for pieces made before) and each coded
    frame's bytes, in presentation order (a rung's delivered rate is read from them before it is joined)."""

    cpu_s: float
    frame_sizes: tuple[int, ...]


@task(name="encode pieces", cache_policy=NO_CACHE, task_run_name=_piece_group_name)
def encode_pieces_task(source: Path, rung: PlannedRung, pieces: list[encode.ShotCrf], keyframes: tuple[int, ...],
                       info: probe.MediaInfo, config: EncodeConfig, work: Path,
                       remote: WorkStore | None = None) -> EncodedPieces:
    """Consecutive pieces of a per-shot rung, each at its CRF, into ``work/pieces/`` (content-addressed: a
    stopped run keeps every finished piece)."""
    source, info = _task_source(source, info, remote,
                                (pieces[0].start_frame - config.preroll_frames, pieces[-1].end_frame))
    half_rate = analysis.planned_half_rate(rung, info, config)
    cpu, sizes = 0.0, []
    for piece in pieces:
        name = _piece_name(rung, piece, keyframes, config, half_rate)
        out = _task_work(work, remote) / name
        if remote is not None:
            remote.fetch_if_stored(f"{work.name}/{name}", out)   # the encoder checks it and keeps it
        cpu += encode.encode_piece(source, info, rung.width, rung.height, piece, keyframes, config.preset, out,
                                   codec=config.codec, preroll=config.preroll_frames, half_rate=half_rate)
        frames = piece.end_frame - piece.start_frame
        sizes += trials.frame_sizes(out, (frames + 1) // 2 if half_rate else frames)
        if remote is not None:
            remote.put(out, f"{work.name}/{name}")
    return EncodedPieces(cpu, tuple(sizes))


@task(name="join rung", cache_policy=NO_CACHE, task_run_name="join {rung.name}")
def join_rung_task(rung: PlannedRung, pieces: list[encode.ShotCrf], keyframes: tuple[int, ...],
                   info: probe.MediaInfo, config: EncodeConfig, work: Path,
                   remote: WorkStore | None = None) -> Rendition:
    """The rung's pieces joined without re-encoding, frames and keyframes verified."""
    half_rate = analysis.planned_half_rate(rung, info, config)
    names = [_piece_name(rung, p, keyframes, config, half_rate) for p in pieces]
    files = [_task_work(work, remote) / n if remote is None else remote.fetch(f"{work.name}/{n}") for n in names]
    return _encode_to(work, analysis.rung_file_name(rung, config.codec), remote, lambda out: encode.join_pieces(
        files, info, rung.width, rung.height, keyframes, out, target_kbps=round(rung.kbps), codec=config.codec,
        half_rate=half_rate))


def _span_name() -> str:
    from prefect.runtime import task_run

    parameters = task_run.parameters
    start, end = parameters["span"]
    step = parameters.get("step", 1)
    return f"VMAF {parameters['rendition'].name} frames {start}-{end}" + (f" every {step}th" if step > 1 else "")


@task(name="rung VMAF", cache_policy=NO_CACHE, task_run_name=_span_name)
def rung_vmaf_task(rendition: Rendition, span: tuple[int, int], info: probe.MediaInfo, work: Path,
                   remote: WorkStore | None = None, threads: int = 1, step: int = 1,
                   pieces: list[str] | None = None, offset: int = 0, codec: CodecName = "h264") -> vmaf.VmafResult:
    """Frames [start, end) of a rung scored against the source (every ``step``-th from ``start``), as in a
    whole run (vmaf.measure_rung_vmaf): a long rung's spans go to any worker.

    With ``pieces`` (files below ``work``, the first starting at frame ``offset``) the span is scored
    from the pieces (of ``codec``) that cover it, stream-copied into one file, so a rung is scored before
    it is joined."""
    cover = vmaf.span_cover(span, info.video.frames)
    if pieces is None:
        rendition, info = _scored_inputs(rendition, info, work, remote, cover)
        return vmaf.measure_rung_vmaf(rendition.path, info, subsample=step, threads=threads,
                                      height=rendition.height, span=span, half_rate=rendition.half_rate)
    if remote is not None:
        _, info = _task_source(info.path, info, remote, cover)
    files = [_task_work(work, remote) / n if remote is None else remote.fetch(f"{work.name}/{n}") for n in pieces]
    with tempfile.TemporaryDirectory(prefix="span-", dir=_task_work(work, remote)) as tmp:
        joined = Path(tmp) / f"{rendition.path.stem}-{span[0]}.mp4"
        encode.concat_pieces(files, joined, codec=codec)
        return vmaf.measure_rung_vmaf(joined, info, subsample=step, threads=threads, height=rendition.height,
                                      span=span, half_rate=rendition.half_rate, offset=offset)


def _scored_inputs(rendition: Rendition, info: probe.MediaInfo, work: Path, remote: WorkStore | None,
                   frames: tuple[int, int]) -> tuple[Rendition, probe.MediaInfo]:
    """The rung and the source's ``frames`` (the reference) a VMAF task compares: on a worker, from the store."""
    if remote is None:
        return rendition, info
    _, info = _task_source(info.path, info, remote, frames)
    return dataclasses.replace(rendition, path=remote.fetch(f"{work.name}/{rendition.path.name}")), info


@task(name="audio layout QC", cache_policy=NO_CACHE)
def audio_qc_task(source: Path, plan: audio.AudioPlan, info: probe.MediaInfo, config: QCConfig) -> list[dict[str, Any]]:
    """QC of each mix the plan publishes (one decode of the audio only): channels, LFE, phase, loudness."""
    found = audio.check_layouts(source, plan, info, config)
    logger = get_run_logger()
    for layout in found:
        for check in layout["checks"]:
            if not check["passed"]:
                logger.warning("audio QC %s %s: %s", check["severity"], check["name"], check["message"])
    return found


@task(name="encode audio track", cache_policy=NO_CACHE, task_run_name="encode audio {track.name}")
def encode_track_task(source: Path, info: probe.MediaInfo, track: audio.PlannedTrack, settings: Settings,
                      work: Path) -> Rendition:
    """One planned audio rendition, loudness-normalised in two passes (encoding/audio.py)."""
    origin = f"file-{sha256_file(track.source.file)[:12]}" if track.source.file else "source"
    digest = config_digest(track.to_dict(), settings.audio.lra_lu, settings.encode.audio_rate,
                           audio.code_digest())[:12]
    out = work / f"audio-{track.name}-{origin}-{digest}.mp4"
    rendition = audio.encode_track(source, info, track, out, config=settings.audio, rate=settings.encode.audio_rate,
                                   progress=progress_logger(f"encode audio {track.name}", info.duration_s))
    figures = dict(rendition.loudness)
    get_run_logger().info("audio %s: %d channels %s, %.0f kbps; %s -> %s LUFS", track.name, rendition.channels,
                          track.codec, rendition.kbps, figures.get("input_i"), figures.get("output_i"))
    return rendition


@task(name="subtitles", cache_policy=NO_CACHE)
def subtitles_task(side: Sidecar, work: Path) -> list[SubtitleTrack]:
    """Check each WebVTT file again (it may have changed since the sidecar was read) and copy it."""
    tracks = []
    for sub in side.subtitles:
        out = work / f"text-{sub.name}-{sha256_file(sub.path)[:12]}.vtt"
        tracks.append(SubtitleTrack(copy_webvtt(sub.path, out), sub.language, sub.role))
    return tracks


@task(name="content keys", cache_policy=NO_CACHE)
def content_keys_task(title: str, tiers: list[Tier], settings: Settings) -> dict[str, str]:
    """The title's keys for ``tiers`` in the KeyStore (stored ones reused, missing ones made); returns key ids."""
    store = KeyStore.from_settings(settings)
    try:
        keys = store.get_title_keys(title)
    except KeyNotFound:
        keys = {}
    missing = [t for t in tiers if t not in keys]
    if missing:
        keys = {**keys, **generate_keys(missing)}
        keys = {t: keys[t] for t in TIERS if t in keys}
        store.put_title_keys(title, keys)  # before anything is packaged or published with them
    logger = get_run_logger()
    logger.info("content keys: %s", ", ".join(f"{t} {keys[t].key_id_hex}{' (new)' if t in missing else ''}"
                                               for t in tiers))
    return {t: keys[t].key_id_hex for t in tiers}


@task(name="package", cache_policy=NO_CACHE)
def package_task(renditions: list[Rendition], out_dir: Path, segment_s: float, settings: Settings,
                 subtitles: list[SubtitleTrack] | None = None, title: str | None = None,
                 key_ids: dict[str, str] | None = None) -> Package:
    """Package; with ``key_ids`` encrypted with the title's keys, read here from the KeyStore."""
    encryption = None
    if key_ids is not None and title is not None:
        stored = KeyStore.from_settings(settings).get_title_keys(title)
        keys = {t: k for t, k in stored.items() if t in key_ids}
        if {t: k.key_id_hex for t, k in keys.items()} != key_ids:
            raise StageError(f"the content keys of {title!r} changed during this ingest (another ingest of the "
                             "same title?); ingest it again")
        encryption = Encryption.from_config(keys, settings.drm)
    result = package(renditions, out_dir, segment_s=segment_s, config=settings.package, subtitles=subtitles or (),
                     encryption=encryption)
    get_run_logger().info("packaged %d files (DASH %s, HLS %s), %s", len(result.files), result.dash_manifest,
                          result.hls_master, f"encrypted ({encryption.scheme})" if encryption else "in the clear")
    return result


@storage_task("publish")
def publish_task(package_dir: Path, storage: Storage, prefix: str) -> list[str]:
    keys = publish.publish_package(package_dir, storage, prefix)
    get_run_logger().info("uploaded %d files to %s", len(keys), storage.url_for(prefix))
    return keys


@storage_task("write report")
def put_json_task(storage: Storage, key: str, data: dict[str, Any]) -> str:
    storage.put_bytes(json.dumps(data, indent=2).encode(), key, content_type="application/json")
    return storage.url_for(key)


@storage_task("write file")
def put_bytes_task(storage: Storage, key: str, data: bytes, content_type: str) -> str:
    storage.put_bytes(data, key, content_type=content_type)
    return storage.url_for(key)


@storage_task("title record")
def title_record_task(storage: Storage, prefix: str, record: dict[str, Any]) -> str:
    url = publish.write_title_record(storage, prefix, record)
    get_run_logger().info("title record %s", url)
    return url


# --- the flow ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestResult:
    title_id: str
    record_url: str
    record: dict[str, Any]


def _encode_runner(parallel: int) -> Any:
    """The bounded thread pool that the rung fan-out runs under (typed Any: Prefect's generics)."""
    return ThreadPoolTaskRunner(max_workers=parallel)


@flow(name="ingest", task_runner=_encode_runner(EncodeConfig().parallel_encodes))
def ingest(source: str, title_id: str | None = None, storage: str | None = None,
           config_file: str | None = None, ladder: str | None = None, sidecar: str | None = None,
           drm: bool = True, codec: str | None = None) -> dict[str, Any]:
    """Ingest one mezzanine file: QC, shots, ladder, audio and subtitles, encrypted DASH + HLS, publish.

    ``source`` is a local path, or a dropped object (``s3://bucket/key``, ``file:///path``), which
    is fetched first and quarantined when it is not readable media. ``ladder``: fixed, per-title or
    per-shot (default from settings); ``sidecar``: the studio's JSON (packaging/sidecar.py; a path or
    a dropped object like the source), whose ``title_id`` names the title when ``title_id`` is not
    given; ``drm=False`` packages in the clear; ``codec``: h264, hevc or av1, or several (``h264,av1``: one SDR
    ladder each; default from settings).
    """
    overrides: dict[str, Any] = {"ladder": {"mode": ladder}} if ladder else {}
    if codec:
        overrides["encode"] = codec_overrides(codec)
    settings = load_settings(Path(config_file) if config_file else None, **overrides)
    if is_drop(source) or (sidecar and is_drop(sidecar)):
        return run_drop_ingest(source, settings, title_id=title_id, storage_url=storage, sidecar=sidecar,
                               drm=drm).record
    return run_ingest(Path(source), settings, title_id=title_id, storage_url=storage,
                      sidecar=Path(sidecar) if sidecar else None, drm=drm).record


def run_ingest(source: Path, settings: Settings, *, title_id: str | None = None,
               storage_url: str | None = None, sidecar: Path | None = None, drm: bool = True) -> IngestResult:
    """The flow's body (call inside a flow run): each stage as a task."""
    logger = get_run_logger()
    # Probe first (cheap, local): a sidecar's problems with the media come out with its own, at once.
    info = probe_task(source)
    side = load_sidecar(sidecar, [a.channels for a in info.audio]) if sidecar is not None else None
    if title_id and side and side.title_id and side.title_id != title_id:
        logger.warning("title id %r given: it overrides the sidecar's %r", title_id, side.title_id)
    title = check_title_id(title_id or (side.title_id if side else None) or default_title_id(source))
    store = open_storage(storage_url or settings.storage.output, settings.storage)
    key = title_key(title)     # storage folder, key store and playback URLs: safe for any valid id
    prefix = f"{TITLES_PREFIX}/{key}"
    started = dt.datetime.now(dt.UTC)
    encrypt = drm and settings.drm.enabled
    if encrypt:
        KeyStore.from_settings(settings)  # a bad database URL or master key fails now, not after the encodes

    # Fail before any work on what would fail after it: a missing or non-media source (probe is
    # cheap and local), then an unreachable or read-only store; only then read every byte to hash.
    audio_plan = audio.plan_title_audio(side.audio if side is not None else None, info, settings.audio,
                                         settings.encode, sidecar)   # a bad layout fails before any work
    for warning in audio_plan.warnings:
        logger.warning("audio: %s", warning)
    for dropped in audio_plan.left_out:
        logger.warning("audio track %d (stream %d) left out: %s", dropped.track, dropped.stream, dropped.reason)
    storage_preflight_task(store, prefix)
    sha = hash_task(source)

    report = qc_stage(source, sha, settings, info, store)
    # Each published audio layout's checks join the source's (qc.json, the record's warnings); their
    # severities are settings like every other check's, so a studio can make a silent LFE an error.
    audio_qc = audio_qc_task(source, audio_plan, info, settings.qc) if audio_plan.tracks else []
    report = with_audio_checks(report, audio_qc, audio_plan.warnings)
    errors = [c for c in report["checks"] if not c["passed"] and c["severity"] == "error"]
    if errors:
        where = quarantine_task(source, store, key, report)
        raise QCFailed(source, [f"{c['name']}: {c['message']}" for c in errors], report, where)

    work = settings.storage.work_dir.resolve() / sha[:16]
    in_use = use_work_folder(work)  # held until this run ends; a failed run keeps the folder to resume from
    try:
        # Every video stage (shots, keyframes, trials, encodes, the VMAF reference, the tone map) reads the
        # conformed picture; audio keeps ``source, info``, on the source's timeline (the picture's frame 0 is
        # its first).
        video_source, video_info, video_sha = conform_task(source, sha, settings.conform, info, report, settings.qc,
                                                           work)
        conform_record = (report.get("measurements", {}).get("conform") or {}).get("steps", [])

        shot_list = shots_stage(video_source, video_sha, settings, video_info, store)
        half_rate = encode.half_rate_title(video_info.video.fps, settings.encode)
        if half_rate:  # a half-rate rung has the even frames only: every keyframe goes on one
            detected, shot_list = shot_list, shots.even_starts(shot_list)
            moved = len({s.start_frame for s in detected.shots} - {s.start_frame for s in shot_list.shots})
            step = conform.half_rate_step(video_info.video.fps, settings.encode, moved, len(detected.shots))
            logger.info("conform %s: %s -> %s", step.step, step.found, step.action)
            conform_record = [*conform_record, step.to_dict()]
        keyframes = encode.keyframe_frames([s.start_frame for s in shot_list.shots], video_info.video.frames,
                                           video_info.video.fps, settings.encode.segment_s, even=half_rate)
        # On a Dask cluster the tasks read the picture from the store and put their encodes there.
        remote = stage_source_task(video_source, store, settings.storage, video_sha) if _distributed() else None
        specs = ladder_specs(video_info.video, settings)
        tonemapped = tonemap_task(video_info, video_sha, settings, work) if any(sp.tonemapped for sp in specs) else None
        encode_dir = work / f"encode-{config_digest(encode.result_digest_parts(settings.encode), keyframes)}"
        audio_calls: list[tuple[Any, tuple[Any, ...]]] = [
            (encode_track_task, (source, info, track, settings, encode_dir)) for track in audio_plan.tracks]
        # Audio first: it is short, and would otherwise wait behind every rung in the bounded pool. With
        # a Dask cluster it is encoded here, before the rungs go out (a sidecar's audio files are local).
        audio_futures = [t.submit(*args) for t, args in audio_calls] if remote is None else []
        audio_here = [t(*args) for t, args in audio_calls] if remote is not None else []
        ladders = side_by_side([functools.partial(make_ladder, spec, video_source, video_sha, video_info, shot_list,
                                                  keyframes, settings, work, remote, tonemapped, store)
                                for spec in specs])
        video = [r for made in ladders for r in made.video]
        encode_digest = config_digest([made.encode_digest for made in ladders])
        texts = subtitles_task(side, encode_dir) if side is not None and side.subtitles else []
        renditions = video + [f.result() for f in audio_futures] + audio_here

        key_ids = None
        if encrypt:
            tiers = sorted({tier_of(r) for r in renditions}, key=TIERS.index)
            key_ids = content_keys_task(key, tiers, settings)

        # Each package goes to a folder named by what made it, so republishing a title never rewrites
        # files a reader is using and never leaves stale segments in a listed package; title.json,
        # written last, says which folder is current.
        # The rendition files are named by their CRFs, which the ladder's feedback step may have moved.
        made_by: list[Any] = [sha, encode_digest, settings.package, settings.encode.segment_s,
                              [r.path.name for r in video]]
        made_by.append([[r.name, r.path.name] for r in renditions if r.kind == "audio"] +
                       [[t.name, t.path.name] for t in texts])
        if key_ids is not None:
            # Fresh IVs on every packager run: an encrypted package is never rewritten in place.
            made_by += [settings.drm.model_dump(mode="json", exclude={"master_key", "master_key_file"}), key_ids,
                        secrets.token_hex(8)]
        version = "v-" + config_digest(*made_by)[:12]
        package_dir = Path(tempfile.mkdtemp(prefix="package-", dir=work))  # private to this run
        try:
            pkg = package_task(renditions, package_dir, settings.encode.segment_s, settings, texts, key, key_ids)
            publish_task(pkg.root, store, f"{prefix}/{version}")
        finally:
            shutil.rmtree(package_dir, ignore_errors=True)
        qc_url = put_json_task(store, f"{prefix}/{version}/qc.json", report)
        put_json_task(store, f"{prefix}/{version}/shots.json", shot_list.to_dict())
        ladder_entry = publish_ladder_reports(ladders, title, settings, store, f"{prefix}/{version}", work, tonemapped)

        record = title_record(title, source, sha, info, report, shot_list, renditions, pkg, store,
                              f"{prefix}/{version}", qc_url, started, ladder_entry["ladder"], subtitles=texts,
                              sidecar=side, hls_key_uri=settings.drm.hls_key_uri if pkg.encryption else None,
                              conform=conform_record, audio_report=audio_report(audio_plan, audio_qc, renditions))
        record["ladders"] = [{k: e[k] for k in ("ladder", "codec", "range", "mode", "quality_metric", "renditions")
                              if k in e} | ({"report": e["report"]} if "report" in e else {})
                             for e in ladder_entry["ladders"]]
        record_url = title_record_task(store, prefix, record)
        if finish_with_work_folder(in_use, work, keep=settings.storage.keep_work):
            logger.info("work folder %s removed (storage.keep_work keeps it)", work)
        return IngestResult(title_id=title, record_url=record_url, record=record)
    except BaseException:
        in_use.close()  # a failed run keeps the folder (a re-run resumes from it), not its lock
        raise


def title_record(title: str, source: Path, sha: str, info: probe.MediaInfo, report: dict[str, Any],
                 shot_list: shots.ShotList, renditions: list[Rendition], pkg: Package, store: Storage,
                 prefix: str, qc_url: str, started: dt.datetime, ladder: dict[str, Any], *,
                 subtitles: list[SubtitleTrack] | None = None, sidecar: Sidecar | None = None,
                 hls_key_uri: str | None = None, conform: list[dict[str, Any]] | None = None,
                 audio_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The title record: what was published, where (``prefix``: the package's folder), and from what.

    ``ladder`` says how the rungs were chosen (and where ladder.json is); ``encryption`` holds the
    scheme, the systems and the key id of each tier (never a key); ``countries`` the sidecar's
    territories (null: everywhere), ``release_at`` and ``expected_plays`` its release time and
    expected plays a day (for the off-peak fill; null: none given); ``audio`` and ``subtitles`` the
    tracks; ``audio_report`` the audio plan, what was left out of it and why, the layout QC and each
    track's loudness; ``conform`` what the picture conform found and did (encoding/conform.py), step
    by step.
    """
    def entry(r: Rendition) -> dict[str, Any]:
        folder = f"{r.kind}/{r.name}"
        out = {"kind": r.kind, "name": r.name, "codec": r.codec, "kbps": r.kbps, "target_kbps": r.target_kbps,
               "duration_s": round(r.duration_s, 3), "playlist": f"{folder}.m3u8",
               "init": f"{folder}/init.mp4"}
        if r.kind == "video":
            out.update(width=r.width, height=r.height, frames=r.frames, ladder=r.ladder, range=r.range,
                       frame_rate=r.frame_rate, fps=round(float(Fraction(r.frame_rate)), 3), half_rate=r.half_rate)
        else:
            out.update(channels=r.channels, sample_rate=r.sample_rate, language=r.language, role=r.role,
                       layout=r.layout, loudness=dict(r.loudness))
        return out

    encryption = None
    if pkg.encryption is not None:
        encryption = {**pkg.encryption, "hls_key_uri": hls_key_uri}

    return {
        "title_id": title,
        "title_key": title_key(title),
        "status": "published",
        "package": store.url_for(prefix),
        "reelflow_version": reelflow.__version__,
        "started_at": started.isoformat(timespec="seconds"),
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": {"name": source.name, "sha256": sha, "size_bytes": info.size_bytes, "probe": info.to_dict()},
        "qc": {"verdict": report["verdict"], "report": qc_url,
               "warnings": [c["name"] for c in report["checks"] if not c["passed"]]},
        "shots": {"count": len(shot_list.shots), "cuts": shot_list.cuts,
                  "report": store.url_for(f"{prefix}/shots.json")},
        "ladder": ladder,
        "conform": list(conform or []),
        "renditions": [entry(r) for r in sorted(renditions, key=lambda r: (r.kind != "video", r.target_kbps))],
        "manifests": {"dash": store.url_for(f"{prefix}/{pkg.dash_manifest}"),
                      "hls": store.url_for(f"{prefix}/{pkg.hls_master}")},
        "encryption": encryption,
        "countries": list(sidecar.countries) if sidecar is not None and sidecar.countries is not None else None,
        "release_at": sidecar.release_at.isoformat() if sidecar is not None and sidecar.release_at else None,
        "expected_plays": sidecar.expected_plays if sidecar is not None else None,
        "audio": [{"language": r.language, "role": r.role, "name": r.name, "playlist": f"audio/{r.name}.m3u8",
                   "codec": r.codec, "channels": r.channels, "layout": r.layout}
                  for r in renditions if r.kind == "audio"],
        "audio_left_out": (audio_report or {}).get("left_out", []),
        "audio_report": audio_report,
        "subtitles": [{"language": t.language, "role": t.role, "name": t.name, "playlist": f"text/{t.name}.m3u8"}
                      for t in subtitles or ()],
    }


def with_audio_checks(report: dict[str, Any], layout_qc: list[dict[str, Any]],
                      plan_warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    """The QC report with every audio layout check added (``audio:<rendition>:<check>``) and the plan's
    own finding (``audio:same_language``: two streams of one language with no role), verdict updated."""
    added = [{**c, "name": f"audio:{c['name']}"} for layout in layout_qc for c in layout["checks"]]
    if layout_qc or plan_warnings:
        added.append({"name": "audio:same_language", "severity": "warning", "passed": not plan_warnings,
                      "message": "; ".join(plan_warnings) or "no two streams share a language without a role",
                      "value": len(plan_warnings), "threshold": 0, "segments": []})
    if not added:
        return report
    checks = [*report["checks"], *added]
    fired = {c["severity"] for c in checks if not c["passed"]}
    verdict = "error" if "error" in fired else "warning" if "warning" in fired else "pass"
    return {**report, "checks": checks, "verdict": verdict}


def audio_report(plan: audio.AudioPlan, layout_qc: list[dict[str, Any]], renditions: list[Rendition],
                 ) -> dict[str, Any]:
    """What title.json says of the audio: the plan, what was left out and why, QC, loudness in and out."""
    return {**plan.to_dict(), "qc": layout_qc,
            "loudness": {r.name: dict(r.loudness) for r in renditions if r.kind == "audio"}}


# --- the measured ladder: trials, rungs, final encodes, delivered quality, report -------------

@dataclass(frozen=True)
class LadderOutcome:
    """The analysis (None for the fixed ladder) and, once encoded, what each rung delivered."""

    analysis: LadderAnalysis | None
    renditions: dict[str, Rendition]        # by planned rung name
    delivered: dict[str, Delivered]
    plan_digest: str | None                 # the rungs' per-shot CRFs: part of the encode folder's name
    delivered_cpu_s: float = 0.0


def analyse_ladder(source: Path, sha: str, info: probe.MediaInfo, shot_list: shots.ShotList,
                   keyframes: tuple[int, ...], settings: Settings, work: Path,
                   remote: WorkStore | None = None) -> LadderOutcome:
    """Trials fanned out by group of shots, then the rungs on the title's hulls (a pure step)."""
    config = settings.trials
    found = tuple(shot_list.shots)
    units = analysis.allocation_units(found, keyframes, info, settings)
    trial_dir = work / f"trials-{config_digest(config)}"
    plan = plan_trials_task(source, sha, info, found, config, trial_dir)
    groups = trials.group_shots(units, info.video.fps, config)
    futures = trial_group_task.map(source, sha, unmapped(info), groups, unmapped(config), unmapped(plan),
                                   unmapped(keyframes), unmapped(trial_dir), unmapped(remote))
    measured = tuple(s for f in futures for s in f.result())
    rungs = select_ladder([s.points for s in measured], settings.ladder, settings.ladder.mode)  # type: ignore[arg-type]
    result = LadderAnalysis(mode=settings.ladder.mode, plan=plan, shots=measured, rungs=tuple(rungs),
                            fixed=tuple((r.width, r.height, r.kbps)
                                        for r in encode.ladder_for_source(info.video, settings.encode.ladder)),
                            units=units)
    get_run_logger().info("%s ladder: %s; analysis %.1f CPU s", settings.ladder.mode,
                          ", ".join(f"{r.name} (VMAF {r.vmaf:.1f})" for r in rungs), result.cpu_s)
    return LadderOutcome(result, {}, {}, config_digest([(r.width, r.height, r.crfs) for r in rungs]))


def _with_pieces_cpu(joined: Rendition, pieces: Rendition) -> Rendition:
    return dataclasses.replace(joined, cpu_s=joined.cpu_s + pieces.cpu_s)


@dataclass(frozen=True)
class _Unjoined:
    """A rung encoded as pieces and not joined yet: the plan, its pieces and their files, each frame's bytes."""

    rung: PlannedRung
    pieces: list[encode.ShotCrf]
    files: list[str]                  # below the encode folder
    frame_sizes: tuple[int, ...]


def encode_and_measure(source: Path, info: probe.MediaInfo, keyframes: tuple[int, ...], settings: Settings,
                       ladder: LadderOutcome, encode_dir: Path,
                       remote: WorkStore | None = None) -> tuple[list[Rendition], LadderOutcome]:
    """Each planned rung encoded shot by shot, cheapest first, then scored on every frame.

    analysis.deliver_rungs closes the loop: with ``ladder.feedback`` each rung carries what the rung
    below missed its plan by, and a rung still more than ``ladder.recheck_vmaf`` off is encoded and
    scored once more. The rungs go one after another (each needs the one below), but nothing inside
    a rung waits: its pieces are encoded in groups of about ``ladder.task_s`` seconds and its VMAF
    is scored in spans as long, each a task for any worker, each span from the pieces that cover it.
    The rungs kept are joined at the end, side by side, so no join stands between one rung and the
    next. Returns the video renditions in rung order and the outcome with the final rungs, renditions
    and delivered quality.
    """
    assert ladder.analysis is not None
    found = ladder.analysis.units
    config, fps, frames = settings.encode, info.video.fps, info.video.frames
    logger = get_run_logger()
    progress = RungStageProgress(f"{config.codec} rungs", ladder.analysis.rungs, frames,
                                 lambda rung: analysis.planned_half_rate(rung, info, config))
    encoding = [""]                 # the planned rung whose encode is being scored
    unjoined: dict[Path, _Unjoined] = {}

    def encode_rung(rung: PlannedRung) -> Rendition:
        encoding[0] = rung.name
        rendition = _encode_rung(rung)
        if not settings.ladder.measure_delivered:
            progress.scored(rung.name, rendition, 0.0, made=True)
        return rendition

    def _encode_rung(rung: PlannedRung) -> Rendition:
        out = encode_dir / analysis.rung_file_name(rung, config.codec)
        half_rate = analysis.planned_half_rate(rung, info, config)
        if remote is not None:
            remote.fetch_if_stored(f"{encode_dir.name}/{out.name}", out)
        finished = encode.finished_rendition(out, rung.width, rung.height, round(rung.kbps), keyframes, info,
                                             config.codec, half_rate=half_rate)
        if finished is not None:
            logger.info("%s: reusing the finished encode %s", rung.name, out.name)
            return finished
        pieces = analysis.shot_crfs(rung, found)
        groups = analysis.piece_groups(pieces, fps, settings.ladder.task_s, config.parallel_encodes)
        made = [f.result() for f in encode_pieces_task.map(source, unmapped(rung), groups, unmapped(keyframes),
                                                            unmapped(info), unmapped(config),
                                                            unmapped(encode_dir), unmapped(remote))]
        sizes = tuple(size for group in made for size in group.frame_sizes)
        unjoined[out] = _Unjoined(rung, pieces, [_piece_name(rung, p, keyframes, config, half_rate) for p in pieces],
                                  sizes)
        seconds = float(frames / fps)
        rendition = Rendition(kind="video", path=out, codec=config.codec, kbps=sum(sizes) * 8 / 1000 / seconds,
                              duration_s=seconds, width=rung.width, height=rung.height,
                              target_kbps=round(rung.kbps), frames=len(sizes), half_rate=half_rate,
                              cpu_s=sum(group.cpu_s for group in made))
        logger.info("%s: pieces at %.0f kbps, planned %.0f kbps at VMAF %.2f; %d pieces in %d tasks, %.1f CPU s",
                    rung.name, rendition.kbps, rung.kbps, rung.vmaf, len(pieces), len(groups), rendition.cpu_s)
        return rendition

    def score(rendition: Rendition, step: int) -> vmaf.VmafResult:
        spans = vmaf.rung_spans(frames, fps, settings.ladder.task_s, step)
        threads = settings.ladder.vmaf_threads
        pending = unjoined.get(rendition.path)
        if pending is None:
            parts = rung_vmaf_task.map(rendition, spans, unmapped(info), unmapped(encode_dir), unmapped(remote),
                                       unmapped(threads), unmapped(step))
            return vmaf.joined_scores([f.result() for f in parts], frames)
        futures = []
        for span in spans:
            first, end = vmaf.span_cover(span, frames)
            covering = [i for i, p in enumerate(pending.pieces) if p.end_frame > first and p.start_frame < end]
            futures.append(rung_vmaf_task.submit(
                rendition, span, info, encode_dir, remote, threads, step, [pending.files[i] for i in covering],
                pending.pieces[covering[0]].start_frame, config.codec))
        return vmaf.joined_scores([f.result() for f in futures], frames)

    def measure(rendition: Rendition) -> Delivered:
        result = score(rendition, 1)
        pending = unjoined.get(rendition.path)
        if pending is not None:
            delivered = analysis.measure_delivered(rendition, result, found, info, coded_sizes=pending.frame_sizes)
        else:
            here = _fetched([rendition], encode_dir, remote)[0]     # frame sizes are read from the file
            delivered = analysis.measure_delivered(here, result, found, info)
        progress.scored(encoding[0], rendition, result.cpu_s, made=True)
        logger.info("%s delivered: %.0f kbps, VMAF %.2f (min %.1f); %.1f CPU s", rendition.name, delivered.kbps,
                    result.mean, result.min, result.cpu_s)
        return delivered

    def quick(rendition: Rendition, step: int) -> vmaf.VmafResult:
        result = score(rendition, step)
        progress.scored(encoding[0], rendition, result.cpu_s, made=False)
        logger.info("%s checked: VMAF %.2f on every %dth frame; %.1f CPU s", rendition.name, result.mean, step,
                    result.cpu_s)
        return result

    result, made, delivered = analysis.deliver_rungs(
        ladder.analysis, encode_rung, measure, settings.ladder, quick,
        half_rate_rung=lambda rung: analysis.planned_half_rate(rung, info, settings.encode))
    kept = [made[r.name] for r in result.rungs]
    joins = {r.path: join_rung_task.submit(unjoined[r.path].rung, unjoined[r.path].pieces, keyframes, info, config,
                                           encode_dir, remote) for r in kept if r.path in unjoined}
    joined = [r if r.path not in joins else _with_pieces_cpu(joins[r.path].result(), r) for r in kept]
    video = _fetched(joined, encode_dir, remote)
    renditions = {r.name: v for r, v in zip(result.rungs, video, strict=True)}
    return video, dataclasses.replace(ladder, analysis=result, renditions=renditions, delivered=delivered)


HDR_METRIC = (
    "VMAF (vmaf_v0.6.1) on the 10-bit PQ/HLG code values as they are, rung against the HDR source, both "
    "upscaled to the source's display size: no open VMAF model is validated on PQ or HLG, and tone-mapping "
    "both sides to SDR first would score the operator's highlight compression as well as the encode (the "
    "same operator hides the rung's highlight artefacts in the clipped range). Scored this way the numbers "
    "rank an HDR ladder's rungs and shots consistently (the hull and the allocation only compare them with "
    "each other) but are not comparable with SDR VMAF; the same metric scores the trials, the hull and the "
    "delivered rungs."
)
SDR_METRIC = "VMAF (vmaf_v0.6.1) against the source at its display size"
TONEMAPPED_METRIC = ("VMAF (vmaf_v0.6.1) against the tone-mapped SDR intermediate (the SDR fallback's own "
                     "reference), at the source's display size")


def _metric(spec: LadderSpec) -> str:
    if spec.range != "sdr":
        return HDR_METRIC
    return TONEMAPPED_METRIC if spec.tonemapped else SDR_METRIC


def publish_ladder_report(ladder: LadderOutcome, title: str, settings: Settings, video: list[Rendition],
                          store: Storage, prefix: str, work: Path, *, stem: str = "ladder",
                          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``<stem>.json`` and ``<stem>.png`` beside the package; the title record's entry for the ladder."""
    extra = extra or {}
    if ladder.analysis is None:
        entry = {"mode": "fixed", "codec": settings.encode.codec, **extra,
                 "reference": "Apple HLS authoring spec, H.264 16:9" + (
                     "" if settings.encode.codec == "h264" else
                     f", rates scaled by {encode.FIXED_RATE_FACTOR[settings.encode.codec]:g}"
                     f"{f' x {encode.FIXED_HDR_FACTOR:g} (HDR)' if extra.get('range', 'sdr') != 'sdr' else ''}"),
                 "rungs": [{"name": r.name, "width": r.width, "height": r.height, "target_kbps": r.target_kbps,
                            "kbps": r.kbps, "frame_rate": r.frame_rate, "half_rate": r.half_rate} for r in video]}
        if stem != "ladder":
            entry["report"] = put_json_task(store, f"{prefix}/{stem}.json", entry)
        return entry
    result = ladder.analysis
    delivered_cpu = sum(d.vmaf.cpu_s for d in ladder.delivered.values())
    report = analysis.ladder_report(result, title_id=title, codec=settings.encode.codec, settings=settings,
                                    renditions=ladder.renditions, delivered=ladder.delivered,
                                    delivered_cpu_s=delivered_cpu)
    report.update(extra)
    report_url = put_json_task(store, f"{prefix}/{stem}.json", report)
    picture = Path(tempfile.mkdtemp(prefix="ladder-plot-", dir=work)) / f"{stem}.png"
    try:
        plot_ladder(picture, result.points, result.rungs, mode=result.mode, fixed=analysis.fixed_estimates(result),
                    fixed_label="fixed ladder (predicted from the trials)",
                    delivered=[(d.kbps, d.vmaf.mean) for d in ladder.delivered.values()],
                    title=f"{title}: {result.mode} ladder")
        plot_url = put_bytes_task(store, f"{prefix}/{stem}.png", picture.read_bytes(), "image/png")
    finally:
        shutil.rmtree(picture.parent, ignore_errors=True)
    return {
        "mode": result.mode, "codec": settings.encode.codec, **extra, "report": report_url, "plot": plot_url,
        "cpu_s": report["cpu_s"], "planned_vs_delivered": report["planned_vs_delivered"],
        "rungs": [{"name": r["name"], "width": r["width"], "height": r["height"], "planned": r["planned"],
                   "delivered": r.get("delivered"), "frame_rate": r.get("frame_rate"),
                   "half_rate": r.get("half_rate", False)} for r in report["rungs"]],
    }


def publish_ladder_reports(ladders: list[MadeLadder], title: str, settings: Settings, store: Storage, prefix: str,
                           work: Path, tonemapped: ToneMapped | None) -> dict[str, Any]:
    """The reports of every ladder; ``ladder`` (the first's entry, as a single-ladder title has it) and
    ``ladders`` (one entry per ladder: codec, range, the metric that scores it, its renditions)."""
    entries = []
    single = len(ladders) == 1 and ladders[0].spec.range == "sdr" and not ladders[0].spec.tonemapped
    for made in ladders:
        spec = made.spec
        extra: dict[str, Any] = {"ladder": spec.name, "range": spec.range, "quality_metric": _metric(spec),
                 "source": "tone-mapped SDR intermediate" if spec.tonemapped else "source",
                 "renditions": [r.name for r in made.video]}
        if spec.tonemapped and tonemapped is not None:
            extra["tonemap"] = tonemapped.describe()
        stem = "ladder" if single else f"ladder-{spec.name}"
        entries.append(publish_ladder_report(made.outcome, title, made.settings, made.video, store, prefix, work,
                                             stem=stem, extra=extra))
    if not single:
        index = {"title_id": title, "ladders": entries, "hdr_quality_metric": HDR_METRIC,
                 "keys": "HDR and SDR rungs of one height tier share that tier's key (packaging/keys.py)"}
        url = put_json_task(store, f"{prefix}/ladder.json", index)
        first = {**entries[0], "index": url}
        return {"ladder": first, "ladders": entries}
    return {"ladder": entries[0], "ladders": entries}


# --- several ladders per title: (codec, range) each from its own source, trials and hull ----------

@dataclass(frozen=True)
class MadeLadder:
    spec: LadderSpec
    settings: Settings
    outcome: LadderOutcome
    video: list[Rendition]
    encode_digest: str


@task(name="tone map", cache_policy=NO_CACHE)
def tonemap_task(info: probe.MediaInfo, source_sha: str, settings: Settings, work: Path) -> ToneMapped:
    made = tonemap_source(info, source_sha, settings.tonemap, work)
    get_run_logger().info("SDR fallback intermediate: %s (%s, peak %g cd/m2)", made.path.name, made.operator,
                          made.peak_nits)
    return made


def make_ladder(spec: LadderSpec, source: Path, sha: str, info: probe.MediaInfo, shot_list: shots.ShotList,
                keyframes: tuple[int, ...], settings: Settings, work: Path, remote: WorkStore | None,
                tonemapped: ToneMapped | None, store: Storage) -> MadeLadder:
    """One ladder: analysis (or the fixed ladder) and the encodes, from the ladder's own source."""
    lset = ladder_settings(settings, spec.codec)
    if spec.tonemapped:
        assert tonemapped is not None
        # the intermediate is another source: its own hash for the caches, its own work folder
        source, info = tonemapped.path, tonemapped.info
        sha = config_digest(sha, tonemapped.path.parent.name)
        work = work / tonemapped.path.parent.name
        if remote is not None:
            remote = stage_source_task(source, store, settings.storage, sha)
    if lset.ladder.mode == "fixed":
        ladder = LadderOutcome(None, {}, {}, None)
    else:
        ladder = analyse_ladder(source, sha, info, shot_list, keyframes, lset, work, remote)
    # ``sha`` names the picture encoded (the source's, the conformed one's or the tone-mapped one's)
    encode_digest = config_digest(encode.result_digest_parts(lset.encode), keyframes, ladder.plan_digest, sha)
    encode_dir = work / f"encode-{encode_digest}"
    if ladder.analysis is None:
        rungs = encode.fixed_ladder(info.video, lset.encode, codec_for(spec.codec, info.video))
        get_run_logger().info("fixed %s ladder: %s; %d keyframes planned", spec.name,
                              ", ".join(r.name for r in rungs), len(keyframes))
        video = [f.result() for f in encode_rung_task.map(source, rungs, unmapped(keyframes), unmapped(info),
                                                           unmapped(lset.encode), unmapped(encode_dir),
                                                           unmapped(remote))]
        video = _fetched(video, encode_dir, remote)
    else:
        video, ladder = encode_and_measure(source, info, keyframes, lset, ladder, encode_dir, remote)
    video = [dataclasses.replace(r, ladder=spec.name if spec.multi else "", range=spec.range) for r in video]
    return MadeLadder(spec, lset, ladder, video, encode_digest)


def side_by_side(calls: list[Callable[[], R]]) -> list[R]:
    """Each call in a thread of its own, inside this flow run (their tasks share its task runner).

    The ladders of a multi-ladder title do not wait on each other, so their trials and rungs are
    submitted side by side and fill the pool (or the cluster) together; within a ladder the rungs
    still go one after another (analysis.deliver_rungs).
    """
    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="ladder") as pool:
        # a context copy per thread: the flow run's context (and its task runner) goes with each call
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [f.result() for f in futures]


def ingest_flow(settings: Settings) -> Any:
    """The ingest flow with the task runner its settings choose.

    With ``orchestration.dask_address`` the per-shot trials, the rung encodes and their VMAF run on
    that Dask cluster (checked reachable now: ConfigError otherwise); else on a thread pool bounded
    to the configured number of encodes at once.
    """
    address = settings.orchestration.dask_address
    if address:
        from prefect_dask.task_runners import DaskTaskRunner

        check_dask_address(address)
        runner: Any = DaskTaskRunner(address=address)  # Any: Prefect's generics, as in _encode_runner
        return ingest.with_options(task_runner=runner)
    return ingest.with_options(task_runner=_encode_runner(settings.encode.parallel_encodes))


def check_dask_address(address: str, timeout_s: float = 5.0) -> None:
    """A Dask scheduler answers at ``address`` (tcp://host:port), or one ConfigError saying what to do."""
    fix = ("start one (`dask scheduler`, then `dask worker ADDRESS` on each encoding machine; docs/deploy.md) "
           "or leave --dask / orchestration.dask_address unset to encode on this machine")
    parts = urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        raise ConfigError(f"Dask address {address!r} is not tcp://HOST:PORT; {fix}")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"no Dask scheduler answers at {address} ({exc.strerror or exc}); {fix}") from exc


# --- dropped objects: fetched into the work folder, quarantined when unreadable ----------------
# (the watcher's runs: flows/watch.py starts them with s3:// or file:// sources)

def is_drop(source: str) -> bool:
    """A source given as a URL came from a watched bucket or folder, not from a person at the CLI."""
    return is_remote(source) or source.startswith("file://")


@storage_task("fetch source")
def fetch_source_task(url: str, config: StorageConfig, etag: str | None = None) -> Path:
    path = fetch_s3_object(url, config.work_dir.resolve(), config, etag=etag)
    get_run_logger().info("fetched %s to %s", url, path)
    return path


def _dropped_etag(source: str) -> str | None:
    """The ETag the watcher saw, from this run's idempotency key (``reelflow-ingest:<url>#<etag>``):
    the run ingests the version that was dropped, or fails saying the object was replaced."""
    context = FlowRunContext.get()
    key = (context.flow_run.idempotency_key if context and context.flow_run else None) or ""
    head, _, etag = key.rpartition("#")
    from reelflow.flows.watch import RUN_KEY_PREFIX

    return (etag or None) if head == f"{RUN_KEY_PREFIX}{source}" else None


def _local_drop(source: str, config: StorageConfig) -> Path:
    if is_remote(source):
        return fetch_source_task(source, config, _dropped_etag(source))
    if source.startswith("file://"):
        return Path(unquote(urlsplit(source).path))
    return Path(source)


def sidecar_title_id(path: Path) -> str | None:
    """The ``title_id`` a sidecar gives, if any (the sidecar's full model lives in packaging/)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"sidecar {path} is not readable JSON: {exc}") from exc
    value = data.get("title_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def run_drop_ingest(source: str, settings: Settings, *, title_id: str | None = None,
                    storage_url: str | None = None, sidecar: str | None = None, drm: bool = True) -> IngestResult:
    """``run_ingest`` for a dropped object: fetch it (and its sidecar), and quarantine it if unreadable.

    A person at the CLI gets one line for a file that is not media; a drop has nobody watching,
    so it goes to ``quarantine/<title>/`` with a report saying why, like a QC failure. The dropped
    object itself is only read, never moved or deleted.
    """
    local = _local_drop(source, settings.storage)
    sidecar_path = _local_drop(sidecar, settings.storage) if sidecar else None
    title = title_id or (sidecar_title_id(sidecar_path) if sidecar_path else None) or default_title_id(local)
    try:
        return run_ingest(local, settings, title_id=title, storage_url=storage_url, sidecar=sidecar_path, drm=drm)
    except InvalidMedia as exc:
        if not is_drop(source):
            raise
        store = open_storage(storage_url or settings.storage.output, settings.storage)
        report = {"verdict": "error", "source": source, "checks": [
            {"name": "probe", "passed": False, "severity": "error", "message": str(exc)}]}
        where = quarantine_task(local, store, title_key(check_title_id(title)), report)
        raise InvalidMedia(local, f"{exc.problem} (dropped as {source}); quarantined at {where}", exc.fix) from exc
