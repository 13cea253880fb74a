"""Runs tests/browser/play.mjs (Playwright, headless Debian Chromium) and wraps what it saw."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Playback:
    """What play.mjs saw in the browser."""

    data: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def drm(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.data["drm"] if d["kind"] == kind]

    def report(self) -> str:
        """For assertion messages: the state and everything the browser logged."""
        summary = {k: v for k, v in self.data.items() if k not in ("log",)}
        return json.dumps(summary, indent=1) + "\n--- browser log ---\n" + "\n".join(self.data["log"][-80:])


def play_in_browser(url: str, *, until_s: float = 5.0, timeout_ms: int = 90_000) -> Playback:
    """Open ``url`` in headless Chromium until ``until_s`` seconds have played (or an error, or the timeout)."""
    options = {"url": url, "until_s": until_s, "timeout_ms": timeout_ms, "executable": str(CHROMIUM)}
    done = subprocess.run(["node", str(HERE / "play.mjs"), json.dumps(options)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout_ms / 1000 + 60, env={**os.environ,
                                                                          "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    if done.returncode:
        raise AssertionError(f"play.mjs failed ({done.returncode}) on {url}:\n{done.stderr[-4000:]}")
    return Playback(json.loads(done.stdout.strip().splitlines()[-1]))
