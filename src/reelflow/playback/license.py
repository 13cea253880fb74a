"""Licenses: the W3C ClearKey license server, HLS key delivery, and plug-in license proxies.

Policy (one function, ``allowed_tiers``): a device gets the keys of the tiers its security class
and height cap allow. Software DRM (Widevine L3, PlayReady SL2000, ClearKey) gets AUDIO, SD and
HD720 at most; hardware DRM (Widevine L1, PlayReady SL3000) gets every tier up to its cap.

ClearKey request and response (W3C Encrypted Media Extensions, "Clear Key"):

    POST /api/license?token=...   {"kids": ["<base64url kid>", ...], "type": "temporary"}
    200  {"keys": [{"kty": "oct", "k": "<base64url key>", "kid": "<base64url kid>"}], "type": "temporary"}

Requested key ids the device may have are answered, the others left out; when none of them may
be given the answer is 403 (a tier the device may not have) or 404 (no such key id in the title).

License duration: ClearKey's JSON has no field for it, and browsers refuse JWK sets they do not
expect, so the duration travels in headers: ``X-License-Duration`` (seconds) and
``Cache-Control: private, max-age=<seconds>``, both exposed to web players by CORS. A player
(the CLI player, a web app) must drop the keys after that time and ask again. Configured as
``service.license_duration_h``, 24-48 h.

Commercial DRM (Widevine, PlayReady, FairPlay) is a plug-in point: ``LicenseProxy`` below, put in
the registry with ``register_proxy("widevine", proxy)``. The service hands such a proxy the
player's raw license request and the verified claims (title, device class, tiers allowed), and
returns whatever the proxy answers. With no proxy for a system the license URL answers 501.
"""

from __future__ import annotations

import base64
import importlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from reelflow.errors import Forbidden, NotConfigured, NotFound, PlaybackError
from reelflow.infra.settings import Settings
from reelflow.playback.tokens import Claims

log = logging.getLogger(__name__)

# Same values as reelflow.packaging.keys.Tier (drm branch); the key store's tiers are these.
Tier = Literal["AUDIO", "SD", "HD720", "HD", "UHD"]
TIERS: tuple[Tier, ...] = ("AUDIO", "SD", "HD720", "HD", "UHD")
# The first line count each tier is needed for: a device capped below it never needs its key.
_TIER_FLOOR: dict[str, int] = {"AUDIO": 0, "SD": 0, "HD720": 577, "HD": 721, "UHD": 1081}
SOFTWARE_TIERS = frozenset({"AUDIO", "SD", "HD720"})

LICENSE_SYSTEMS = ("clearkey", "widevine", "playready", "fairplay")


class ContentKeyLike(Protocol):
    """What the license server reads from a content key (``reelflow.packaging.keys.ContentKey``)."""

    @property
    def tier(self) -> Tier: ...
    @property
    def key_id(self) -> bytes: ...
    @property
    def key(self) -> bytes: ...


class KeySource(Protocol):
    """Where keys come from: ``reelflow.packaging.keys.KeyStore`` satisfies this."""

    def get_title_keys(self, title_id: str) -> Mapping[Tier, ContentKeyLike]: ...


@dataclass(frozen=True)
class MemoryKey:
    tier: Tier
    key_id: bytes
    key: bytes


class MemoryKeySource:
    """Keys held in memory: for tests and benchmarks, and a template for other sources."""

    def __init__(self, titles: Mapping[str, Mapping[Tier, ContentKeyLike]] | None = None) -> None:
        self.titles: dict[str, dict[Tier, ContentKeyLike]] = {t: dict(k) for t, k in (titles or {}).items()}

    def get_title_keys(self, title_id: str) -> Mapping[Tier, ContentKeyLike]:
        return self.titles.get(title_id, {})

    def put_title_keys(self, title_id: str, keys: Mapping[Tier, ContentKeyLike]) -> None:
        self.titles[title_id] = dict(keys)


def load_key_source(settings: Settings) -> KeySource | None:
    """The content key store (``reelflow.packaging.keys.KeyStore``), or None where it is not installed.

    Imported by name: the key store comes with encrypted packaging, and a service without it
    still plays titles packaged in the clear.
    """
    try:
        module = importlib.import_module("reelflow.packaging.keys")
    except ModuleNotFoundError:
        log.warning("reelflow.packaging.keys is not available: encrypted titles cannot be licensed")
        return None
    store: KeySource = module.KeyStore.from_settings(settings)
    return store


def allowed_tiers(claims: Claims) -> frozenset[str]:
    """The key tiers this token's device may have."""
    tiers = SOFTWARE_TIERS if claims.security == "software" else frozenset(TIERS)
    return frozenset(t for t in tiers if _TIER_FLOOR[t] <= claims.max_height)


class KeyCache:
    """Title keys kept ``ttl_s`` seconds: the key store decrypts on every read, licenses are hot."""

    def __init__(self, source: KeySource | None, ttl_s: float = 60.0) -> None:
        self.source = source
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, dict[bytes, ContentKeyLike]]] = {}
        self._lock = threading.Lock()

    def cached(self, title_id: str) -> dict[bytes, ContentKeyLike] | None:
        item = self._items.get(title_id)
        return item[1] if item is not None and time.monotonic() - item[0] < self.ttl_s else None

    def by_kid(self, title_id: str) -> dict[bytes, ContentKeyLike]:
        """Key id -> key for the title (blocking on a miss: call from a worker thread)."""
        keys = self.cached(title_id)
        if keys is not None:
            return keys
        if self.source is None:
            raise NotConfigured("this service has no content key store (reelflow.packaging.keys), so it "
                                "cannot license encrypted titles")
        try:
            found = self.source.get_title_keys(title_id)
        except LookupError:
            found = {}
        keys = {k.key_id: k for k in found.values()}
        with self._lock:
            self._items[title_id] = (time.monotonic(), keys)
        return keys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_kids(body: Any) -> tuple[list[bytes], str]:
    """Key ids and session type of a ClearKey license request; PlaybackError (400) when malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("kids"), list) or not body["kids"]:
        raise PlaybackError('a ClearKey license request is JSON {"kids": ["<base64url key id>", ...], '
                            '"type": "temporary"}')
    if len(body["kids"]) > 64:
        raise PlaybackError("a license request may name at most 64 key ids")
    kids = []
    for kid in body["kids"]:
        try:
            raw = _unb64url(kid) if isinstance(kid, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 16:
            raise PlaybackError(f"key id {kid!r} is not 16 bytes in base64url")
        kids.append(raw)
    session_type = body.get("type", "temporary")
    if session_type not in ("temporary", "persistent-license"):
        raise PlaybackError(f"license type {session_type!r} is not 'temporary' or 'persistent-license'")
    return kids, str(session_type)


def select_keys(claims: Claims, keys: Mapping[bytes, ContentKeyLike], kids: list[bytes]) -> list[ContentKeyLike]:
    """The requested keys this device may have; Forbidden/NotFound when there are none."""
    tiers = allowed_tiers(claims)
    known = [keys[k] for k in kids if k in keys]
    granted = [key for key in known if key.tier in tiers]
    if granted:
        denied = [k.tier for k in known if k.tier not in tiers]
        if denied:
            log.info("session %s: %s keys withheld from a %s device", claims.session, "/".join(denied),
                     claims.security)
        return granted
    if known:
        raise Forbidden(f"this device ({claims.security} DRM, up to {claims.max_height} lines) may not have "
                        f"{'/'.join(sorted({k.tier for k in known}))} keys; it may have "
                        f"{', '.join(t for t in TIERS if t in tiers)}")
    raise NotFound(f"none of the requested key ids belongs to title {claims.title}")


def clearkey_response(granted: list[ContentKeyLike], session_type: str) -> dict[str, Any]:
    return {"keys": [{"kty": "oct", "k": b64url(k.key), "kid": b64url(k.key_id)} for k in granted],
            "type": session_type}


def key_for_delivery(claims: Claims, keys: Mapping[bytes, ContentKeyLike], kid_hex: str) -> bytes:
    """HLS key delivery: the 16 key bytes of ``kid_hex``, under the license's policy."""
    try:
        kid = bytes.fromhex(kid_hex)
    except ValueError as exc:
        raise NotFound(f"{kid_hex!r} is not a key id") from exc
    return select_keys(claims, keys, [kid])[0].key


# --- plug-in point: commercial DRM license proxies ------------------------------------------------

@dataclass(frozen=True)
class ProxyResponse:
    status: int
    body: bytes
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] | None = None


class LicenseProxy(Protocol):
    """Forwards a Widevine/PlayReady/FairPlay license request to a licensing service.

    ``allowed`` is the set of key tiers the device may have; the proxy must pass it on (as the
    commercial service's policy/entitlement message) so that service enforces the same rule. It
    runs in a worker thread and may block.
    """

    def acquire(self, claims: Claims, allowed: frozenset[str], request: bytes, content_type: str,
                key_ids: Mapping[str, str]) -> ProxyResponse: ...


_PROXIES: dict[str, LicenseProxy] = {}


def register_proxy(system: str, proxy: LicenseProxy | None) -> None:
    """Install (or with None, remove) the license proxy of ``system``: widevine, playready or fairplay."""
    if system not in LICENSE_SYSTEMS or system == "clearkey":
        raise ValueError(f"license proxies are for {', '.join(LICENSE_SYSTEMS[1:])}, not {system!r}")
    if proxy is None:
        _PROXIES.pop(system, None)
    else:
        _PROXIES[system] = proxy


def proxy_for(system: str) -> LicenseProxy:
    proxy = _PROXIES.get(system)
    if proxy is None:
        raise NotConfigured(f"no {system} license proxy is configured on this service; register one with "
                            f"reelflow.playback.license.register_proxy({system!r}, proxy), or play with ClearKey")
    return proxy
