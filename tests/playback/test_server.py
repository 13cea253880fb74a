"""The service and an edge as real HTTP servers on 127.0.0.1: a play, end to end, decrypted with the license's keys."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mpegdash.parser
import pytest

from playback_helpers import Server, free_port, play_body, service_settings
from reelflow.packaging.keys import KeyStore
from reelflow.playback.api import create_app, create_edge_app


@pytest.fixture(scope="module")
def servers(encrypted_title: Any, clear_title: Any, key_source: KeyStore,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    service_port, edge_port = free_port(), free_port()
    settings = service_settings(encrypted_title.root, tmp_path_factory.mktemp("db"), port=service_port,
                                edge_url=f"http://127.0.0.1:{edge_port}")
    with Server(create_edge_app(settings, name="acme-edge"), edge_port) as edge, \
            Server(create_app(settings, keys=key_source), service_port) as service:
        yield service.url, edge.url


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_play_license_and_segments_from_the_edge_decrypt(servers: tuple[str, str], encrypted_title: Any,
                                                         ffmpeg: str, tmp_path: Path) -> None:
    service, edge = servers
    with httpx.Client(timeout=10) as http:
        play = http.post(f"{service}/api/play", json=play_body("sintel-enc", level="L3")).json()
        assert [c["base_url"] for c in play["cdn"]] == [edge, service]
        mpd = mpegdash.parser.MPEGDASHParser.parse(http.get(play["manifests"]["dash"]).text)
        base = mpd.base_urls[0].base_url_value
        assert base == f"{edge}/titles/sintel-enc/v-test0001/"
        video = next(a for a in mpd.periods[0].adaptation_sets
                     if a.content_type == "video" and 720 in (a.height, *(r.height for r in a.representations)))
        template = video.representations[0].segment_templates[0]
        kid = bytes.fromhex(video.content_protections[0].cenc_default_kid.replace("-", ""))
        init = http.get(base + template.initialization)
        first = http.get(base + template.media.replace("$Number$", "1"))
        assert init.status_code == first.status_code == 200
        assert first.headers["content-type"] == "video/iso.segment"

        kid64 = base64.urlsafe_b64encode(kid).rstrip(b"=").decode()
        answer = http.post(play["license"]["url"], json={"kids": [kid64], "type": "temporary"})
        assert answer.status_code == 200
        key = b64decode(answer.json()["keys"][0]["k"])
    assert key == encrypted_title.keys["HD720"].key

    encrypted = tmp_path / "segment.mp4"
    encrypted.write_bytes(init.content + first.content)
    def decode(key_hex: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-decryption_key", key_hex,
                               "-i", str(encrypted), "-f", "framemd5", "-"],
                              capture_output=True, text=True, check=False)

    clear = decode(key.hex())
    assert clear.returncode == 0 and not clear.stderr.strip(), clear.stderr
    frames = [ln for ln in clear.stdout.splitlines() if ln and not ln.startswith("#")]
    assert len(frames) == 48  # 2 s at 24 fps, all decoded
    wrong = decode("00" * 16)
    assert wrong.stderr.strip() or wrong.stdout != clear.stdout  # the key really is the one that decrypts


def raw_get(url: str, path: str, headers: str = "") -> tuple[int, bytes]:
    """GET with the path exactly as given: no client between the test and the server normalises it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("path", [
    "/titles/sintel-clear/v-test0001/../../sintel-enc/title.json",
    "/titles/sintel-clear/v-test0001/video/../../title.json",
    "/titles/sintel-clear/v-test0001/./video/234p_300k/1.m4s",
    "/titles/sintel-clear/v-test0001/video/%2e%2e/%2e%2e/title.json",
    "/titles/sintel-clear/v-test0001/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/titles/../titles/sintel-clear/title.json",
])
def test_traversal_over_the_wire_is_refused(servers: tuple[str, str], path: str) -> None:
    for url in servers:  # the service (origin) and the edge
        status, body = raw_get(url, path)
        assert status in (403, 404), (url, path, status)
        assert b"published" not in body and b"root:" not in body


def test_edge_serves_ranges_and_cors(servers: tuple[str, str]) -> None:
    _, edge = servers
    path = "/titles/sintel-clear/v-test0001/video/720p_1200k/2.m4s"
    status, body = raw_get(edge, path, "Range: bytes=0-7\r\nOrigin: http://127.0.0.1:9999\r\n")
    assert status == 206 and len(body) == 8 and body[4:8] in (b"styp", b"moof", b"sidx")
    with httpx.Client() as http:
        assert http.get(f"{edge}/healthz").json() == {"status": "ok", "edge": "acme-edge"}
        assert http.get(f"{edge}/api/play").status_code == 404  # an edge is segments only
        key = http.get(f"{edge}/titles/sintel-enc/v-test0001/video/keys/{'0' * 32}")
        assert key.status_code == 404
