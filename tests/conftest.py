"""Shared fixtures: the real clips in ../shared/media, their truth, synthetic clips, a moto S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared_media import MEDIA_DIR

# Every test session keeps reelflow's state (keys, database, default output, the orchestration
# service) in a folder of its own, never in the developer's REELFLOW_HOME. Set at import, before any
# settings are read; subprocesses inherit it.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="reelflow-home-"))
os.environ["REELFLOW_HOME"] = str(_SESSION_HOME)


@pytest.fixture(scope="session", autouse=True)
def reelflow_home() -> Iterator[Path]:
    """This session's REELFLOW_HOME; an orchestration service a test started there is stopped at the end."""
    yield _SESSION_HOME
    from reelflow.flows.server import stop_server

    stop_server(_SESSION_HOME / "prefect")


def _missing(what: Path) -> None:
    """Skip on a developer machine without ../shared; in CI (CI=true) a missing clip is a failure."""
    message = f"{what} is not here (../shared/media sits beside the repo in CI)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _clip(name: str) -> Path:
    path = MEDIA_DIR / name
    if not path.is_file():
        _missing(path)
    return path


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA_DIR.is_dir():
        _missing(MEDIA_DIR)
    return MEDIA_DIR


@pytest.fixture(scope="session")
def truth(media_dir: Path) -> dict[str, Any]:
    """truth.json's clips: hand-checked cuts, gradual transitions and hard negatives per file."""
    clips: dict[str, Any] = json.loads((media_dir / "truth.json").read_text())["clips"]
    return clips


@pytest.fixture(scope="session")
def all_clips(media_dir: Path, truth: dict[str, Any]) -> list[Path]:
    """Every clip that truth.json describes."""
    return [media_dir / name for name in sorted(truth)]


@pytest.fixture(scope="session")
def bbb() -> Path:
    """Big Buck Bunny, 30 s 1280x720 VP8 + Vorbis in WebM: fade-in from black, 3 cuts, title overlay."""
    return _clip("01_bbb_0-30s_1280x720_vp8.webm")


@pytest.fixture(scope="session")
def tears_of_steel() -> Path:
    """Tears of Steel, 10 s 640x360 H.264, no audio, unspecified colour; VFX flicker at the end."""
    return _clip("02_tears_of_steel_10s_640x360.mp4")


@pytest.fixture(scope="session")
def sintel_fight() -> Path:
    """Sintel, 10 s 640x360 animation, fast motion, 7 hard cuts (truth.json), no audio."""
    return _clip("03_sintel_fight_10s_640x360.mp4")


@pytest.fixture(scope="session")
def caminandes() -> Path:
    """Caminandes, 10 s 640x360 animation, one shot with full-frame occlusions by passing cars."""
    return _clip("04_caminandes_10s_640x360.mp4")


@pytest.fixture(scope="session")
def talking_head() -> Path:
    """Talking head, 9.4 s 1280x720 30 fps, static camera, AAC stereo 44.1 kHz."""
    return _clip("10_talking_head_9s_1280x720.mp4")


@pytest.fixture(scope="session")
def dark_bokeh() -> Path:
    """Dark defocused lights, 7.3 s 1920x1080 at 30000/1001, camera noise, no audio."""
    return _clip("11_dark_bokeh_7s_1920x1080.mp4")


@pytest.fixture(scope="session")
def dashcam() -> Path:
    """Dash-cam, 8.84 s 960x540 25 fps, smpte170m primaries/matrix with a bt709 transfer.

    Its AAC track is digital silence from start to end.
    """
    return _clip("12_dashcam_9s_960x540.mp4")


@pytest.fixture(scope="session")
def dog() -> Path:
    """Woman and dog, 9.66 s 1280x720 at 30000/1001, single shot; its AAC 48 kHz track is digital silence."""
    return _clip("e05_dog_10s_1280x720.mp4")


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from reelflow.infra.tools import ffmpeg_exe

    return ffmpeg_exe()


Decoder = Callable[..., dict[str, float]]


@pytest.fixture(scope="session")
def decode(ffmpeg: str) -> Decoder:
    """decode(source, *map_args): decode a file or a manifest with ffmpeg; frames and seconds decoded.

    ``map_args`` select what to decode, e.g. ("-map", "0:v:1"). Fails the test if ffmpeg fails.
    """
    return lambda source, *map_args: _decode(ffmpeg, source, *map_args)


def _decode(ffmpeg: str, source: str | Path, *map_args: str) -> dict[str, float]:
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-nostats",
            "-i", str(source), *map_args, "-f", "null", "-"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {
        "frames": int(values.get("frame", 0)),
        "seconds": int(values.get("out_time_us", "0")) / 1e6,
        "error_lines": float(sum(1 for ln in done.stderr.splitlines() if ln.strip())),
    }


LavfiMaker = Callable[..., Path]


@pytest.fixture(scope="session")
def lavfi_clip(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> LavfiMaker:
    """Make a small synthetic clip: lavfi_clip("name.mp4", "-f", "lavfi", "-i", ..., "-c:v", ...).

    The arguments go between ``ffmpeg -y`` and the output path; the result is cached per name for
    the session, so tests that share a purpose-made input make it once.
    """
    folder = tmp_path_factory.mktemp("lavfi")

    def make(name: str, *args: str) -> Path:
        out = folder / name
        if not out.exists():
            subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args, str(out)], check=True)
        return out

    return make


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 (and SQS) server on 127.0.0.1 for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# Packaged titles (clear, cenc, cbcs; keys in the real key store), shared by tests/playback and
# tests/browser so that one xdist worker running both encodes the clip once.
from packaged_titles import (  # noqa: E402
    cbcs_title,
    clear_title,
    clip,
    encrypted_title,
    key_database,
    key_source,
    renditions,
    store_root,
    switch_clear_title,
    switch_encrypted_title,
    switching_renditions,
)

__all__ = ["cbcs_title", "clear_title", "clip", "encrypted_title", "key_database", "key_source", "renditions",
           "store_root", "switch_clear_title", "switch_encrypted_title", "switching_renditions"]
