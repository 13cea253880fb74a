"""``reelflow play``: ask the service, license, play in real time with a live display, report QoE."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from reelflow.errors import ConfigError, PlaybackError, PlayerError
from reelflow.player.abr import RULES, make_rule
from reelflow.player.devices import PRESETS, preset
from reelflow.player.manifest import Presentation, Track, select_audio
from reelflow.player.player import Player, PlayerConfig, PlayResult
from reelflow.player.session import PlayerHttp
from reelflow.player.shaping import Shaper

log = logging.getLogger(__name__)

__all__ = ["PlayOptions", "play", "play_command"]

DEFAULT_SERVICE = "http://127.0.0.1:8700"


@dataclass(frozen=True)
class PlayOptions:
    target: str                          # a title id, or a manifest URL (played directly, clear only)
    service: str = DEFAULT_SERVICE
    abr: str = "reelflow"
    device: str = "desktop-l1"
    trace: Path | None = None
    duration_s: float | None = None
    fmt: str | None = None               # dash | hls; None: dash, or what a manifest URL says
    save: Path | None = None
    profile: str = "cli"
    country: str = "US"
    isp: str | None = None               # the ISP network the player says it is in (steering prefers its edges)
    buffer_cap_s: float = 30.0
    audio_language: str | None = None    # play the audio in this language (BCP-47: fr, pt-BR)
    audio_channels: int | None = None    # at most this many channels: 2 stereo, 6 5.1


def _is_url(target: str) -> bool:
    return urlsplit(target).scheme in ("http", "https")


def _format_of(options: PlayOptions) -> str:
    if options.fmt is not None:
        if options.fmt not in ("dash", "hls"):
            raise ConfigError(f"--format must be dash or hls, not {options.fmt!r}")
        return options.fmt
    if _is_url(options.target):
        return "hls" if urlsplit(options.target).path.endswith(".m3u8") else "dash"
    return "dash"


def _keys(http: PlayerHttp, p: Presentation, license_url: str | None) -> tuple[Presentation, dict[bytes, bytes],
                                                                               list[str]]:
    """Licensed keys; video rungs whose key was withheld are dropped from the ladder."""
    tracks = (*p.video, *p.audio)
    if not p.encrypted:
        return p, {}, []
    keys: dict[bytes, bytes] = {}
    if p.format == "hls":
        for track in tracks:
            if track.key_url and track.kid not in keys:
                try:
                    key = http.hls_key(track.key_url)
                except PlaybackError as exc:
                    if track.kind == "video" and exc.status == 403:
                        log.info("%s: key refused: %s", track.label, exc)
                        continue
                    raise
                if track.kid is not None:
                    keys[track.kid] = key
    else:
        if license_url is None:
            raise PlayerError("the stream is encrypted but there is no license URL (play a title through "
                              "the service, not an encrypted manifest URL)")
        kids = list(dict.fromkeys(t.kid for t in tracks if t.kid is not None))
        keys = http.license(license_url, kids)
    usable = tuple(t for t in p.video if (t.kid is None and not t.key_url) or t.kid in keys)
    withheld = [t.label for t in p.video if t not in usable]
    if not usable:
        raise PlayerError("the license granted no key for any video rung")
    for track in p.audio:
        if (track.kid is not None or track.key_url) and track.kid not in keys:
            raise PlayerError(f"the license granted no key for the audio track {track.label}")
    from dataclasses import replace

    return replace(p, video=usable), keys, withheld


@dataclass
class PlayOutcome:
    result: PlayResult
    saved: Path | None = None
    saved_segments: int = 0
    qoe_posted: bool = False


def play(options: PlayOptions, *, on_update: Callable[[Player], None] | None = None) -> PlayOutcome:
    """Play ``options.target`` to the end or ``duration_s``; post QoE and progress when through the service."""
    rule = make_rule(options.abr)
    device = preset(options.device)
    if options.isp is not None:
        device = dataclasses.replace(device, isp=options.isp)
    if options.duration_s is not None and options.duration_s <= 0:
        raise ConfigError("--duration must be positive")
    if options.save is not None and options.save.suffix.lower() != ".mp4":
        raise ConfigError(f"--save writes MP4: give a name ending in .mp4, not {options.save.name!r}")
    if options.save is not None:
        from reelflow.infra.outputs import check_output_file

        check_output_file(options.save, "--save")  # before playing, not after
    shaper = Shaper.from_file(options.trace) if options.trace is not None else None
    fmt = _format_of(options)
    t0 = time.monotonic()
    with PlayerHttp(shaper=shaper) as http:
        via_service = not _is_url(options.target)
        license_url = None
        start_s = 0.0
        max_kbps = None
        if via_service:
            info = http.play(options.service, options.target, options.profile, device, options.country)
            manifest_url = info.manifests.get(fmt)
            if not manifest_url:
                raise PlayerError(f"the service offers no {fmt} manifest for {options.target}")
            license_url = info.license_url
            start_s = info.resume_s
            max_kbps = info.max_kbps
        else:
            manifest_url = options.target
        presentation = http.presentation(manifest_url, fmt)
        presentation = select_audio(presentation, options.audio_language, options.audio_channels)
        presentation = _resolve_indexes(http, presentation)
        presentation, keys, withheld = _keys(http, presentation, license_url)
        if start_s >= presentation.duration_s - 0.5:
            start_s = 0.0        # watched to the end: start again
        end_s = start_s + options.duration_s if options.duration_s is not None else None
        title = info.title_id if via_service else options.target

        def progress(position_s: float) -> None:
            if via_service:
                http.put_progress(options.service, options.profile, title, position_s, presentation.duration_s)

        player = Player(http, presentation, rule, device.caps(max_kbps), title=title, start_s=start_s,
                        end_s=end_s, t0=t0, withheld=tuple(withheld), on_update=on_update, on_progress=progress,
                        config=PlayerConfig(buffer_cap_s=options.buffer_cap_s, keep_media=options.save is not None))
        http.on_chunk = player.tick
        result = player.run()
        http.on_chunk = None
        outcome = PlayOutcome(result)
        if via_service:
            progress(result.position_s)
            http.post_qoe(options.service, result.qoe_body())
            outcome.qoe_posted = True
    if options.save is not None:
        from reelflow.player.save import save_media

        audio = presentation.audio[0] if presentation.audio else None
        outcome.saved_segments = save_media(player.media, presentation.video, audio, keys, options.save)
        outcome.saved = options.save
    return outcome


def _resolve_indexes(http: PlayerHttp, p: Presentation) -> Presentation:
    if not any(t.index_range for t in (*p.video, *p.audio)):
        return p
    from dataclasses import replace

    def resolve(tracks: tuple[Track, ...]) -> tuple[Track, ...]:
        return tuple(http.resolve_index(p, t) for t in tracks)

    return replace(p, video=resolve(p.video), audio=resolve(p.audio))


# --- the command ---------------------------------------------------------------------------------


def _live(enabled: bool) -> tuple[AbstractContextManager[Any], Callable[[Player], None] | None]:
    """A rich Live panel on stderr when it is a terminal; else nothing."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        return nullcontext(), None
    from rich.live import Live
    from rich.table import Table

    live = Live(console=console, refresh_per_second=8, transient=False)
    last = [0.0]

    def update(player: Player) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and player.state not in ("ended",):
            return
        last[0] = now
        table = Table(show_header=False, box=None, pad_edge=False)
        rung = player.video[player.rung] if player.rung is not None else None
        colour = {"stalled": "red", "starting": "yellow"}.get(player.state, "green")
        table.add_row("state", f"[{colour}]{player.state}[/]  at {player.clock.position_s:6.2f} s "
                               f"of {player.clock.end_s:.2f} s")
        table.add_row("rung", f"{rung.label} {rung.kbps:.0f} kbit/s" if rung else "-")
        table.add_row("throughput", f"{player.last_bps / 1e6:.2f} Mbit/s" if player.last_bps else "-")
        table.add_row("buffer", f"{player.clock.buffer_s:5.2f} s " + "█" * int(min(player.clock.buffer_s, 30)))
        stalls = player.clock.stalls
        table.add_row("stalls", f"{len(stalls)} ({sum(s.duration_s for s in stalls):.2f} s)")
        live.update(table)

    return live, update


def _summary(outcome: PlayOutcome) -> None:
    from rich.console import Console
    from rich.table import Table

    r = outcome.result
    table = Table(title=f"{r.title} ({r.format}, {r.abr})", show_header=False)
    table.add_row("played", f"{r.played_s:.2f} s from {r.start_s:.2f} s ({len(r.segments)} segments)")
    table.add_row("startup", f"{r.startup_s:.3f} s" if r.startup_s is not None else "-")
    table.add_row("stalls", f"{len(r.stalls)}, {r.stall_s:.2f} s")
    if r.failovers:
        table.add_row("CDN failovers", "; ".join(f"{f.from_cdn} -> {f.to_cdn} ({f.reason})" for f in r.failovers))
    table.add_row("switches", str(len(r.switches)))
    table.add_row("bitrate", f"{r.avg_kbps:.0f} kbit/s average; rungs {' '.join(s.label for s in r.segments)}")
    qoe = r.to_dict()["qoe_lin_per_chunk"]
    table.add_row("QoE_lin", f"{qoe:.3f} per segment" if qoe is not None else "-")
    if r.withheld:
        table.add_row("withheld", f"no key for {', '.join(r.withheld)}")
    if outcome.saved:
        table.add_row("saved", f"{outcome.saved} ({outcome.saved_segments} segments, decrypted)")
    Console(soft_wrap=True).print(table)


TargetArg = Annotated[str, typer.Argument(help="A title id (through the service) or a manifest URL (clear, direct).",
                                          show_default=False)]


def play_command(
    target: TargetArg,
    service: Annotated[str, typer.Option("--service", help="The playback service's base URL.")] = DEFAULT_SERVICE,
    abr: Annotated[str, typer.Option("--abr", help=f"ABR rule: {', '.join(RULES)}.")] = "reelflow",
    device: Annotated[str, typer.Option("--device", help=f"Device preset: {', '.join(PRESETS)}.")] = "desktop-l1",
    trace: Annotated[Path | None, typer.Option("--trace", help="Shape downloads to this two-column trace "
                                                               "(time s, Mbit/s).")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after this many seconds of media.")
                        ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="dash (default) or hls.")] = None,
    save: Annotated[Path | None, typer.Option("--save", help="Write the played stream, decrypted, to this "
                                                             ".mp4.")] = None,
    profile: Annotated[str, typer.Option("--profile", help="Viewer profile (resume positions are per profile).")
                       ] = "cli",
    country: Annotated[str, typer.Option("--country", help="Where the player says it is (ISO alpha-2).")] = "US",
    isp: Annotated[str | None, typer.Option("--isp", help="The ISP network the player says it is in "
                                                          "(default: the device preset's).")] = None,
    audio_language: Annotated[str | None, typer.Option("--audio-language", help="Audio language to play "
                                                       "(fr, pt-BR); default: the first the manifest lists.")] = None,
    audio_channels: Annotated[int | None, typer.Option("--audio-channels", min=1, max=16, help="Most audio "
                                                       "channels: 2 plays the stereo rendition, 6 the 5.1.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """Play a title (or a manifest URL) in real time, the way a device would; report QoE."""
    options = PlayOptions(target, service=service, abr=abr, device=device, trace=trace, duration_s=duration,
                          fmt=fmt, save=save, profile=profile, country=country, isp=isp,
                          audio_language=audio_language, audio_channels=audio_channels)
    live, update = _live(not json_out)
    with live:
        outcome = play(options, on_update=update)
    if json_out:
        data = outcome.result.to_dict()
        data.update(qoe_posted=outcome.qoe_posted, saved=str(outcome.saved) if outcome.saved else None,
                    saved_segments=outcome.saved_segments)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        _summary(outcome)

