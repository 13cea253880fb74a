"""Play tokens: short-lived, HMAC-signed claims that bind a playback session to a title and a device.

A token is ``v1.<payload>.<signature>``: the payload is compact JSON in base64url, the signature
HMAC-SHA256 over ``v1.<payload>`` with the service's secret. Everything a later request needs
(the title, the device's security class and limits, the steered edges, where the player is) travels
inside it, so manifests, licenses, key delivery and QoE reports need no session lookup and no
database write per play.
Tokens are URL-safe: they go in query strings (``?token=``) as well as ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reelflow.errors import ConfigError, Unauthorized
from reelflow.infra.settings import ServiceConfig

log = logging.getLogger(__name__)

VERSION = "v1"
SecurityClass = Literal["hardware", "software"]


@dataclass(frozen=True)
class Claims:
    """What a play token asserts; limits are already resolved (device caps combined with policy)."""

    session: str
    title: str
    profile: str
    security: SecurityClass
    max_height: int
    codecs: tuple[str, ...]      # codec families the device declared: avc1, hvc1, mp4a, ...
    max_kbps: int                # 0: no bitrate cap
    hdr: bool
    edges: tuple[str, ...]       # ranked edge names; the origin is always implied last
    expires: int                 # Unix time, seconds
    audio_channels: int = 0      # most audio channels the device plays; 0: no cap
    country: str = ""            # where the player is (ISO 3166 alpha-2), as the play request said
    isp: str = ""                # the player's ISP, as the play request said; "": not given

    def to_payload(self) -> dict[str, Any]:
        return {"s": self.session, "t": self.title, "p": self.profile, "l": self.security[0],
                "h": self.max_height, "c": list(self.codecs), "b": self.max_kbps, "r": int(self.hdr),
                "e": list(self.edges), "x": self.expires, **({"a": self.audio_channels} if self.audio_channels else {}),
                **({"n": self.country} if self.country else {}), **({"i": self.isp} if self.isp else {})}

    def where(self) -> dict[str, Any]:
        """Where the player is and what its device shows, as a QoE record keeps it for the fill's forecast."""
        return {"country": self.country or None, "isp": self.isp or None, "max_height": self.max_height}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Claims:
        return cls(session=str(data["s"]), title=str(data["t"]), profile=str(data["p"]),
                   security="hardware" if data["l"] == "h" else "software", max_height=int(data["h"]),
                   codecs=tuple(str(c) for c in data["c"]), max_kbps=int(data["b"]), hdr=bool(data["r"]),
                   edges=tuple(str(e) for e in data["e"]), expires=int(data["x"]),
                   audio_channels=int(data.get("a", 0)), country=str(data.get("n", "")),
                   isp=str(data.get("i", "")))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks play tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ConfigError("the token secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, signed: bytes) -> str:
        return _b64(hmac.new(self._secret, signed, hashlib.sha256).digest())

    def issue(self, claims: Claims) -> str:
        payload = _b64(json.dumps(claims.to_payload(), separators=(",", ":")).encode())
        head = f"{VERSION}.{payload}"
        return f"{head}.{self._sign(head.encode())}"

    def verify(self, token: str | None, *, now: float | None = None) -> Claims:
        """The token's claims; Unauthorized when it is missing, malformed, forged or expired."""
        if not token:
            raise Unauthorized("no play token: pass the token from /api/play as ?token= or "
                               "'Authorization: Bearer <token>'")
        version, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if version != VERSION or not payload or not signature:
            raise Unauthorized("the play token is malformed")
        if not hmac.compare_digest(self._sign(f"{version}.{payload}".encode()), signature):
            raise Unauthorized("the play token's signature is not valid")
        try:
            claims = Claims.from_payload(json.loads(_unb64(payload)))
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthorized("the play token's payload is not valid") from exc
        if claims.expires <= (time.time() if now is None else now):
            raise Unauthorized("the play token has expired: ask /api/play for a new one")
        return claims


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


def load_secret(config: ServiceConfig) -> bytes:
    """The configured secret, or the one in ``token_secret_file``, created (0600) on first use."""
    if config.token_secret is not None:
        return config.token_secret.get_secret_value().encode()
    path = config.token_secret_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as exc:
        raise ConfigError(f"token secret file {path} cannot be created: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.info("made a new play-token secret in %s", path)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        if path.stat().st_mode & 0o077:
            log.warning("token secret file %s is readable by others; chmod 600 it", path)
        secret = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"token secret file {path} cannot be read: {exc.strerror or exc}") from exc
    if len(secret) < 32:
        raise ConfigError(f"token secret file {path} holds less than 32 characters; delete it to make a new one")
    return secret.encode()
