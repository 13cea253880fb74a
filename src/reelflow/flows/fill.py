"""The off-peak fill: a Prefect flow that pins on each edge what playback/placement.py chooses for it.

One run: read the plays (QoE records) of the last ``fill.history_s`` from the service database, the
published titles from the output store, and the edges from the service's heartbeat registry
(``GET /api/edges``, edges that serve players and are up) with their budgets and what they hold
(``GET /admin/contents``); forecast, place (``fill.fill_share`` of each budget), then per edge:
unpin what the plan no longer holds (``DELETE /admin/objects/...``) and push what it lacks
(``PUT /admin/objects/...`` with Content-Length and X-Content-SHA256), newest release first, at
most ``fill.rate_bytes_per_s`` per edge and only until ``fill.window_s`` has passed; what is left
goes in the next run. Edges are filled in parallel (one task each).

A play record carries no country or ISP yet (the QoE body has none), so demand counts for every
edge alike unless the record's ``extra`` names them; availability by country still holds (a
title's ``countries``), as does the release lead (a title.json ``release_at``, ISO 8601, and an
optional ``expected_plays``).

The deployment (``fill_deployment``) runs the flow on ``fill.cron``; ``reelflow fill --dry-run``
prints the plan without pushing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
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
from reelflow.playback.placement import Edge, Placed, Play, Title, forecast, place
from reelflow.playback.segments import MEDIA_SUFFIXES

TITLES = "titles"
RUNG = "all"                               # a package is placed whole (every rung)


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
class Package:
    """A published title's files: store keys (``titles/<id>/<version>/<path>``) and sizes."""

    title: Title
    files: tuple[tuple[str, int], ...]


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


def _size(storage: Storage, key: str) -> int:
    local = storage.local_path(key)
    return local.stat().st_size if local is not None else len(storage.get_bytes(key))


def read_packages(storage: Storage) -> dict[str, Package]:
    """Every published title's package (its media files), by title key (its folder under titles/)."""
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
        files = tuple((k, _size(storage, k)) for k in sorted(storage.list(prefix))
                      if Path(k).suffix.lower() in MEDIA_SUFFIXES)     # manifests come from the service
        countries = record.get("countries")
        expected = record.get("expected_plays")
        title = Title(parts[1], {RUNG: sum(s for _, s in files)},
                      None if countries is None else frozenset(str(c).upper() for c in countries),
                      release_at=_epoch(record.get("release_at")),
                      expected_plays=float(expected) if isinstance(expected, int | float) else None)
        packages[parts[1]] = Package(title, files)
    return packages


def read_plays(database_url: str, since: dt.datetime) -> list[Play]:
    """The QoE records since ``since`` as plays (country and ISP when the record's extra has them)."""
    db = open_database(database_url)
    with db() as session:
        rows = session.execute(select(QoeReport.title_id, QoeReport.received_at, QoeReport.extra)
                               .where(QoeReport.received_at >= since)).all()
    plays = []
    for title_id, received_at, extra in rows:
        at = received_at if received_at.tzinfo else received_at.replace(tzinfo=dt.UTC)
        extra = extra or {}
        country, isp = extra.get("country"), extra.get("isp")
        plays.append(Play(str(title_id), at.timestamp(), str(country).upper() if country else None,
                          str(isp) if isp else None))
    return plays


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


def plan(settings: Settings, packages: Mapping[str, Package], plays: list[Play], edges: list[EdgeTarget],
         now: float) -> dict[str, list[Placed]]:
    """What each edge should hold pinned (playback/placement.py over the fill settings)."""
    config = settings.fill
    titles = [p.title for p in packages.values()]
    fc = forecast(plays, titles, now=now, window_s=config.forecast_window_s, half_life_s=config.half_life_s,
                  new_release_plays=config.new_release_plays, new_release_s=config.new_release_s)
    specs = [Edge(e.name, int(e.budget_bytes * config.fill_share), e.country, e.isp) for e in edges]
    return place(titles, specs, fc, now=now, lead_s=config.lead_s, min_plays=config.min_plays)


def push_edge(http: httpx.Client, storage: Storage, edge: EdgeTarget, placed: list[Placed],
              packages: Mapping[str, Package], token: str, rate_bytes_per_s: float, deadline: float,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
              ) -> EdgeResult:
    """Unpin what ``placed`` drops, then push what the edge lacks, in order, paced and until ``deadline``."""
    auth = {"authorization": f"Bearer {token}"}
    result = EdgeResult(edge.name, [p.key for p in placed])
    wanted = {key for p in placed for key, _ in packages[p.key].files}
    for key in sorted(set(edge.pinned) - wanted):
        response = http.delete(f"{edge.base_url}/admin/objects/{key}", headers=auth)
        if response.status_code not in (204, 404):
            response.raise_for_status()
        result.unpinned_files += 1
    started, sent = clock(), 0
    for p in placed:
        for key, size in packages[p.key].files:
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
    plays = read_plays(settings.database.url, since)
    with httpx.Client(timeout=30) as http:
        edges = read_edges(http, settings.fill.service_url, _token(settings))
    return edges, plan(settings, packages, plays, edges, now), packages


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
