"""A device's height cap reads a portrait rung's short side, as the ladder and the key tiers do."""

from __future__ import annotations

import m3u8

from reelflow.playback import manifests

MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=5000000,CODECS="avc1.640028",RESOLUTION=1080x1920
video/1080p.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=9000000,CODECS="avc1.640033",RESOLUTION=2160x3840
video/2160p.m3u8
"""


def test_portrait_1080p_rung_plays_on_a_1080p_device() -> None:
    limits = manifests.Limits(codecs=frozenset({"avc1"}), max_height=1080)
    playlists = m3u8.loads(MASTER).playlists
    assert [manifests._variant_ok(p, limits) for p in playlists] == [True, False]
