"""A rung that switches resolution per shot, played across its switches in headless Chromium (Shaka Player).

The rung (tests/packaged_titles.py: 640x360, 384x216 from 2 s, 640x360 from 4 s, in-band parameter
sets under ``avc3``) comes from the running service in the clear and with cenc (ClearKey), as DASH
and as HLS. Each play must show the picture change size twice, inside the one variant the manifest
declares at 640x360, with frames decoded at every size, and reach the end of the title.
"""

from __future__ import annotations

import itertools
from urllib.parse import urlencode

import pytest

from browser_helpers import play_in_browser
from packaged_titles import CLIP_S, SWITCH_CLEAR_ID, SWITCH_ENC_ID, PackagedTitle

pytestmark = pytest.mark.slow

SIZES = [(640, 360), (384, 216), (640, 360)]   # as the rung's pieces, in order
UNTIL_S = CLIP_S - 0.2                          # the last frames: all three pieces played


@pytest.mark.parametrize("fmt", ["dash", "hls"])
@pytest.mark.parametrize("title_id", [SWITCH_CLEAR_ID, SWITCH_ENC_ID], ids=["clear", "cenc"])
def test_rung_plays_across_two_resolution_switches(title_id: str, fmt: str, service_url: str, player_origin: str,
                                                   switch_clear_title: PackagedTitle,
                                                   switch_encrypted_title: PackagedTitle) -> None:
    query = urlencode({"service": service_url, "title": title_id, "format": fmt})
    result = play_in_browser(f"{player_origin}/player.html?{query}", until_s=UNTIL_S)
    report = result.report()
    assert result["state"] in ("playing", "ended") and result["error"] is None, report
    assert result["current_time"] >= UNTIL_S and result["video_error"] is None, report
    assert (result["key_system"] or None) == ("org.w3.clearkey" if title_id == SWITCH_ENC_ID else None), report
    variants = result["variants"]
    assert len(variants) == 1 and variants[0]["height"] == 360, report          # one rung, declared at its largest
    changes = result["sizes"]
    assert [(c["width"], c["height"]) for c in changes] == SIZES, report
    # frames decoded at each size: between one change and the next, and after the last one
    counts = [c["frames"] for c in changes] + [result["frames"]]
    assert all(b > a for a, b in itertools.pairwise(counts)), report
    # each switch comes where its piece starts (2 s and 4 s), within a frame or two of the clock's report
    assert [round(c["time"]) for c in changes[1:]] == [2, 4], report
