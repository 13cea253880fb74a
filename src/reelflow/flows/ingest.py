"""The Prefect flow ``ingest``: probe, QC, shots, encodes, package, publish, title record.

Tasks are thin shells around the stage functions in ``encoding/`` and ``packaging/``; this
module only wires them and adds what an orchestrator is for:

- fan-out: the ladder's rungs are encoded with ``.map`` under a bounded thread pool;
- caching: probe, QC and shots are cached by Prefect on the source's SHA-256 and the stage's
  config. Encodes go to content-addressed folders (``<work>/<sha>/<stage>-<config digest>/``)
  and a finished encode is recognised by its file, which only gets its final name once verified.
  A re-run after a crash therefore skips every finished encode. The encodes are not cached by
  Prefect itself: a cache record can outlive the file it describes, the file cannot;
- retries: only storage calls are retried, and only on TransientStorageError;
- the title record is written last; it is the only thing readers trust.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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
from reelflow.encoding import encode, probe, qc, shots
from reelflow.encoding.encode import Rendition
from reelflow.errors import ConfigError, InvalidMedia, QCFailed, TransientStorageError
from reelflow.infra.hashing import config_digest, sha256_file
from reelflow.infra.remote import fetch_s3_object, is_remote
from reelflow.infra.settings import EncodeConfig, QCConfig, Rung, Settings, ShotConfig, StorageConfig, load_settings
from reelflow.infra.storage import Storage, open_storage
from reelflow.packaging import publish
from reelflow.packaging.packager import Package, package

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

TITLE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
TITLES_PREFIX = "titles"


def default_title_id(source: Path) -> str:
    """A title id from the file name: lower case, runs of other characters as one dash."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", source.stem.lower()).strip("-._")
    return slug[:128] or "title"


def check_title_id(title_id: str) -> str:
    if not TITLE_ID.match(title_id):
        raise ConfigError(
            f"title id {title_id!r} is not valid: use 1-128 of a-z, 0-9, '.', '_', '-', starting with a letter "
            "or digit"
        )
    return title_id


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
        config = config_digest(parameters.get("config"))
        code = _code_digest(module) + _code_digest(probe)  # both judge from probe's fields
        return f"reelflow-{stage}-{parameters['source_sha']}-{config}-{code}"

    return key


# --- progress: a log line per tenth of the work, so the console and the UI both show it -------

def progress_logger(label: str, total: float, unit: str = "s") -> Callable[[float], None]:
    """A progress callback (seconds of media, or frames) that logs each 10% step of ``total``."""
    logger = get_run_logger()
    next_step = [10]

    def report(done: float) -> None:
        percent = 100 * done / total if total > 0 else 100
        if percent >= next_step[0] and next_step[0] < 100:
            logger.info("%s: %d%% (%.1f of %.1f %s)", label, int(percent), done, total, unit)
            next_step[0] = int(percent // 10 + 1) * 10

    return report


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
def qc_task(source: Path, source_sha: str, config: QCConfig, info: probe.MediaInfo) -> dict[str, Any]:
    report = qc.run_qc(source, config, info=info, progress=progress_logger("QC", info.duration_s))
    logger = get_run_logger()
    for check in report.checks:
        if not check.passed:
            logger.log(logging.ERROR if check.severity == "error" else logging.WARNING,
                       "QC %s %s: %s", check.severity, check.name, check.message)
    logger.info("QC verdict: %s", report.verdict)
    return report.to_dict()


@task(name="shots", cache_key_fn=_stage_key("shots", shots), persist_result=True)
def shots_task(source: Path, source_sha: str, config: ShotConfig, info: probe.MediaInfo) -> dict[str, Any]:
    report = progress_logger("shots", info.video.frames, unit="frames")
    found = shots.detect_shots(source, config, info=info, progress=lambda done, total: report(done))
    get_run_logger().info("%d shots (%d cuts)", len(found.shots), len(found.cuts))
    return found.to_dict()


@storage_task("quarantine")
def quarantine_task(source: Path, storage: Storage, title_id: str, report: dict[str, Any]) -> str:
    return publish.quarantine(source, storage, title_id, report)


@task(name="encode rung", cache_policy=NO_CACHE, task_run_name="encode {rung.height}p {rung.kbps}k")
def encode_rung_task(source: Path, rung: Rung, keyframes: tuple[int, ...], info: probe.MediaInfo,
                     config: EncodeConfig, work: Path) -> Rendition:
    rendition = encode.encode_video_rung(source, rung, keyframes, info, config, work / f"{rung.name}.mp4",
                                         progress=progress_logger(f"encode {rung.name}", info.duration_s))
    get_run_logger().info("%s: %.0f kbps (target %d)", rung.name, rendition.kbps, rung.kbps)
    return rendition


@task(name="encode audio", cache_policy=NO_CACHE)
def encode_audio_task(source: Path, info: probe.MediaInfo, config: EncodeConfig, work: Path) -> Rendition:
    out = work / "audio.mp4"
    rendition = encode.encode_audio(source, info, config, out,
                                    progress=progress_logger("encode audio", info.duration_s))
    get_run_logger().info("audio: %.0f kbps AAC stereo", rendition.kbps)
    return rendition


@task(name="package", cache_policy=NO_CACHE)
def package_task(renditions: list[Rendition], out_dir: Path, segment_s: float, settings: Settings) -> Package:
    result = package(renditions, out_dir, segment_s=segment_s, config=settings.package)
    get_run_logger().info("packaged %d files (DASH %s, HLS %s)", len(result.files), result.dash_manifest,
                          result.hls_master)
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
           config_file: str | None = None, sidecar: str | None = None) -> dict[str, Any]:
    """Ingest one mezzanine file: QC, shots, ladder encodes, DASH + HLS package, publish.

    ``source`` is a local path, or a dropped object (``s3://bucket/key``, ``file:///path``), which
    is fetched first and quarantined when it is not readable media. ``sidecar``: the drop's JSON
    sidecar (same forms); its ``title_id`` names the title when ``title_id`` is not given.
    """
    settings = load_settings(Path(config_file) if config_file else None)
    if is_drop(source) or sidecar:
        return run_drop_ingest(source, settings, title_id=title_id, storage_url=storage, sidecar=sidecar).record
    return run_ingest(Path(source), settings, title_id=title_id, storage_url=storage).record


def run_ingest(source: Path, settings: Settings, *, title_id: str | None = None,
               storage_url: str | None = None) -> IngestResult:
    """The flow's body (call inside a flow run): each stage as a task."""
    logger = get_run_logger()
    title = check_title_id(title_id or default_title_id(source))
    store = open_storage(storage_url or settings.storage.output, settings.storage)
    prefix = f"{TITLES_PREFIX}/{title}"
    started = dt.datetime.now(dt.UTC)

    # Fail before any work on what would fail after it: a missing or non-media source (probe is
    # cheap and local), then an unreachable or read-only store; only then read every byte to hash.
    info = probe_task(source)
    storage_preflight_task(store, prefix)
    sha = hash_task(source)

    report = qc_task(source, sha, settings.qc, info)
    errors = [c for c in report["checks"] if not c["passed"] and c["severity"] == "error"]
    if errors:
        where = quarantine_task(source, store, title, report)
        raise QCFailed(source, [f"{c['name']}: {c['message']}" for c in errors], report, where)

    shot_list = shots.ShotList.from_dict(shots_task(source, sha, settings.shots, info))
    rungs = encode.ladder_for_source(info.video, settings.encode.ladder)
    keyframes = encode.keyframe_frames([s.start_frame for s in shot_list.shots], info.video.frames,
                                       info.video.fps, settings.encode.segment_s)
    logger.info("fixed ladder: %s; %d keyframes planned", ", ".join(r.name for r in rungs), len(keyframes))

    work = settings.storage.work_dir.resolve() / sha[:16]
    encode_digest = config_digest(encode.result_digest_parts(settings.encode), keyframes)
    encode_dir = work / f"encode-{encode_digest}"
    # audio first: it is short, and would otherwise wait behind every rung in the bounded pool
    audio = encode_audio_task.submit(source, info, settings.encode, encode_dir) if info.audio else None
    video = encode_rung_task.map(source, rungs, unmapped(keyframes), unmapped(info),
                                 unmapped(settings.encode), unmapped(encode_dir))
    renditions = [f.result() for f in video] + ([audio.result()] if audio is not None else [])

    # Each package goes to a folder named by what made it, so republishing a title never rewrites
    # files a reader is using and never leaves stale segments in a listed package; title.json,
    # written last, says which folder is current.
    version = "v-" + config_digest(sha, encode_digest, settings.package, settings.encode.segment_s)[:12]
    package_dir = Path(tempfile.mkdtemp(prefix="package-", dir=work))  # private to this run
    try:
        pkg = package_task(renditions, package_dir, settings.encode.segment_s, settings)
        publish_task(pkg.root, store, f"{prefix}/{version}")
    finally:
        shutil.rmtree(package_dir, ignore_errors=True)
    qc_url = put_json_task(store, f"{prefix}/{version}/qc.json", report)
    put_json_task(store, f"{prefix}/{version}/shots.json", shot_list.to_dict())

    record = title_record(title, source, sha, info, report, shot_list, renditions, pkg, store,
                          f"{prefix}/{version}", qc_url, started)
    record_url = title_record_task(store, prefix, record)
    return IngestResult(title_id=title, record_url=record_url, record=record)


def title_record(title: str, source: Path, sha: str, info: probe.MediaInfo, report: dict[str, Any],
                 shot_list: shots.ShotList, renditions: list[Rendition], pkg: Package, store: Storage,
                 prefix: str, qc_url: str, started: dt.datetime) -> dict[str, Any]:
    """The title record: what was published, where (``prefix``: the package's folder), and from what."""
    def entry(r: Rendition) -> dict[str, Any]:
        folder = f"{r.kind}/{r.name}"
        out = {"kind": r.kind, "name": r.name, "codec": r.codec, "kbps": r.kbps, "target_kbps": r.target_kbps,
               "duration_s": round(r.duration_s, 3), "playlist": f"{folder}.m3u8",
               "init": f"{folder}/init.mp4"}
        if r.kind == "video":
            out.update(width=r.width, height=r.height, frames=r.frames)
        else:
            out.update(channels=r.channels, sample_rate=r.sample_rate, language=r.language)
        return out

    return {
        "title_id": title,
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
        "ladder": {"mode": "fixed", "reference": "Apple HLS authoring spec, H.264 16:9"},
        "renditions": [entry(r) for r in sorted(renditions, key=lambda r: (r.kind != "video", r.target_kbps))],
        "manifests": {"dash": store.url_for(f"{prefix}/{pkg.dash_manifest}"),
                      "hls": store.url_for(f"{prefix}/{pkg.hls_master}")},
        "encryption": None,
    }


def ingest_flow(settings: Settings) -> Any:
    """The ingest flow with its rung fan-out bounded to the configured number of encodes at once."""
    return ingest.with_options(task_runner=_encode_runner(settings.encode.parallel_encodes))


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
                    storage_url: str | None = None, sidecar: str | None = None) -> IngestResult:
    """``run_ingest`` for a dropped object: fetch it (and its sidecar), and quarantine it if unreadable.

    A person at the CLI gets one line for a file that is not media; a drop has nobody watching,
    so it goes to ``quarantine/<title>/`` with a report saying why, like a QC failure. The dropped
    object itself is only read, never moved or deleted.
    """
    local = _local_drop(source, settings.storage)
    sidecar_path = _local_drop(sidecar, settings.storage) if sidecar else None
    title = title_id or (sidecar_title_id(sidecar_path) if sidecar_path else None) or default_title_id(local)
    try:
        return run_ingest(local, settings, title_id=title, storage_url=storage_url)
    except InvalidMedia as exc:
        if not is_drop(source):
            raise
        store = open_storage(storage_url or settings.storage.output, settings.storage)
        report = {"verdict": "error", "source": source, "checks": [
            {"name": "probe", "passed": False, "severity": "error", "message": str(exc)}]}
        where = quarantine_task(local, store, check_title_id(title), report)
        raise InvalidMedia(local, f"{exc.problem} (dropped as {source}); quarantined at {where}", exc.fix) from exc
