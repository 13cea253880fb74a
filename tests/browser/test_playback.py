"""Encrypted titles from the running service in real headless Chromium with Shaka Player (issue 4 item 4).

The web player is on another origin than the service (tests/browser/player.html on a static
server), so /api/play, manifests, segments, key delivery and the license endpoint all go through
CORS; the service's own /play page is played once too. Every play is ClearKey, which the service
treats as software DRM: capped at 720p and never given the HD key.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import httpx
import pytest

from browser_helpers import Playback, play_in_browser
from packaged_titles import CBCS_ID, ENC_ID, PackagedTitle
from playback_helpers import SECRET, play_body
from reelflow.playback.tokens import Claims, TokenSigner

pytestmark = pytest.mark.slow


def b64url(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def player_url(origin: str, service: str, title: str, **params: str) -> str:
    return f"{origin}/player.html?" + urlencode({"service": service, "title": title, **params})


def assert_played(result: Playback, *, at_least_s: float = 5.0) -> None:
    report = result.report()
    assert result["state"] in ("playing", "ended") and result["error"] is None, report
    assert result["current_time"] >= at_least_s and result["video_error"] is None, report
    assert result["frames"] > 0, report
    assert result["key_system"] == "org.w3.clearkey", report


def assert_no_hd(result: Playback, title: PackagedTitle) -> None:
    """No rung above 720p among Shaka's variants, and no license answer held the HD key."""
    report = result.report()
    heights = [v["height"] for v in result["variants"]]
    assert heights and max(heights) <= 720, report
    hd = b64url(title.keys["HD"].key_id)
    assert all(hd not in d["kids"] for d in result.drm("license")), report


@pytest.mark.parametrize("title_id", [ENC_ID, CBCS_ID], ids=["cenc", "cbcs"])
def test_dash_plays_five_seconds_from_another_origin(title_id: str, service_url: str, player_origin: str,
                                                     encrypted_title: PackagedTitle,
                                                     cbcs_title: PackagedTitle) -> None:
    title = encrypted_title if title_id == ENC_ID else cbcs_title
    result = play_in_browser(player_url(player_origin, service_url, title_id, format="dash"))
    assert_played(result)
    assert result["origin"] == player_origin != service_url
    licenses = result.drm("license")
    assert licenses and all(d["status"] == 200 for d in licenses), result.report()
    assert_no_hd(result, title)


@pytest.mark.parametrize("title_id", [ENC_ID, CBCS_ID], ids=["cenc", "cbcs"])
def test_hls_plays_five_seconds_from_another_origin(title_id: str, service_url: str, player_origin: str,
                                                    encrypted_title: PackagedTitle, cbcs_title: PackagedTitle) -> None:
    title = encrypted_title if title_id == ENC_ID else cbcs_title
    result = play_in_browser(player_url(player_origin, service_url, title_id, format="hls"))
    assert_played(result)
    # Shaka's HLS ClearKey path fetches the identity key line's URI (the service's key delivery)
    keys = result.drm("key")
    assert keys and all(d["status"] == 200 for d in keys), result.report()
    hd = title.keys["HD"].key_id.hex()
    assert all(not d["path"].endswith(hd) for d in keys), result.report()
    assert_no_hd(result, title)


def test_service_page_plays(service_url: str, encrypted_title: PackagedTitle) -> None:
    """The service's own /play page (same origin), as `make demo` prints it."""
    result = play_in_browser(f"{service_url}/play/{ENC_ID}")
    assert_played(result)
    assert result.drm("license") and result["play"]["limits"]["max_height"] == 720, result.report()


def test_l3_device_gets_no_hd_key_and_no_rung_above_720p(service_url: str, player_origin: str,
                                                         encrypted_title: PackagedTitle) -> None:
    result = play_in_browser(player_url(player_origin, service_url, ENC_ID, format="dash", level="L3"), until_s=1)
    assert_played(result, at_least_s=1)
    assert result["play"]["limits"]["max_height"] == 720, result.report()
    assert_no_hd(result, encrypted_title)
    # and the 1080p rung is not in the manifest this device was given
    mpd = httpx.get(result["play"]["license"]["url"].replace("/api/license", f"/api/titles/{ENC_ID}/manifest.mpd"))
    assert mpd.status_code == 200 and 'height="1080"' not in mpd.text and 'height="720"' in mpd.text


def _expired_token(service_url: str) -> str:
    answer = httpx.post(f"{service_url}/api/play", json=play_body(ENC_ID))
    signer = TokenSigner(SECRET.encode())
    claims = signer.verify(answer.json()["token"])
    return signer.issue(Claims(**{**claims.__dict__, "expires": int(time.time()) - 1}))


@pytest.mark.parametrize("kind", ["wrong", "expired"])
def test_wrong_or_expired_token_gets_no_key(kind: str, service_url: str, player_origin: str) -> None:
    token = "v1.forged.token" if kind == "wrong" else _expired_token(service_url)
    result = play_in_browser(player_url(player_origin, service_url, ENC_ID, format="dash", license_token=token),
                             until_s=1)
    report = result.report()
    assert result["state"] == "error", report
    assert result["shaka_error"] and result["shaka_error"]["category"] == 6, report  # shaka.util.Error.Category.DRM
    licenses = result.drm("license")
    assert licenses and all(d["status"] == 401 and not d["kids"] for d in licenses), report
    assert result["frames"] == 0, report
