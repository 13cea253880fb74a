"""Shaka Packager: CMAF segments, a DASH MPD and an HLS master playlist in one run.

The package layout (relative to the output folder), shared by DASH and HLS since both point at
the same CMAF segments:

    manifest.mpd, master.m3u8
    video/<rung>/init.mp4, video/<rung>/<n>.m4s, video/<rung>.m3u8
    audio/<codec>_<lang>/init.mp4, audio/<codec>_<lang>/<n>.m4s, audio/<codec>_<lang>.m3u8
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reelflow.encoding.encode import Rendition
from reelflow.errors import StageError
from reelflow.infra.settings import PackageConfig
from reelflow.infra.tools import packager_exe, run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    """What the packager made: the folder and the manifests in it (relative paths)."""

    root: Path
    dash_manifest: str
    hls_master: str
    files: tuple[str, ...]


def stream_descriptor(rendition: Rendition) -> str:
    """One packager stream descriptor: input, stream selector, CMAF output names, HLS names."""
    folder = f"{rendition.kind}/{rendition.name}"
    fields = [
        f"in={rendition.path}",
        f"stream={rendition.kind}",
        f"init_segment={folder}/init.mp4",
        f"segment_template={folder}/$Number$.m4s",
        f"playlist_name={folder}.m3u8",
    ]
    if rendition.kind == "audio":
        fields += ["hls_group_id=audio", f"hls_name={rendition.language}"]
        if rendition.language != "und":  # the packager refuses "und"; no tag means undetermined
            fields.append(f"language={rendition.language}")
    return ",".join(fields)


def package_argv(
    renditions: Sequence[Rendition], segment_s: float, config: PackageConfig
) -> list[str]:
    """Packager argv; run with the output folder as working directory so paths stay relative."""
    return [
        packager_exe(),
        *(stream_descriptor(r) for r in renditions),
        "--segment_duration", f"{segment_s:g}",      # cut at the first keyframe at or after each grid point
        "--mpd_output", config.dash_manifest,
        "--hls_master_playlist_output", config.hls_master,
        "--hls_playlist_type", "VOD",
        "--generate_static_live_mpd",                # static (VOD) MPD with SegmentTemplate, not type="dynamic"
    ]


def package(renditions: Sequence[Rendition], out_dir: Path, *, segment_s: float,
            config: PackageConfig = PackageConfig()) -> Package:
    """Package the renditions in the clear into ``out_dir`` (emptied first)."""
    if not any(r.kind == "video" for r in renditions):
        raise StageError("nothing to package: no video rendition")
    names = [f"{r.kind}/{r.name}" for r in renditions]
    if len(set(names)) != len(names):
        raise StageError(f"two renditions share a name: {sorted(names)}")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a re-run must not mix segments from an older package
    out_dir.mkdir(parents=True)
    # Video by ascending bitrate first: manifests list representations in this order.
    ordered = sorted(renditions, key=lambda r: (r.kind != "video", r.target_kbps, r.name))
    argv = package_argv([_absolute(r) for r in ordered], segment_s, config)
    run(argv, cwd=out_dir)
    files = tuple(sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()))
    for manifest in (config.dash_manifest, config.hls_master):
        if manifest not in files:
            raise StageError(f"the packager did not write {manifest} in {out_dir}")
    log.info("packaged %d renditions into %d files in %s", len(renditions), len(files), out_dir)
    return Package(root=out_dir, dash_manifest=config.dash_manifest, hls_master=config.hls_master, files=files)


def _absolute(rendition: Rendition) -> Rendition:
    return replace(rendition, path=rendition.path.resolve())
