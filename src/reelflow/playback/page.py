"""The demo page, ``GET /play/{title_id}``: plays a title in a browser with Shaka Player.

The page does what any web player of the service does: POST /api/play with what the browser
can decode, point Shaka's ClearKey license server at the license URL it gets back, load the
DASH (or, with ``?format=hls``, the HLS) manifest at the resume position, and report progress
(PUT /api/progress every 10 s) and QoE (POST /api/qoe when it ends or the page is hidden).

Shaka Player is not vendored: the service serves ``service.shaka_dir`` (by default
``node_modules/shaka-player/dist``, put there by ``npm ci``) under ``/shaka/``; without it the
page says so instead of playing.

Query parameters (for people and for browser tests): ``format`` (dash|hls), ``profile``,
``drm`` (clearkey|none), ``level`` (security level, e.g. L3), ``max_height``, ``country``,
``isp``, ``connection``. State for tests: ``document.body.dataset.state`` is loading, playing,
ended or error; ``window.reelflow`` holds ``play`` (the /api/play answer), ``player``,
``error``, and ``qoe``.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from string import Template

SHAKA_FILE = "shaka-player.compiled.js"
SHAKA_SERVED = frozenset({SHAKA_FILE, "shaka-player.compiled.map", "shaka-player.compiled.debug.js",
                          "shaka-player.compiled.debug.map", "shaka-player.ui.js", "shaka-player.ui.map",
                          "controls.css"})

_PAGE = Template((resources.files("reelflow.playback") / "play.html").read_text(encoding="utf-8"))


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def render(title_id: str, *, shaka_available: bool, shaka_dir: Path, country: str = "US") -> str:
    missing = (f"Shaka Player is not installed: {shaka_dir / SHAKA_FILE} is missing. Run `npm ci` (or "
               "`npm install shaka-player`) in the folder the service runs in, or point service.shaka_dir at "
               "Shaka Player's dist folder, then reload.")
    config = {"titleId": title_id, "shaka": shaka_available, "shakaMissing": missing, "country": country}
    tag = f'<script src="/shaka/{SHAKA_FILE}"></script>' if shaka_available else ""
    return _PAGE.substitute(title_html=html.escape(title_id), config_json=_script_json(config), shaka_tag=tag)
