"""The off-peak fill: a Prefect flow that pins on each edge what playback/placement.py chooses for it.

One run: read the plays (QoE records) of the last ``fill.history_s`` from the service database, the
published titles from the output store, and the edges from the service's heartbeat registry
(``GET /api/edges``, edges that serve players and are up) with their budgets and what they hold
(``GET /admin/contents``); forecast, place (``fill.fill_share`` of each budget), then per edge:
unpin what the plan no longer holds (``DELETE /admin/objects/...``) and push what it lacks
(``PUT /admin/objects/...`` with Content-Length and X-Content-SHA256), newest release first, at
most ``fill.rate_bytes_per_s`` per edge and only until ``fill.window_s`` has passed; what is left
goes in the next run. Edges are filled in parallel (one task each).

What is pushed is what placement.py chose, file by file: of a title, the rungs the edge's players
play and the segments of its first parts (a segment belongs to the part its start falls in; init
segments, audio and subtitles go with the first part). A QoE record names the player's country and
ISP (from its play token), so demand is counted per (country, ISP); the rungs an ISP's players use
are the renditions its records played (by bitrate), every rung while it has no records; the reach
of each part is the share of plays whose ``played_s`` got there. Availability by country holds (a
title's ``countries``), as does the release lead (a title.json ``release_at``, ISO 8601, and an
optional ``expected_plays``, both from the studio's sidecar).

The deployment (``fill_deployment``) runs the flow on ``fill.cron``; ``reelflow fill --dry-run``
prints the plan without pushing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from reelflow.errors import StageError
from reelflow.infra.database import open_database
from reelflow.infra.settings import Settings, load_settings
from reelflow.infra.storage import Storage, open_storage
from reelflow.playback.models import QoeReport
from reelflow.playback.placement import (
    PARTS,
    REPLICATE_SHARE,
    Edge,
    GroupKey,
    Placed,
    Play,
    Title,
    forecast,
    place,
    reach_curve,
)
from reelflow.playback.segments import MEDIA_SUFFIXES

TITLES = "titles"
SHARED = ""                                # placement's rung of what every play fetches (audio, subtitles)
_SEGMENT = re.compile(r"^(\d+)\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class EdgeTarget:
    """An edge to fill, as the service and its admin API describe it."""

    name: str
    base_url: str
    budget_bytes: int
    country: str | None
    isp: str | None
    pinned: Mapping[str, str]              # key -> sha256 of what it holds pinned
    held: frozenset[str]                   # every key it holds


@dataclass(frozen=True)
class PackageFile:
    """One media file of a package: its store key, size, placement rung and the part it belongs to."""

    key: str                               # titles/<id>/<version>/<path>
    size: int
    rung: str                              # a video rendition's height ("720"), or SHARED
    part: int


@dataclass(frozen=True)
class Package:
    """A published title's media files, and the title as placement sees it."""

    title: Title
    files: tuple[PackageFile, ...]
    duration_s: float | None = None
    kbps_rungs: tuple[tuple[float, str], ...] = ()   # (kbps, rung) of each video rendition

    def wanted(self, placed: Placed) -> list[PackageFile]:
        """The files ``placed`` holds: its rungs (and the shared tracks), its first parts."""
        return [f for f in self.files if (f.rung == SHARED or f.rung in placed.rungs) and f.part < placed.parts
                * PARTS // max(placed.of_parts, 1)]


@dataclass(frozen=True)
class QoeHistory:
    """What the fill reads of the QoE records: plays, how far each got, the rungs each group played."""

    plays: list[Play]
    watched: list[float]                   # share of its title each play watched
    rungs: dict[GroupKey, frozenset[str]]  # (country, isp) -> rungs its players played


@dataclass
class EdgeResult:
    edge: str
    planned: list[str] = field(default_factory=list)       # title keys, fill order
    pushed_files: int = 0
    pushed_bytes: int = 0
    skipped_files: int = 0
    unpinned_files: int = 0
    left_files: int = 0                                     # not pushed: the window ended

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _epoch(value: Any) -> float:
    if not value:
        return 0.0
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise StageError(f"release_at {value!r} is not an ISO 8601 time") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def _files(keys: Mapping[str, int], prefix: str, rung_of: Mapping[str, str]) -> tuple[PackageFile, ...]:
    """The package's media files with their rung and part: a numbered segment of n in its folder is in
    part ``(number - 1) * PARTS // n``; init segments and unnumbered files are in part 0. A video file's
    rung is its rendition's height (its folder, or its own name, is the rendition's name)."""
    media = {k: size for k, size in keys.items() if Path(k).suffix.lower() in MEDIA_SUFFIXES}
    by_folder: dict[str, list[str]] = {}
    for key in media:
        by_folder.setdefault(key.rpartition("/")[0], []).append(key)
    files = []
    for folder, members in by_folder.items():
        rel = folder[len(prefix):].strip("/")
        kind, _, track = rel.partition("/")
        rung = rung_of.get(track, SHARED) if kind == "video" else SHARED
        numbered = {k: int(m.group(1)) for k in members if (m := _SEGMENT.match(k.rpartition("/")[2]))}
        count = max(numbered.values(), default=0)
        for key in members:
            number = numbered.get(key)
            part = 0 if number is None or count == 0 else min((number - 1) * PARTS // count, PARTS - 1)
            if kind == "video" and not track:            # a single-file rung (video/<name>.mp4): all in part 0
                rung = rung_of.get(Path(key).stem, SHARED)
            files.append(PackageFile(key, media[key], rung, part))
    return tuple(sorted(files, key=lambda f: (f.part, f.key)))


def read_packages(storage: Storage) -> dict[str, Package]:
    """Every published title's package (its media files by rung and part), by title key (its folder under titles/)."""
    packages: dict[str, Package] = {}
    for key in storage.list(f"{TITLES}/"):
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "title.json":
            continue
        record = json.loads(storage.get_bytes(key))
        if record.get("status", "published") != "published":
            continue
        version = str(record["package"]).rstrip("/").rsplit("/", 1)[-1]
        prefix = f"{TITLES}/{parts[1]}/{version}/"
        videos = [r for r in record.get("renditions", ()) if r.get("kind") == "video" and r.get("height")]
        rung_of = {str(r["name"]): str(r["height"]) for r in videos}
        files = _files(storage.sizes(prefix), prefix, rung_of)    # manifests come from the service
        rung_bytes: dict[str, int] = {}
        split: dict[str, list[int]] = {}
        for f in files:
            rung_bytes[f.rung] = rung_bytes.get(f.rung, 0) + f.size
            split.setdefault(f.rung, [0] * PARTS)[f.part] += f.size
        countries = record.get("countries")
        expected = record.get("expected_plays")
        duration = ((record.get("source") or {}).get("probe") or {}).get("duration_s")
        title = Title(parts[1], rung_bytes,
                      None if countries is None else frozenset(str(c).upper() for c in countries),
                      release_at=_epoch(record.get("release_at")),
                      expected_plays=float(expected) if isinstance(expected, int | float) else None,
                      part_bytes={r: tuple(b) for r, b in split.items()})
        packages[parts[1]] = Package(title, files, float(duration) if duration else None,
                                     tuple(sorted((float(r["kbps"]), str(r["height"])) for r in videos
                                                  if r.get("kbps"))))
    return packages


def _played_rungs(bitrates: list[float], kbps_rungs: tuple[tuple[float, str], ...]) -> set[str]:
    """The renditions a play played: each bitrate it reported matched to the nearest rendition's."""
    if not kbps_rungs:
        return set()
    return {min(kbps_rungs, key=lambda kr: abs(kr[0] - b))[1] for b in bitrates}


def read_plays(database_url: str, since: dt.datetime, packages: Mapping[str, Package]) -> QoeHistory:
    """The QoE records since ``since``: plays by country and ISP, how far each got, the rungs each group played."""
    db = open_database(database_url)
    with db() as session:
        rows = session.execute(select(QoeReport.title_id, QoeReport.received_at, QoeReport.extra,
                                      QoeReport.played_s, QoeReport.bitrates_kbps)
                               .where(QoeReport.received_at >= since)).all()
    plays, watched = [], []
    rungs: dict[GroupKey, set[str]] = {}
    for title_id, received_at, extra, played_s, bitrates in rows:
        at = received_at if received_at.tzinfo else received_at.replace(tzinfo=dt.UTC)
        extra = extra or {}
        country = str(extra["country"]).upper() if extra.get("country") else None
        isp = str(extra["isp"]) if extra.get("isp") else None
        plays.append(Play(str(title_id), at.timestamp(), country, isp))
        package = packages.get(str(title_id))
        if package is None:
            continue
        if played_s is not None and package.duration_s:
            watched.append(min(float(played_s) / package.duration_s, 1.0))
        rungs.setdefault((country or "", isp), set()).update(_played_rungs(list(bitrates or ()), package.kbps_rungs))
    return QoeHistory(plays, watched, {g: frozenset(r) for g, r in rungs.items() if r})


def read_edges(http: httpx.Client, service_url: str, token: str) -> list[EdgeTarget]:
    """The up edges that serve players, from the service's registry, with their budgets and contents."""
    listing = http.get(f"{service_url.rstrip('/')}/api/edges")
    listing.raise_for_status()
    edges = []
    for entry in listing.json()["edges"]:
        if not entry.get("up") or not entry.get("serves_players", True):
            continue
        contents = http.get(f"{entry['base_url']}/admin/contents", headers={"authorization": f"Bearer {token}"})
        contents.raise_for_status()
        body = contents.json()
        objects = body["objects"]
        edges.append(EdgeTarget(
            name=entry["name"], base_url=entry["base_url"], budget_bytes=int(body["budget_bytes"]),
            country=(entry.get("region") or "").upper() or None, isp=entry.get("isp"),
            pinned={o["key"]: o["sha256"] for o in objects if o["pinned"]},
            held=frozenset(o["key"] for o in objects)))
    return edges


def plan(settings: Settings, packages: Mapping[str, Package], history: QoeHistory, edges: list[EdgeTarget],
         now: float) -> dict[str, list[Placed]]:
    """What each edge should hold pinned (playback/placement.py over the fill settings): parts of titles,
    by the reach the QoE records show, the rungs the edge's ISP plays, an ISP's edges pooled."""
    config = settings.fill
    titles = [p.title for p in packages.values()]
    fc = forecast(history.plays, titles, now=now, window_s=config.forecast_window_s,
                  half_life_s=config.half_life_s, new_release_plays=config.new_release_plays,
                  new_release_s=config.new_release_s)
    specs = [Edge(e.name, int(e.budget_bytes * config.fill_share), e.country, e.isp,
                  history.rungs.get((e.country or "", e.isp))) for e in edges]
    return place(titles, specs, fc, now=now, lead_s=config.lead_s, min_plays=config.min_plays, parts=PARTS,
                 reach=reach_curve(history.watched, PARTS), replicate_share=REPLICATE_SHARE)


def push_edge(http: httpx.Client, storage: Storage, edge: EdgeTarget, placed: list[Placed],
              packages: Mapping[str, Package], token: str, rate_bytes_per_s: float, deadline: float,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
              ) -> EdgeResult:
    """Unpin what ``placed`` drops, then push what the edge lacks, in order, paced and until ``deadline``."""
    auth = {"authorization": f"Bearer {token}"}
    result = EdgeResult(edge.name, [p.key for p in placed])
    wanted = {f.key for p in placed for f in packages[p.key].wanted(p)}
    for key in sorted(set(edge.pinned) - wanted):
        response = http.delete(f"{edge.base_url}/admin/objects/{key}", headers=auth)
        if response.status_code not in (204, 404):
            response.raise_for_status()
        result.unpinned_files += 1
    started, sent = clock(), 0
    for p in placed:
        for file in packages[p.key].wanted(p):
            key, size = file.key, file.size
            if key in edge.pinned:
                result.skipped_files += 1
                continue
            if clock() >= deadline:
                result.left_files += 1
                continue
            data = storage.get_bytes(key)
            response = http.put(f"{edge.base_url}/admin/objects/{key}", content=data,
                                headers={**auth, "x-content-sha256": hashlib.sha256(data).hexdigest()})
            response.raise_for_status()
            result.pushed_files += 1
            result.pushed_bytes += len(data)
            sent += size
            ahead = sent / rate_bytes_per_s - (clock() - started)
            if ahead > 0:
                sleep(ahead)
    return result


def _token(settings: Settings) -> str:
    secret = settings.service.edge_token or settings.edge.token
    if secret is None:
        raise StageError("the fill needs the edges' admin token: set service.edge_token (or edge.token)")
    return secret.get_secret_value()


@task(name="fill edge", cache_policy=NO_CACHE)
def fill_edge(settings: Settings, edge: EdgeTarget, placed: list[Placed], packages: Mapping[str, Package],
              deadline_in_s: float) -> dict[str, Any]:
    storage = open_storage(settings.storage.output, settings.storage)
    with httpx.Client(timeout=60) as http:
        result = push_edge(http, storage, edge, placed, packages, _token(settings),
                           settings.fill.rate_bytes_per_s, time.monotonic() + deadline_in_s)
    return result.to_dict()


def compute_plan(settings: Settings, now: float | None = None
                 ) -> tuple[list[EdgeTarget], dict[str, list[Placed]], dict[str, Package]]:
    """The edges, their plans and the packages, from the service, its database and the output store."""
    now = time.time() if now is None else now
    storage = open_storage(settings.storage.output, settings.storage)
    packages = read_packages(storage)
    since = dt.datetime.fromtimestamp(now - settings.fill.history_s, tz=dt.UTC)
    history = read_plays(settings.database.url, since, packages)
    with httpx.Client(timeout=30) as http:
        edges = read_edges(http, settings.fill.service_url, _token(settings))
    return edges, plan(settings, packages, history, edges, now), packages


@flow(name="fill", log_prints=False)
def fill(config_file: str | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Pin each edge's placement: plan from plays and the catalogue, push within the window, rate-limited."""
    logger = get_run_logger()
    settings = load_settings(Path(config_file) if config_file else None)
    edges, plans, packages = compute_plan(settings)
    logger.info("fill plan: %s", {e: [p.key for p in ps] for e, ps in plans.items()})
    if dry_run:
        return [EdgeResult(e.name, [p.key for p in plans[e.name]]).to_dict() for e in edges]
    futures = [fill_edge.submit(settings, edge, plans[edge.name], packages, settings.fill.window_s)
               for edge in edges]
    return [f.result() for f in futures]


def fill_deployment(settings: Settings, config_file: str | None = None) -> Any:
    """The fill flow as a RunnerDeployment on ``fill.cron`` (typed Any: Prefect's generics)."""
    from prefect.types.entrypoint import EntrypointType

    deployment: Any = fill.to_deployment(
        name=settings.orchestration.deployment, cron=settings.fill.cron,
        parameters={"config_file": config_file} if config_file else {},
        description="Off-peak fill: pin each edge's placement by popularity (playback/placement.py).",
        tags=["reelflow"], entrypoint_type=EntrypointType.MODULE_PATH)
    return deployment
