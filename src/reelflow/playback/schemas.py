"""Request bodies of the playback API: typed, bounded, and refusing what they do not know."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_TITLE = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"   # a title id or its key (packaging/titles.py)

DrmSystem = Literal["clearkey", "widevine", "playready", "fairplay", "none"]
SecurityLevel = Literal["L1", "L2", "L3", "SL3000", "SL2000", "SL150", "hardware", "software"]
Connection = Literal["wifi", "ethernet", "cellular", "unknown"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Device(_Body):
    type: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="browser, tv, mobile, cli, ...")
    drm_system: DrmSystem
    security_level: SecurityLevel | None = Field(None, description="Widevine L1-L3, PlayReady SL3000/SL2000/SL150, "
                                                 "or hardware/software; None counts as software.")
    codecs: tuple[str, ...] = Field(min_length=1, max_length=32, description="Codecs it decodes: avc1, hvc1, "
                                    "av01, vp09, mp4a, ec-3 (RFC 6381 strings also work).")
    max_height: int = Field(ge=144, le=4320)
    hdr: bool = False
    audio_channels: int | None = Field(None, ge=1, le=16, description="Most audio channels it plays (2: stereo "
                                       "only, 6: 5.1); None: any. Audio codecs go in ``codecs`` (mp4a, ec-3).")

    @field_validator("codecs")
    @classmethod
    def _codec_strings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for codec in value:
            if not re.match(r"^[A-Za-z0-9-]{2,8}(\.[A-Za-z0-9.]{1,32})?$", codec):
                raise ValueError(f"{codec!r} is not a codec name such as avc1 or avc1.64001f")
        return value


class Network(_Body):
    country: str = Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166 alpha-2, where the player is.")
    isp: str | None = Field(None, max_length=64)
    connection: Connection = "unknown"

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class PlayRequest(_Body):
    title_id: str = Field(pattern=_TITLE)
    profile_id: str = Field(pattern=_ID)
    device: Device
    network: Network


class ProgressUpdate(_Body):
    profile_id: str = Field(pattern=_ID)
    title_id: str = Field(pattern=_TITLE)
    position_s: float = Field(ge=0, le=7 * 86400)
    duration_s: float | None = Field(None, gt=0, le=7 * 86400)


class Stall(_Body):
    at_s: float = Field(ge=0)
    duration_ms: float = Field(ge=0)


class Switch(_Body):
    at_s: float = Field(ge=0)
    from_kbps: float = Field(ge=0)
    to_kbps: float = Field(ge=0)


class Failover(_Body):
    """The player left a CDN for the next ranked one (connection refused, 5xx, timeout, short body)."""

    at_s: float = Field(ge=0, description="Session time, seconds after the play request.")
    from_cdn: str = Field(alias="from", max_length=512)
    to_cdn: str = Field(alias="to", max_length=512)
    reason: str = Field(max_length=300)


class QoeReportBody(_Body):
    startup_ms: float = Field(ge=0, le=600_000, description="From play request to first frame.")
    stalls: tuple[Stall, ...] = Field((), max_length=10_000)
    switches: tuple[Switch, ...] = Field((), max_length=10_000)
    bitrates_kbps: tuple[float, ...] = Field((), max_length=100_000, description="Bitrate of each played segment.")
    played_s: float | None = Field(None, ge=0)
    failovers: tuple[Failover, ...] = Field((), max_length=1_000)

    def extra(self) -> dict[str, Any]:
        return {"stalls": [s.model_dump() for s in self.stalls], "switches": [s.model_dump() for s in self.switches],
                "failovers": [f.model_dump(by_alias=True) for f in self.failovers]}


class EdgeHeartbeat(_Body):
    """What a caching edge (playback/edge.py) tells the service every heartbeat_s."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    base_url: str = Field(pattern=r"^https?://[^\s?#]+$")
    isp: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=64)
    serves_players: bool = True
    heartbeat_s: float = Field(gt=0, le=300)
    healthy: bool = True
    load: float = Field(0.0, ge=0)
    bytes_per_s: float = Field(0.0, ge=0)
    connections: int = Field(0, ge=0)
    free_bytes: int = Field(0, ge=0)
    used_bytes: int = Field(0, ge=0)
    titles: dict[str, tuple[int, int]] = Field(default_factory=dict, max_length=100_000,
                                               description='"<title>/<version>": [objects, bytes] held.')
    placed: tuple[str, ...] = Field((), max_length=100_000, description='"<title>/<version>" of which the fill '
                                    "pinned objects here.")
