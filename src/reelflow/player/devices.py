"""Device presets of ``reelflow play --device``: what each sends as /api/play's device and network.

The CLI player can only use W3C ClearKey, so every preset declares ``clearkey``; its security
level says what the device would be with its real CDM. The service treats ClearKey as software
DRM whatever the level, so every preset gets software-tier keys (720p and below by default);
that is the service's policy, not the preset's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reelflow.errors import ConfigError
from reelflow.player.abr import DeviceCaps

__all__ = ["PRESETS", "DevicePreset", "preset"]


@dataclass(frozen=True)
class DevicePreset:
    name: str
    type: str
    security_level: str
    max_height: int
    codecs: tuple[str, ...]
    connection: str
    hdr: bool = False
    isp: str | None = None

    def device_body(self) -> dict[str, Any]:
        return {"type": self.type, "drm_system": "clearkey", "security_level": self.security_level,
                "codecs": list(self.codecs), "max_height": self.max_height, "hdr": self.hdr}

    def network_body(self, country: str) -> dict[str, Any]:
        return {"country": country, "isp": self.isp, "connection": self.connection}

    def caps(self, max_kbps: float | None = None) -> DeviceCaps:
        return DeviceCaps(max_height=self.max_height, max_kbps=max_kbps, cellular=self.connection == "cellular")


_ALL_CODECS = ("avc1", "hvc1", "vp09", "av01", "mp4a", "ec-3")

PRESETS: dict[str, DevicePreset] = {p.name: p for p in (
    DevicePreset("desktop-l1", "desktop", "L1", 2160, _ALL_CODECS, "ethernet"),
    DevicePreset("tv-l1", "tv", "L1", 2160, _ALL_CODECS, "ethernet", hdr=True),
    DevicePreset("mobile-cellular", "mobile", "L1", 720, ("avc1", "hvc1", "mp4a"), "cellular"),
    DevicePreset("browser-l3", "browser", "L3", 1080, ("avc1", "vp09", "av01", "mp4a"), "wifi"),
)}


def preset(name: str) -> DevicePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown device preset {name!r}; known: {', '.join(PRESETS)}") from None
