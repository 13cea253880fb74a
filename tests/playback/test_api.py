"""The playback API against the ASGI app: play, manifests, license, keys, segments, CORS, progress, QoE."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import m3u8
import mpegdash.parser
import pytest
from fastapi.testclient import TestClient

from playback_helpers import SECRET, play_body, service_settings
from reelflow.errors import NotConfigured
from reelflow.packaging.keys import KeyStore
from reelflow.playback import license as lic
from reelflow.playback.api import create_app
from reelflow.playback.tokens import Claims, TokenSigner

ORIGIN = "http://127.0.0.1:8700"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def client(clear_title: Any, encrypted_title: Any, key_source: KeyStore, tmp_path: Path
           ) -> Iterator[TestClient]:
    settings = service_settings(encrypted_title.root, tmp_path, edge_url="http://127.0.0.1:8701",
                                cors_origins=("https://player.example.com",))
    with TestClient(create_app(settings, keys=key_source), base_url=ORIGIN) as test_client:
        yield test_client


def play(client: TestClient, title_id: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/api/play", json=play_body(title_id, **kwargs))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def path_of(url: str) -> str:
    assert url.startswith(ORIGIN)
    return url[len(ORIGIN):]


def video_heights(mpd_text: str) -> list[int]:
    mpd = mpegdash.parser.MPEGDASHParser.parse(mpd_text)
    heights = []
    for aset in mpd.periods[0].adaptation_sets:
        if aset.content_type == "video":
            heights += [int(r.height or aset.height) for r in aset.representations]
    return sorted(heights)


# --- /api/play -------------------------------------------------------------------------------------

def test_play_answers_manifests_license_token_cdns_and_resume(client: TestClient, encrypted_title: Any) -> None:
    data = play(client, encrypted_title.title_id, level="L1", drm="widevine")
    assert data["manifests"]["dash"].startswith(f"{ORIGIN}/api/titles/sintel-enc/manifest.mpd?token=")
    assert data["manifests"]["hls"].startswith(f"{ORIGIN}/api/titles/sintel-enc/hls/master.m3u8?token=")
    assert data["license"]["url"] == f"{ORIGIN}/api/license/widevine?token={data['token']}"
    assert 24 * 3600 <= data["license"]["duration_s"] <= 48 * 3600
    assert [c["name"] for c in data["cdn"]] == ["acme-edge", "origin"]
    assert data["resume"] == {"position_s": 0.0, "updated_at": None}
    assert data["limits"]["security"] == "hardware" and data["limits"]["max_height"] == 2160
    claims = TokenSigner(SECRET.encode()).verify(data["token"])
    assert (claims.title, claims.profile, claims.security, claims.session) == (
        "sintel-enc", "p1", "hardware", data["session_id"])


def test_unknown_title_is_404(client: TestClient) -> None:
    response = client.post("/api/play", json=play_body("no-such-title"))
    assert response.status_code == 404
    assert "no-such-title" in response.json()["message"]


def test_title_not_licensed_in_country_is_451(client: TestClient, encrypted_title: Any) -> None:
    response = client.post("/api/play", json=play_body(encrypted_title.title_id, country="fr"))
    assert response.status_code == 451
    assert response.json()["message"] == ("title 'sintel-enc' is not licensed in FR; it may be played in US, CA")
    assert client.post("/api/play", json=play_body("sintel-clear", country="FR")).status_code == 200


@pytest.mark.parametrize(("change", "where"), [
    (lambda b: b["device"].update(max_height="tall"), "device.max_height"),
    (lambda b: b["network"].update(country="France"), "network.country"),
    (lambda b: b.pop("profile_id"), "profile_id"),
    (lambda b: b["device"].update(drm_system="magic"), "device.drm_system"),
    (lambda b: b.update(extra=1), "extra"),
])
def test_bad_body_is_422_naming_the_field(client: TestClient, change: Any, where: str) -> None:
    body = play_body("sintel-clear")
    change(body)
    response = client.post("/api/play", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"invalid request: {where}:")


def test_encrypted_title_needs_a_drm_system(client: TestClient) -> None:
    response = client.post("/api/play", json=play_body("sintel-enc", drm="none"))
    assert response.status_code == 422 and "drm_system" in response.json()["message"]


def test_device_without_a_known_codec_is_422(client: TestClient) -> None:
    response = client.post("/api/play", json=play_body("sintel-clear", codecs=("av01", "mp4a")))
    assert response.status_code == 422 and "no video rendition" in response.json()["message"]


# --- manifests ------------------------------------------------------------------------------------

def test_l3_manifest_has_no_rung_above_720p(client: TestClient) -> None:
    data = play(client, "sintel-enc", level="L3", drm="widevine")
    mpd = client.get(path_of(data["manifests"]["dash"]))
    assert mpd.status_code == 200 and mpd.headers["content-type"].startswith("application/dash+xml")
    assert video_heights(mpd.text) == [234, 720]
    # one AdaptationSet per key tier: the HD set is gone, and nothing still points at it
    parsed = mpegdash.parser.MPEGDASHParser.parse(mpd.text)
    sets = parsed.periods[0].adaptation_sets
    assert all(a.representations for a in sets)
    ids = {str(a.id) for a in sets}
    for aset in sets:
        for prop in aset.supplemental_properties or []:
            if "adaptation-set-switching" in prop.scheme_id_uri:
                assert set(prop.value.split(",")) <= ids
    assert [b.base_url_value for b in parsed.base_urls] == [
        "http://127.0.0.1:8701/titles/sintel-enc/v-test0001/", f"{ORIGIN}/titles/sintel-enc/v-test0001/"]
    master = m3u8.loads(client.get(path_of(data["manifests"]["hls"])).text)
    assert sorted(p.stream_info.resolution[1] for p in master.playlists) == [234, 720]


def test_l1_manifest_has_every_rung_and_device_cap_applies(client: TestClient) -> None:
    data = play(client, "sintel-enc", level="L1", drm="widevine")
    assert video_heights(client.get(path_of(data["manifests"]["dash"])).text) == [234, 720, 1080]
    capped = play(client, "sintel-enc", level="L1", drm="widevine", max_height=720)
    assert video_heights(client.get(path_of(capped["manifests"]["dash"])).text) == [234, 720]


def test_cellular_caps_bitrate_but_keeps_a_rung(client: TestClient) -> None:
    data = play(client, "sintel-clear", connection="cellular")
    assert data["limits"]["max_kbps"] == 3000
    heights = video_heights(client.get(path_of(data["manifests"]["dash"])).text)
    assert 1080 not in heights and heights  # the 1080p rung's bitrate is over the cap


def test_manifest_needs_a_token_for_its_title(client: TestClient) -> None:
    data = play(client, "sintel-clear")
    assert client.get("/api/titles/sintel-clear/manifest.mpd").status_code == 401
    assert client.get(f"/api/titles/sintel-enc/manifest.mpd?token={data['token']}").status_code == 403
    bearer = client.get("/api/titles/sintel-clear/manifest.mpd", headers={"authorization": f"Bearer {data['token']}"})
    assert bearer.status_code == 200


def test_hls_media_playlist_points_at_cdn_and_key_url_with_token(client: TestClient, encrypted_title: Any) -> None:
    data = play(client, "sintel-enc", level="L3")
    master = m3u8.loads(client.get(path_of(data["manifests"]["hls"])).text)
    assert all(p.uri.startswith(f"{ORIGIN}/api/titles/sintel-enc/hls/video/") for p in master.playlists)
    media = client.get(path_of(master.playlists[0].uri))
    assert media.status_code == 200
    playlist = m3u8.loads(media.text)
    assert all(s.uri.startswith("http://127.0.0.1:8701/titles/sintel-enc/v-test0001/video/") for s in playlist.segments)
    kid = encrypted_title.keys["SD"].key_id.hex()
    identity = [k for k in playlist.keys if k and k.keyformat == "identity"]
    assert [k.uri for k in identity] == [f"{ORIGIN}/api/keys/{kid}?token={data['token']}"]
    # every system's key line survives the rewrite, not only the last one (m3u8 keeps one per segment)
    assert media.text.count("#EXT-X-KEY:") == 3 and 'KEYFORMAT="com.microsoft.playready"' in media.text
    # the 1080p playlist is not this device's
    hd = client.get(f"/api/titles/sintel-enc/hls/video/1080p_2500k.m3u8?token={data['token']}")
    assert hd.status_code == 403


# --- license and key delivery ----------------------------------------------------------------------

def license_request(client: TestClient, token: str, kids: list[bytes]) -> Any:
    return client.post(f"/api/license?token={token}", json={"kids": [b64(k) for k in kids], "type": "temporary"})


def test_l3_license_gets_no_hd_key(client: TestClient, encrypted_title: Any) -> None:
    keys = encrypted_title.keys
    token = play(client, "sintel-enc", level="L3")["token"]
    answer = license_request(client, token, [k.key_id for k in keys.values()])
    assert answer.status_code == 200
    got = {k["kid"]: k["k"] for k in answer.json()["keys"]}
    assert got == {b64(keys[t].key_id): b64(keys[t].key) for t in ("AUDIO", "SD", "HD720")}
    assert all(k["kty"] == "oct" for k in answer.json()["keys"]) and answer.json()["type"] == "temporary"
    assert answer.headers["x-license-duration"] == str(24 * 3600)
    only_hd = license_request(client, token, [keys["HD"].key_id])
    assert only_hd.status_code == 403 and "HD" in only_hd.json()["message"]


def test_l1_license_gets_hd_key(client: TestClient, encrypted_title: Any) -> None:
    keys = encrypted_title.keys
    token = play(client, "sintel-enc", level="L1", drm="widevine")["token"]
    answer = license_request(client, token, [keys["HD"].key_id])
    assert answer.json()["keys"] == [{"kty": "oct", "k": b64(keys["HD"].key), "kid": b64(keys["HD"].key_id)}]


def test_wrong_or_expired_token_gets_no_key(client: TestClient, encrypted_title: Any) -> None:
    kid = encrypted_title.keys["SD"].key_id
    token = play(client, "sintel-enc")["token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (forged, "", "v1.e30.x", TokenSigner(b"another-secret-of-32-bytes-length").issue(
            TokenSigner(SECRET.encode()).verify(token))):
        answer = license_request(client, bad, [kid])
        assert answer.status_code == 401, bad
        assert "keys" not in answer.json()
    claims = TokenSigner(SECRET.encode()).verify(token)
    expired = TokenSigner(SECRET.encode()).issue(Claims(**{**claims.__dict__, "expires": int(time.time()) - 1}))
    answer = license_request(client, expired, [kid])
    assert answer.status_code == 401 and "expired" in answer.json()["message"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_unknown_kid_is_404_and_malformed_request_400(client: TestClient) -> None:
    token = play(client, "sintel-enc")["token"]
    assert license_request(client, token, [b"\x01" * 16]).status_code == 404
    assert client.post(f"/api/license?token={token}", json={"kids": ["short"]}).status_code == 400
    assert client.post(f"/api/license?token={token}", content=b"not json").status_code == 400


def test_hls_key_delivery_follows_the_license_policy(client: TestClient, encrypted_title: Any) -> None:
    keys = encrypted_title.keys
    token = play(client, "sintel-enc", level="L3")["token"]
    sd = client.get(f"/api/keys/{keys['SD'].key_id.hex()}?token={token}")
    assert sd.status_code == 200 and sd.content == keys["SD"].key
    assert sd.headers["content-type"] == "application/octet-stream"
    assert client.get(f"/api/keys/{keys['HD'].key_id.hex()}?token={token}").status_code == 403
    assert client.get(f"/api/keys/{keys['SD'].key_id.hex()}").status_code == 401
    # the key URI as packaged (keys/<kid> at the package root)
    relative = client.get(f"/titles/sintel-enc/v-test0001/keys/{keys['HD720'].key_id.hex()}?token={token}")
    assert relative.status_code == 200 and relative.content == keys["HD720"].key


def test_commercial_drm_license_is_501_without_a_proxy(client: TestClient) -> None:
    token = play(client, "sintel-enc", level="L1", drm="widevine")["token"]
    answer = client.post(f"/api/license/widevine?token={token}", content=b"\x08\x04")
    assert answer.status_code == 501 and "register_proxy('widevine'" in answer.json()["message"]


def test_registered_proxy_gets_the_request_and_policy(client: TestClient) -> None:
    seen: dict[str, Any] = {}

    class Proxy:
        def acquire(self, claims: Claims, allowed: frozenset[str], request: bytes, content_type: str,
                    key_ids: Any) -> lic.ProxyResponse:
            seen.update(title=claims.title, allowed=allowed, request=request)
            return lic.ProxyResponse(200, b"license-bytes")

    lic.register_proxy("playready", Proxy())
    try:
        token = play(client, "sintel-enc", level="SL2000", drm="playready")["token"]
        answer = client.post(f"/api/license/playready?token={token}", content=b"challenge")
        assert answer.status_code == 200 and answer.content == b"license-bytes"
        assert seen == {"title": "sintel-enc", "allowed": frozenset({"AUDIO", "SD", "HD720"}), "request": b"challenge"}
    finally:
        lic.register_proxy("playready", None)
    with pytest.raises(NotConfigured):
        lic.proxy_for("playready")


# --- segments ----------------------------------------------------------------------------------------

SEGMENT = "/titles/sintel-clear/v-test0001/video/234p_300k/1.m4s"


def test_segment_has_type_etag_and_caching(client: TestClient, clear_title: Any) -> None:
    whole = client.get(SEGMENT)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/iso.segment"
    assert whole.headers["accept-ranges"] == "bytes"
    assert "immutable" in whole.headers["cache-control"]
    assert whole.content == (clear_title.root / SEGMENT.lstrip("/")).read_bytes()
    again = client.get(SEGMENT, headers={"if-none-match": whole.headers["etag"]})
    assert again.status_code == 304
    init = client.get("/titles/sintel-clear/v-test0001/audio/aac_und/init.mp4")
    assert init.status_code == 200 and init.headers["content-type"] == "audio/mp4"
    assert client.head(SEGMENT).headers["content-length"] == str(len(whole.content))


def test_range_requests(client: TestClient) -> None:
    whole = client.get(SEGMENT).content
    part = client.get(SEGMENT, headers={"range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
    tail = client.get(SEGMENT, headers={"range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole[-16:]
    beyond = client.get(SEGMENT, headers={"range": f"bytes={len(whole) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole)}"


@pytest.mark.parametrize("path", [
    "/titles/sintel-clear/v-test0001/../../sintel-enc/title.json",
    "/titles/sintel-clear/v-test0001/video/%2e%2e/%2e%2e/%2e%2e/title.json",
    "/titles/sintel-clear/v-test0001/..%2f..%2ftitle.json",
    "/titles/sintel-clear/v-test0001/video/..%5c..%5cmanifest.mpd",
    "/titles/sintel-clear/v-test0001/manifest.mpd",
    "/titles/sintel-clear/v-test0001/qc.json",
    "/titles/sintel-clear/..%2f..%2f/x.mp4",
    "/titles/sintel-clear/v-test0001//etc/passwd.mp4",
])
def test_paths_outside_the_title_are_refused(client: TestClient, path: str) -> None:
    # raw paths: the client must not normalise the dots away before they reach the server
    response = client.request("GET", ORIGIN + path)
    assert response.status_code in (403, 404), path
    assert b"reelflow" not in response.content and b"root:" not in response.content


def test_symlink_out_of_the_package_is_refused(client: TestClient, clear_title: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    link = clear_title.root / "titles/sintel-clear/v-test0001/video/leak.mp4"
    link.symlink_to(secret)
    try:
        assert client.get("/titles/sintel-clear/v-test0001/video/leak.mp4").status_code == 403
    finally:
        link.unlink()


# --- CORS ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/license"), ("GET", SEGMENT), ("GET", "/api/titles/sintel-enc/manifest.mpd"),
    ("GET", "/api/keys/00000000000000000000000000000000"), ("POST", "/api/play"),
])
def test_cors_preflight(client: TestClient, method: str, path: str) -> None:
    response = client.options(path, headers={
        "origin": "https://player.example.com", "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type, range"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://player.example.com"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "range" in allowed
    other = client.options(path, headers={"origin": "https://evil.example", "access-control-request-method": method})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_cors_on_responses_exposes_range_and_license_headers(client: TestClient) -> None:
    local = {"origin": "http://localhost:5173"}  # local pages on any port: the default pattern
    response = client.get(SEGMENT, headers={**local, "range": "bytes=0-9"})
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "content-range" in exposed and "x-license-duration" in exposed


# --- progress and QoE ----------------------------------------------------------------------------------

def test_progress_resumes_and_lists_most_recent_first(client: TestClient) -> None:
    first = play(client, "sintel-clear", profile="anna")
    saved = client.put("/api/progress", json={"profile_id": "anna", "title_id": "sintel-clear", "position_s": 2.5,
                                              "duration_s": 4.0}, headers={"authorization": f"Bearer {first['token']}"})
    assert saved.status_code == 200, saved.text
    second = play(client, "sintel-enc", profile="anna")
    client.put(f"/api/progress?token={second['token']}",
               json={"profile_id": "anna", "title_id": "sintel-enc", "position_s": 1.0})
    assert play(client, "sintel-clear", profile="anna")["resume"]["position_s"] == 2.5
    listed = client.get("/api/progress/anna").json()["titles"]
    assert [(t["title_id"], t["position_s"]) for t in listed] == [("sintel-enc", 1.0), ("sintel-clear", 2.5)]
    assert listed[1]["duration_s"] == 4.0
    # a token is bound to its profile and title
    wrong = client.put(f"/api/progress?token={first['token']}",
                       json={"profile_id": "bob", "title_id": "sintel-clear", "position_s": 1})
    assert wrong.status_code == 403
    assert client.put("/api/progress", json={"profile_id": "anna", "title_id": "sintel-clear",
                                             "position_s": 1}).status_code == 401


def test_qoe_is_stored(client: TestClient) -> None:
    from reelflow.playback.models import QoeReport

    data = play(client, "sintel-clear", profile="qoe", country="ca", isp="acme-fiber")
    report = {"startup_ms": 420.5, "stalls": [{"at_s": 1.0, "duration_ms": 250}, {"at_s": 3.0, "duration_ms": 100}],
              "switches": [{"at_s": 2.0, "from_kbps": 300, "to_kbps": 1200}], "bitrates_kbps": [300, 1200],
              "played_s": 4.0}
    answer = client.post(f"/api/qoe?token={data['token']}", json=report)
    assert answer.status_code == 201, answer.text
    service = client.app.app.state.service  # type: ignore[attr-defined]  (CORS wraps the FastAPI app)
    with service.db() as session:
        row = session.get(QoeReport, answer.json()["id"])
        assert (row.session_id, row.title_id, row.profile_id) == (data["session_id"], "sintel-clear", "qoe")
        assert (row.startup_ms, row.stall_count, row.stall_ms, row.switch_count) == (420.5, 2, 350.0, 1)
        assert row.bitrates_kbps == [300, 1200]
        # where the player was, from its signed play token (the fill's forecast is per country and ISP)
        assert (row.extra["country"], row.extra["isp"], row.extra["max_height"]) == ("CA", "acme-fiber", 2160)
    no_isp = play(client, "sintel-clear", profile="qoe", isp=None)
    answer = client.post(f"/api/qoe?token={no_isp['token']}", json=report)
    with service.db() as session:
        row = session.get(QoeReport, answer.json()["id"])
        assert (row.extra["country"], row.extra["isp"]) == ("US", None)
    assert client.post("/api/qoe", json=report).status_code == 401
    assert client.post(f"/api/qoe?token={data['token']}", json={"startup_ms": -1}).status_code == 422


# --- demo page -----------------------------------------------------------------------------------------

def test_play_page(clear_title: Any, key_source: KeyStore, tmp_path: Path) -> None:
    # Shaka Player missing (npm ci puts it in ./node_modules, so point shaka_dir at an empty folder)
    settings = service_settings(clear_title.root, tmp_path, shaka_dir=tmp_path / "no-shaka")
    with TestClient(create_app(settings, keys=key_source), base_url=ORIGIN) as client:
        page = client.get("/play/sintel-clear")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '"titleId": "sintel-clear"' in page.text
        assert "npm ci" in page.text  # the page says how to get Shaka Player
        assert client.get("/shaka/shaka-player.compiled.js").status_code == 404
        assert client.get("/shaka/..%2Fpackage.json").status_code == 404


def test_play_page_loads_shaka_when_installed(encrypted_title: Any, key_source: KeyStore,
                                              tmp_path: Path) -> None:
    dist = tmp_path / "node_modules/shaka-player/dist"
    dist.mkdir(parents=True)
    (dist / "shaka-player.compiled.js").write_text("window.shaka = {};")
    settings = service_settings(encrypted_title.root, tmp_path, shaka_dir=dist)
    with TestClient(create_app(settings, keys=key_source), base_url=ORIGIN) as client:
        page = client.get("/play/sintel-enc?format=hls")
        assert '<script src="/shaka/shaka-player.compiled.js"></script>' in page.text
        script = client.get("/shaka/shaka-player.compiled.js")
        assert script.status_code == 200 and script.text == "window.shaka = {};"
        assert "javascript" in script.headers["content-type"]
