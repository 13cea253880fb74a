"""The playback service's HTTP routes (FastAPI): play, manifests, license, keys, segments, QoE, progress.

    POST /api/play                              -> manifest URLs, license, token, CDNs, resume position
    GET  /api/titles/{id}/manifest.mpd?token=   -> the device's DASH MPD
    GET  /api/titles/{id}/hls/{path}?token=     -> the device's HLS master (its packaged name) or media playlist
    POST /api/license?token=                    -> W3C ClearKey license
    POST /api/license/{system}?token=           -> widevine/playready/fairplay through a registered proxy (else 501)
    GET  /api/keys/{kid hex}?token=             -> HLS key delivery: 16 raw key bytes
    GET  /titles/{id}/{version}/{path}          -> package files (ranges, ETag); .../keys/{kid}?token= as above
    POST /api/qoe?token=                        -> store a QoE report for the session
    PUT  /api/progress?token=                   -> resume position for (profile, title)
    GET  /api/progress/{profile_id}             -> continue watching, most recent first
    GET  /play/{id}                             -> a page that plays the title with Shaka Player
    GET  /console, /console/titles/{id}         -> the media engineers' console (playback/console.py)
    POST /api/edges/heartbeat                   <- a caching edge's heartbeat (steering.EdgeRegistry)
    GET  /api/edges                             -> the edges as their heartbeats describe them, up or down
    GET  /healthz

Tokens go in ``?token=`` or ``Authorization: Bearer``. Errors are JSON ``{"error": code, "message": text}``
with the status of the ``PlaybackError`` behind them. ``create_edge_app`` is the segment routes alone,
for ``reelflow edge``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp

from reelflow.errors import (
    Forbidden,
    NotFound,
    PlaybackError,
    ReelflowError,
    StorageError,
    Unauthorized,
    UnavailableInCountry,
    Unplayable,
)
from reelflow.infra.database import open_database
from reelflow.infra.settings import ServiceConfig, Settings
from reelflow.infra.storage import Storage, open_storage
from reelflow.playback import console, manifests, models, page
from reelflow.playback import license as lic
from reelflow.playback.catalog import Catalog, Title
from reelflow.playback.cors import with_cors
from reelflow.playback.schemas import Device, EdgeHeartbeat, PlayRequest, ProgressUpdate, QoeReportBody
from reelflow.playback.segments import SegmentServer, check_path, key_request
from reelflow.playback.steering import ORIGIN, CdnChoice, EdgeRegistry, EdgeReport, RankableEdge, rank_edges
from reelflow.playback.tokens import Claims, SecurityClass, TokenSigner, load_secret, new_session_id

log = logging.getLogger(__name__)

HARDWARE_LEVELS = frozenset({"L1", "SL3000", "hardware"})
_NO_STORE = {"cache-control": "no-store"}
_MANIFEST_CACHE = "private, max-age=60"


def security_class(device: Device) -> SecurityClass:
    """Hardware only for a hardware-backed CDM that says so; ClearKey and anything unknown is software."""
    if device.drm_system in ("clearkey", "none") or device.security_level not in HARDWARE_LEVELS:
        return "software"
    return "hardware"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json",
                    headers=headers)


def _error(exc: PlaybackError) -> Response:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["www-authenticate"] = 'Bearer realm="reelflow"'
    return _json({"error": exc.code, "message": str(exc)}, exc.status, headers)


def _token(request: Request) -> str | None:
    token = request.query_params.get("token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


@dataclass
class Service:
    """Everything the routes share; built once per app."""

    settings: Settings
    storage: Storage
    catalog: Catalog
    signer: TokenSigner
    keys: lic.KeyCache
    db: sessionmaker[Session]
    cache: manifests.ManifestCache
    segments: SegmentServer
    resume: models.ResumeCache
    edges: EdgeRegistry

    @property
    def config(self) -> ServiceConfig:
        return self.settings.service

    def url(self) -> str:
        return self.config.base_url

    async def title(self, title_id: str) -> Title:
        title = self.catalog.cached(title_id)
        return title if title is not None else await run_in_threadpool(self.catalog.get, title_id)

    def claims(self, request: Request, title_id: str | None = None, *, leeway_s: float = 0) -> Claims:
        now = time.time() - leeway_s
        claims = self.signer.verify(_token(request), now=now)
        if title_id is not None and claims.title != title_id:
            raise Forbidden(f"this play token is for title {claims.title!r}, not {title_id!r}")
        return claims

    def edge_candidates(self) -> list[RankableEdge]:
        """The edges heartbeats describe; the static list of the settings until any edge reports."""
        return list(self.edges.candidates()) if self.edges.reporting else list(self.config.edges)

    def bases(self, claims: Claims) -> list[CdnChoice]:
        edges = {e.name: e for e in self.edge_candidates()}
        chosen = [CdnChoice(n, edges[n].base_url) for n in claims.edges if n in edges and edges[n].healthy]
        return [*chosen, CdnChoice(ORIGIN, self.url())]

    def dash(self, title: Title, limits: manifests.Limits, bases: list[CdnChoice]) -> str:
        pairs = tuple((b.name, b.base_url) for b in bases)
        key = ("dash", title.title_id, title.version, limits, pairs)
        text: str = self.cache.get(key, lambda: manifests.filter_dash(title, limits, pairs))
        return text


def limits_of(claims: Claims) -> manifests.Limits:
    return manifests.Limits(codecs=frozenset(claims.codecs), max_height=claims.max_height,
                            max_kbps=claims.max_kbps, hdr=claims.hdr, audio_channels=claims.audio_channels)


def build_service(settings: Settings, *, storage: Storage | None = None, keys: lic.KeySource | None = None,
                  db: sessionmaker[Session] | None = None, load_keys: bool = True) -> Service:
    config = settings.service
    store = storage or open_storage(settings.storage.output, settings.storage)
    source = keys if keys is not None else (lic.load_key_source(settings) if load_keys else None)
    database = db or open_database(settings.database.url)
    return Service(
        settings=settings, storage=store, catalog=Catalog(store, config.catalog_ttl_s),
        signer=TokenSigner(load_secret(config)), keys=lic.KeyCache(source, config.key_cache_ttl_s),
        db=database, cache=manifests.ManifestCache(), segments=SegmentServer(store),
        resume=models.ResumeCache(database, config.resume_cache_ttl_s),
        edges=EdgeRegistry(config.edge_missed_beats),
    )


def _add_error_handlers(app: FastAPI) -> None:
    async def playback_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PlaybackError)
        return _error(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _json({"error": "invalid_request", "message": _validation_message(exc),
                      "detail": json.loads(json.dumps(exc.errors(), default=str))}, 422, _NO_STORE)

    async def reelflow_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _json({"error": "server_error", "message": str(exc)}, 500, _NO_STORE)

    app.add_exception_handler(PlaybackError, playback_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ReelflowError, reelflow_error)


def _segment_routes(app: FastAPI, service_of: Callable[[], Service | SegmentServer]) -> None:
    """``/titles/{id}/{version}/{path}`` (files, and HLS key URIs when the service has keys)."""

    async def package_file(title_id: str, version: str, path: str, request: Request) -> Response:
        owner = service_of()
        kid = key_request(path)
        if kid is not None:
            if not isinstance(owner, Service):
                raise NotFound("key delivery is at the service, not at an edge")
            return await _deliver_key(owner, request, kid, title_id)
        server = owner.segments if isinstance(owner, Service) else owner
        ref = check_path(title_id, version, path)
        headers = {k: v for k, v in request.headers.items() if k in ("range", "if-range", "if-none-match")}
        return await run_in_threadpool(server.respond, ref, headers, head=request.method == "HEAD")

    app.add_api_route("/titles/{title_id}/{version}/{path:path}", package_file, methods=["GET", "HEAD"],
                      include_in_schema=True, summary="A file of a title's package (segments, init, subtitles)")


async def _deliver_key(service: Service, request: Request, kid_hex: str, title_id: str | None = None) -> Response:
    claims = service.claims(request, title_id)
    keys = service.keys.cached(claims.title)
    if keys is None:
        keys = await run_in_threadpool(service.keys.by_kid, claims.title)
    key = lic.key_for_delivery(claims, keys, kid_hex.lower())
    return Response(key, media_type="application/octet-stream", headers={"cache-control": "private, no-store"})


def create_app(settings: Settings, *, storage: Storage | None = None, keys: lic.KeySource | None = None,
               db: sessionmaker[Session] | None = None, load_keys: bool = True) -> ASGIApp:
    """The playback service as an ASGI app (wrapped in CORS); ``app.state.service`` holds its parts."""
    service = build_service(settings, storage=storage, keys=keys, db=db, load_keys=load_keys)
    app = FastAPI(title="reelflow playback service", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.service = service
    _add_error_handlers(app)
    config = service.config
    license_s = int(config.license_duration_h * 3600)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.post("/api/play", summary="Start a playback session")
    async def play(body: PlayRequest) -> Response:
        title = await service.title(body.title_id)
        allowed = title.countries if title.countries is not None else config.default_countries
        country = body.network.country
        if allowed is not None and country not in allowed:
            raise UnavailableInCountry(
                f"title {title.title_id!r} is not licensed in {country}; it may be played in "
                f"{', '.join(allowed) if allowed else 'no country at present'}")
        encrypted = title.encryption is not None
        if encrypted and body.device.drm_system == "none":
            raise Unplayable(f"title {title.title_id!r} is encrypted; the device must declare a drm_system "
                             "(clearkey, widevine, playready or fairplay)")
        security = security_class(body.device)
        max_height = body.device.max_height
        if encrypted and security == "software":
            max_height = min(max_height, config.software_drm_max_height)
        ranked = rank_edges(service.edge_candidates(), title_id=title.title_id, isp=body.network.isp, country=country,
                            origin_url=service.url())
        claims = Claims(
            session=new_session_id(), title=title.title_id, profile=body.profile_id, security=security,
            max_height=max_height, codecs=tuple(sorted({manifests.codec_family(c) for c in body.device.codecs})),
            max_kbps=config.cellular_max_kbps if body.network.connection == "cellular" else 0,
            hdr=body.device.hdr, edges=tuple(c.name for c in ranked if c.name != ORIGIN)[:4],
            expires=int(time.time()) + config.token_ttl_s, audio_channels=body.device.audio_channels or 0,
            country=country, isp=body.network.isp or "",
        )
        service.dash(title, limits_of(claims), ranked)  # Unplayable now rather than at the manifest
        token = service.signer.issue(claims)
        hit, resume = service.resume.cached(body.profile_id, title.title_id)
        if not hit:
            resume = await run_in_threadpool(service.resume.get, body.profile_id, title.title_id)
        base = service.url()
        system = body.device.drm_system
        license_info = None
        if encrypted:
            path = "/api/license" if system == "clearkey" else f"/api/license/{system}"
            license_info = {"system": system, "url": f"{base}{path}?token={token}", "duration_s": license_s,
                            "scheme": title.encryption.scheme if title.encryption else None}
        return _json({
            "session_id": claims.session,
            "title_id": title.title_id,
            "token": token,
            "expires_at": dt.datetime.fromtimestamp(claims.expires, dt.UTC).isoformat(timespec="seconds"),
            "manifests": {"dash": f"{base}/api/titles/{title.title_id}/manifest.mpd?token={token}",
                          "hls": f"{base}/api/titles/{title.title_id}/hls/{title.hls_name}?token={token}"},
            "license": license_info,
            "cdn": [{"name": c.name, "base_url": c.base_url, "rank": i + 1} for i, c in enumerate(ranked)],
            "resume": {"position_s": resume.position_s if resume else 0.0,
                       "updated_at": resume.to_dict()["updated_at"] if resume else None},
            "limits": {"security": security, "max_height": max_height, "max_kbps": claims.max_kbps or None,
                       "codecs": list(claims.codecs)},
            # the one video ladder (codec, range) the manifests give this device (manifests.best_ladder)
            "ladder": manifests.chosen_ladder(title, limits_of(claims)),
        }, headers=_NO_STORE)

    @app.get("/api/titles/{title_id}/manifest.mpd", summary="The device's DASH manifest")
    async def dash_manifest(title_id: str, request: Request) -> Response:
        claims = service.claims(request, title_id)
        title = await service.title(title_id)
        text = service.dash(title, limits_of(claims), service.bases(claims))
        return Response(text, media_type="application/dash+xml", headers={"cache-control": _MANIFEST_CACHE})

    @app.get("/api/titles/{title_id}/hls/{path:path}", summary="The device's HLS master or media playlist")
    async def hls_playlist(title_id: str, path: str, request: Request) -> Response:
        claims = service.claims(request, title_id)
        title = await service.title(title_id)
        token = _token(request) or ""
        limits = limits_of(claims)
        base = service.url()
        if path == title.hls_name:
            key: tuple[Any, ...] = ("hls", title_id, title.version, limits)
            text = service.cache.get(key, lambda: manifests.filter_hls_master(title, limits, base))
        else:
            allowed = service.cache.get(("hls-allowed", title_id, title.version, limits),
                                        lambda: manifests.allowed_media_playlists(title, limits))
            if path not in allowed:
                if path in title.media_playlists:
                    raise Forbidden(f"playlist {path!r} is not for this device")
                raise NotFound(f"{title_id} has no playlist {path!r}")
            cdn = service.bases(claims)[0].base_url
            text = service.cache.get(("hls-media", title_id, title.version, path, cdn),
                                     lambda: manifests.rewrite_hls_media(title, path, cdn, base))
        return Response(text.replace(manifests.TOKEN_PLACEHOLDER, token),
                        media_type="application/vnd.apple.mpegurl", headers={"cache-control": "private, no-store"})

    @app.post("/api/license", summary="W3C ClearKey license")
    async def clearkey_license(request: Request) -> Response:
        claims = service.claims(request)
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise PlaybackError("the license request is not JSON") from exc
        kids, session_type = lic.parse_kids(body)
        keys = service.keys.cached(claims.title)
        if keys is None:
            keys = await run_in_threadpool(service.keys.by_kid, claims.title)
        granted = lic.select_keys(claims, keys, kids)
        return _json(lic.clearkey_response(granted, session_type), headers={
            "cache-control": f"private, max-age={license_s}", "x-license-duration": str(license_s)})

    @app.post("/api/license/{system}", summary="Widevine / PlayReady / FairPlay license through a proxy")
    async def proxied_license(system: str, request: Request) -> Response:
        if system not in lic.LICENSE_SYSTEMS[1:]:
            raise NotFound(f"no license system {system!r}; use clearkey (/api/license), widevine, playready "
                           "or fairplay")
        claims = service.claims(request)
        proxy = lic.proxy_for(system)
        title = await service.title(claims.title)
        kids = dict(title.encryption.key_ids) if title.encryption else {}
        answer = await run_in_threadpool(proxy.acquire, claims, lic.allowed_tiers(claims), await request.body(),
                                         request.headers.get("content-type", ""), kids)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type,
                        headers=dict(answer.headers or {}))

    @app.get("/api/keys/{kid_hex}", summary="HLS key delivery (16 raw bytes)")
    async def hls_key(kid_hex: str, request: Request) -> Response:
        return await _deliver_key(service, request, kid_hex)

    @app.post("/api/qoe", status_code=201, summary="A player's QoE report for its session")
    async def qoe(body: QoeReportBody, request: Request) -> Response:
        claims = service.claims(request, leeway_s=license_s)
        row = await run_in_threadpool(lambda: models.save_qoe(
            service.db, session_id=claims.session, title_id=claims.title, profile_id=claims.profile,
            startup_ms=body.startup_ms, stall_count=len(body.stalls),
            stall_ms=sum(s.duration_ms for s in body.stalls), switch_count=len(body.switches),
            bitrates_kbps=list(body.bitrates_kbps), played_s=body.played_s,
            extra={**body.extra(), **claims.where()}))
        return _json({"id": row, "session_id": claims.session}, 201)

    @app.put("/api/progress", summary="Save a resume position")
    async def put_progress(body: ProgressUpdate, request: Request) -> Response:
        claims = service.claims(request, body.title_id, leeway_s=license_s)
        if claims.profile != body.profile_id:
            raise Forbidden(f"this play token is for profile {claims.profile!r}, not {body.profile_id!r}")
        saved = await run_in_threadpool(service.resume.save, body.profile_id, body.title_id, body.position_s,
                                        body.duration_s)
        return _json(saved.to_dict())

    @app.get("/api/progress/{profile_id}", summary="Continue watching: most recent first")
    async def get_progress(profile_id: str, limit: int = 50) -> Response:
        rows = await run_in_threadpool(models.continue_watching, service.db, profile_id, max(1, min(limit, 200)))
        return _json({"profile_id": profile_id, "titles": [r.to_dict() for r in rows]}, headers=_NO_STORE)

    @app.post("/api/edges/heartbeat", status_code=204, summary="A caching edge's heartbeat")
    async def edge_heartbeat(body: EdgeHeartbeat, request: Request) -> Response:
        secret = config.edge_token.get_secret_value() if config.edge_token else None
        if secret and not hmac.compare_digest((_token(request) or "").encode(), secret.encode()):
            raise Unauthorized("edge heartbeats need Authorization: Bearer <service.edge_token>")
        service.edges.beat(EdgeReport(
            name=body.name, base_url=body.base_url.rstrip("/"), isp=body.isp, region=body.region,
            healthy=body.healthy, load=body.load, bytes_per_s=body.bytes_per_s, connections=body.connections,
            free_bytes=body.free_bytes, used_bytes=body.used_bytes, heartbeat_s=body.heartbeat_s,
            serves_players=body.serves_players, holdings=body.titles, placed=frozenset(body.placed)))
        return Response(status_code=204)

    @app.get("/api/edges", summary="The edges as their heartbeats describe them")
    async def edge_status() -> Response:
        return _json({"reporting": service.edges.reporting, "edges": service.edges.status()}, headers=_NO_STORE)

    @app.get("/play/{title_id}", response_class=HTMLResponse, summary="A page that plays the title (Shaka Player)")
    async def play_page(title_id: str) -> Response:
        shaka = config.shaka_dir / page.SHAKA_FILE
        return HTMLResponse(page.render(title_id, shaka_available=shaka.is_file(), shaka_dir=config.shaka_dir))

    @app.get("/shaka/{name}", include_in_schema=False)
    async def shaka_file(name: str) -> Response:
        if name not in page.SHAKA_SERVED:
            raise NotFound(f"/shaka/{name} is not served")
        path = Path(config.shaka_dir) / name
        if not path.is_file():
            raise NotFound(f"Shaka Player is not installed ({path} is missing): run `npm ci` in the project folder")
        return FileResponse(path, headers={"cache-control": "public, max-age=3600"})

    _console_routes(app, service.storage)
    _segment_routes(app, lambda: service)
    return with_cors(app, config)


def _console_routes(app: FastAPI, storage: Storage) -> None:
    """The media engineers' pages (playback/console.py): read-only views of what was ingested."""

    @app.get("/console", response_class=HTMLResponse, summary="Titles, quarantined sources and ingest runs")
    async def console_index() -> Response:
        def build() -> str:
            return console.render_index(console.list_titles(storage), console.list_quarantined(storage),
                                        console.recent_runs(console.prefect_api_url()))

        return HTMLResponse(await run_in_threadpool(build), headers=_NO_STORE)

    @app.get("/console/titles/{folder}", response_class=HTMLResponse, summary="One title in the console")
    async def console_title(folder: str) -> Response:
        def build() -> str:
            record = console.load_record(storage, folder)
            prefix = console.package_prefix(record, folder)
            qc = console.read_json(storage, f"{prefix}/qc.json")
            return console.render_title(folder, record, qc, storage.exists(f"{prefix}/ladder.png"))

        return HTMLResponse(await run_in_threadpool(build), headers=_NO_STORE)

    @app.get("/console/titles/{folder}/ladder.png", include_in_schema=False)
    async def console_plot(folder: str) -> Response:
        def read() -> bytes:
            record = console.load_record(storage, folder)
            try:
                return storage.get_bytes(f"{console.package_prefix(record, folder)}/ladder.png")
            except StorageError as exc:
                raise NotFound(f"title {folder!r} has no ladder plot (fixed ladder?)") from exc

        return Response(await run_in_threadpool(read), media_type="image/png", headers=_NO_STORE)

    @app.get("/api/console/titles", summary="Published titles and quarantined sources, summarised")
    async def console_titles() -> Response:
        def build() -> dict[str, Any]:
            return {"titles": console.list_titles(storage), "quarantined": console.list_quarantined(storage)}

        return _json(await run_in_threadpool(build), headers=_NO_STORE)

    @app.get("/api/console/runs", summary="Recent ingest runs from the Prefect API")
    async def console_runs() -> Response:
        return _json(await run_in_threadpool(console.recent_runs, console.prefect_api_url()), headers=_NO_STORE)


def create_edge_app(settings: Settings, *, storage: Storage | None = None, name: str = "edge") -> ASGIApp:
    """A CDN edge: the package files of every title in the storage, nothing else (``reelflow edge``)."""
    store = storage or open_storage(settings.storage.output, settings.storage)
    server = SegmentServer(store)
    app = FastAPI(title=f"reelflow edge {name}", docs_url=None, redoc_url=None, openapi_url=None)
    _add_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok", "edge": name})

    _segment_routes(app, lambda: server)
    return with_cors(app, settings.service)
