"""The console page in headless Chromium: it lists the titles, opens one, and its embedded player plays."""

from __future__ import annotations

import json
import os
import subprocess

from browser_helpers import CHROMIUM, HERE, ROOT
from packaged_titles import ENC_ID, PackagedTitle


def test_console_lists_a_title_and_plays_it(service_url: str, encrypted_title: PackagedTitle,
                                            clear_title: PackagedTitle) -> None:
    options = {"url": f"{service_url}/console", "title": ENC_ID, "until_s": 2, "executable": str(CHROMIUM)}
    done = subprocess.run(["node", str(HERE / "console.mjs"), json.dumps(options)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {ENC_ID, clear_title.title_id} <= set(seen["titles"]), seen
    assert seen["title_url"].endswith(f"/console/titles/{ENC_ID}"), seen
    assert any(h.startswith("Renditions") for h in seen["headings"]), seen
    assert len(seen["rungs"]) >= 2, seen  # one row per video rung
    assert seen["played_s"] is not None and seen["played_s"] >= 2 and seen["frames"] > 0, seen
