"""The player's HTTP side (httpx): /api/play, manifests, ClearKey licenses, segments, QoE and progress.

Every failure leaves this module as a reelflow error with one readable line: the service's own
JSON refusals (``{"error", "message"}``) as the matching ``PlaybackError`` (401 Unauthorized,
403 Forbidden, 404 NotFound, ...), and a service or CDN that cannot be reached, or that answers
with something unusable, as ``PlayerError``. URLs in messages lose their query (the play token).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from reelflow.errors import (
    CdnUnavailable,
    Forbidden,
    NotConfigured,
    NotFound,
    PlaybackError,
    PlayerError,
    Unauthorized,
    UnavailableInCountry,
    Unplayable,
)
from reelflow.player.devices import DevicePreset
from reelflow.player.manifest import Presentation, Track, display_url, parse_dash, parse_hls, with_sidx
from reelflow.player.shaping import Shaper

log = logging.getLogger(__name__)

__all__ = ["Fetched", "PlayInfo", "PlayerHttp", "b64url", "unb64url"]

_BY_STATUS: dict[int, type[PlaybackError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 422: Unplayable, 451: UnavailableInCountry,
    501: NotConfigured,
}
CHUNK_BYTES = 16 * 1024      # shaping granularity: 0.65 s at 0.2 Mbit/s, 1 ms at 100 Mbit/s


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PlayInfo:
    """The service's answer to POST /api/play, as far as the player uses it."""

    session_id: str
    title_id: str
    token: str
    manifests: dict[str, str]
    license_url: str | None
    license_system: str | None
    scheme: str | None
    resume_s: float
    max_height: int | None
    max_kbps: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlayInfo:
        try:
            lic = data.get("license") or {}
            limits = data.get("limits") or {}
            return cls(
                session_id=str(data["session_id"]), title_id=str(data["title_id"]), token=str(data["token"]),
                manifests=dict(data["manifests"]), license_url=lic.get("url"), license_system=lic.get("system"),
                scheme=lic.get("scheme"), resume_s=float((data.get("resume") or {}).get("position_s") or 0.0),
                max_height=limits.get("max_height"), max_kbps=limits.get("max_kbps"))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlayerError(f"the play response lacks {exc}; is this a reelflow playback service?") from exc


@dataclass(frozen=True)
class Fetched:
    """A downloaded body and how long it took (request to last byte)."""

    data: bytes
    seconds: float


class PlayerHttp:
    """One player's HTTP client: the service calls, and shaped segment downloads."""

    def __init__(self, *, shaper: Shaper | None = None, timeout_s: float = 20.0,
                 on_chunk: Callable[[int], None] | None = None) -> None:
        self.http = httpx.Client(timeout=timeout_s, follow_redirects=True)
        self.shaper = shaper
        self.on_chunk = on_chunk
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PlayerHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise PlayerError(f"{what}: {display_url(url)} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise PlayerError(f"{what}: cannot reach {display_url(url)} ({exc.__class__.__name__}: {exc})") from exc
        _check(answer, what)
        return answer

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    # --- the service --------------------------------------------------------------------------

    def play(self, service: str, title_id: str, profile: str, device: DevicePreset, country: str) -> PlayInfo:
        body = {"title_id": title_id, "profile_id": profile, "device": device.device_body(),
                "network": device.network_body(country)}
        answer = self._send("POST", f"{service.rstrip('/')}/api/play", f"play {title_id}", json=body)
        info = PlayInfo.from_json(_json(answer, "the play response"))
        self.token = info.token
        return info

    def text(self, url: str, what: str) -> str:
        return self._send("GET", url, what).text

    def presentation(self, url: str, fmt: str) -> Presentation:
        """Fetch and parse a DASH MPD or HLS master (with its media playlists)."""
        if fmt == "hls":
            text = self.text(url, "HLS master playlist")
            return parse_hls(text, url, lambda u: self.text(u, "HLS media playlist"))
        return parse_dash(self.text(url, "DASH manifest"), url)

    def resolve_index(self, presentation: Presentation, track: Track) -> Track:
        """Segments of a SegmentBase track, from its sidx (a range request)."""
        if track.index_range is None:
            return track
        first, last = track.index_range
        url = presentation.segment_url(track, track.init_path)
        index = self._send("GET", url, "segment index", headers={"range": f"bytes={first}-{last}"}).content
        return with_sidx(track, index)

    def license(self, url: str, kids: list[bytes]) -> dict[bytes, bytes]:
        """W3C ClearKey: key id -> key for the ids this device was granted (a subset of ``kids``)."""
        body = {"kids": [b64url(k) for k in kids], "type": "temporary"}
        data = _json(self._send("POST", url, "license", json=body), "the license")
        keys: dict[bytes, bytes] = {}
        try:
            for key in data["keys"]:
                keys[unb64url(key["kid"])] = unb64url(key["k"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PlayerError(f"the license is not a ClearKey JSON Web Key set ({exc})") from exc
        return keys

    def hls_key(self, url: str) -> bytes:
        key = self._send("GET", url, "HLS key").content
        if len(key) != 16:
            raise PlayerError(f"the HLS key at {display_url(url)} is {len(key)} bytes, not 16")
        return key

    def post_qoe(self, service: str, report: dict[str, Any]) -> None:
        self._send("POST", f"{service.rstrip('/')}/api/qoe", "QoE report", json=report, headers=self._auth())

    def put_progress(self, service: str, profile: str, title_id: str, position_s: float,
                     duration_s: float | None) -> None:
        body: dict[str, Any] = {"profile_id": profile, "title_id": title_id, "position_s": round(position_s, 3)}
        if duration_s:
            body["duration_s"] = duration_s
        self._send("PUT", f"{service.rstrip('/')}/api/progress", "progress", json=body, headers=self._auth())

    # --- media ---------------------------------------------------------------------------------

    def download(self, url: str, what: str, byte_range: tuple[int, int] | None = None) -> Fetched:
        """GET a segment, paced by the shaper when there is one; the time includes the round trip.

        A CDN that cannot deliver (refused or reset connection, 5xx, timeout, a body shorter than
        its Content-Length) raises ``CdnUnavailable``, so the caller can try the next CDN."""
        headers = {"range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        started = time.monotonic()
        if self.shaper is not None:
            self.shaper.begin()
        parts: list[bytes] = []
        try:
            with self.http.stream("GET", url, headers=headers) as answer:
                if answer.status_code >= 500:
                    raise CdnUnavailable(f"{what}: {display_url(url)} answered {answer.status_code}",
                                         f"http {answer.status_code}")
                if answer.status_code >= 400:
                    answer.read()
                    _check(answer, what)
                for chunk in answer.iter_bytes(CHUNK_BYTES):
                    parts.append(chunk)
                    if self.shaper is not None:
                        self.shaper.delivered(len(chunk))
                    if self.on_chunk is not None:
                        self.on_chunk(len(chunk))
        except httpx.TimeoutException as exc:
            raise CdnUnavailable(f"{what}: {display_url(url)} did not answer in time", "timeout") from exc
        except httpx.HTTPError as exc:
            raise CdnUnavailable(f"{what}: cannot download {display_url(url)} ({exc.__class__.__name__}: {exc})",
                                 exc.__class__.__name__) from exc
        data = b"".join(parts)
        if not data:
            raise PlayerError(f"{what}: {display_url(url)} is empty")
        return Fetched(data, max(time.monotonic() - started, 1e-6))


def _json(answer: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlayerError(f"{what} from {display_url(str(answer.request.url))} is not JSON") from exc
    if not isinstance(data, dict):
        raise PlayerError(f"{what} from {display_url(str(answer.request.url))} is not a JSON object")
    return data


def _check(answer: httpx.Response, what: str) -> None:
    """Raise the reelflow error for a refusal: the service's message when it sent one."""
    if answer.status_code < 400:
        return
    url = display_url(str(answer.request.url))
    message = ""
    try:
        body = answer.json()
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("detail") or "")
    except ValueError:
        pass
    text = f"{what} refused ({answer.status_code}): {message or answer.reason_phrase} [{url}]"
    error = _BY_STATUS.get(answer.status_code)
    if error is not None:
        raise error(text)
    raise PlayerError(text)
