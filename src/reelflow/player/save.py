"""``reelflow play --save OUT.mp4``: the segments that were played, decrypted, as one file ffmpeg decodes.

How: consecutive segments of one rung form a run; each run (its rung's init segment followed
by its media segments, as downloaded) is decrypted and remuxed by the bundled ffmpeg
(``-decryption_key``, one key per input, so video runs and the audio track go through it one by
one) into MPEG-TS with its original timestamps (``-copyts``). TS carries the SPS/PPS in band, so
runs of different resolutions concatenate (``concat:`` protocol) into one stream whose decoder
re-initialises at each switch; the last step muxes that with the audio into MP4 with stream copy
(no re-encode). ffmpeg's mov demuxer decrypts ``cenc`` (AES-CTR, subsamples) this way; see the
report for ``cbcs``.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from pathlib import Path

from reelflow.errors import PlayerError
from reelflow.infra.tools import ffmpeg_exe, run
from reelflow.player.manifest import Track
from reelflow.player.player import Media

log = logging.getLogger(__name__)

__all__ = ["decrypt_argv", "save_media"]


def decrypt_argv(src: Path, key: bytes | None, out: Path, fmt: str) -> list[str]:
    return [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        *(["-decryption_key", key.hex()] if key else []),   # cenc: the mov demuxer decrypts the samples
        "-i", str(src),
        "-map", "0", "-c", "copy",
        "-copyts",                     # keep tfdt times, so runs of different rungs line up when joined
        "-f", fmt, str(out),
    ]


def mux_argv(video: str, audio: Path | None, out: Path) -> list[str]:
    return [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", video, *(["-i", str(audio)] if audio else []),
        "-map", "0:v", *(["-map", "1:a"] if audio else []),
        "-c", "copy",                  # no re-encode: the played bits, decrypted
        "-movflags", "+faststart", str(out),
    ]


def _key(keys: dict[bytes, bytes], track: Track) -> bytes | None:
    if track.kid is None and not track.key_url:
        return None
    if track.kid is None or track.kid not in keys:
        raise PlayerError(f"no key for {track.label} (key id {track.kid.hex() if track.kid else 'unknown'}); "
                          "cannot decrypt it for --save")
    return keys[track.kid]


def save_media(media: Media, video: tuple[Track, ...], audio: Track | None, keys: dict[bytes, bytes],
               out: Path) -> int:
    """Write ``out``; returns the number of video segments in it."""
    if not media.video:
        raise PlayerError("nothing was played, so there is nothing to save")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reelflow-save-") as tmp:
        work = Path(tmp)
        pieces: list[Path] = []
        for i, (rung, run_items) in enumerate(itertools.groupby(media.video, key=lambda item: item[0])):
            encrypted = work / f"run{i}.mp4"
            encrypted.write_bytes(media.video_inits[rung] + b"".join(data for _, data in run_items))
            clear = work / f"run{i}.ts"
            run(decrypt_argv(encrypted, _key(keys, video[rung]), clear, "mpegts"))
            pieces.append(clear)
        audio_clear: Path | None = None
        if audio is not None and media.audio:
            encrypted = work / "audio.mp4"
            encrypted.write_bytes(media.audio_init + b"".join(media.audio))
            audio_clear = work / "audio.m4a"
            run(decrypt_argv(encrypted, _key(keys, audio), audio_clear, "mp4"))
        source = str(pieces[0]) if len(pieces) == 1 else "concat:" + "|".join(str(p) for p in pieces)
        run(mux_argv(source, audio_clear, out))
    log.info("saved %d segments to %s", len(media.video), out)
    return len(media.video)
