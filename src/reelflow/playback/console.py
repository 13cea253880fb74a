"""The media engineers' console: titles, QC, ladders, renditions and recent ingest runs, as HTML pages.

    GET /console                          titles (status, QC verdict, ladder, renditions), quarantined
                                          sources with the reason, and recent ingest runs from Prefect
    GET /console/titles/{id}              one title: QC findings, conform steps, ladder plot and rung table
                                          (planned against delivered), renditions and tracks, left-out
                                          streams, and a player
    GET /console/titles/{id}/ladder.png   the title's ladder plot
    GET /api/console/titles, /api/console/runs   the same lists as JSON

Everything is read from what the ingest published (``titles/<id>/title.json`` and the reports
beside the package) and from the Prefect API (``PREFECT_API_URL``, else this machine's
orchestration service, flows/server.py); nothing here writes. The pages have no login: the
service listens on 127.0.0.1 by default; put it behind an authenticating proxy before exposing it.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from reelflow.errors import NotFound, StorageError
from reelflow.infra.storage import Storage, join_key

log = logging.getLogger(__name__)

TITLES = "titles"
QUARANTINE = "quarantine"
RUNS_SHOWN = 20


# --- reading -----------------------------------------------------------------------------------

def read_json(storage: Storage, key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(storage.get_bytes(key))
    except (StorageError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def title_folders(storage: Storage) -> list[str]:
    """Folders under titles/ that hold a title.json (a listing: fine for a console, not a hot path)."""
    return sorted({key.split("/")[1] for key in storage.list(f"{TITLES}/")
                   if key.count("/") == 2 and key.endswith("/title.json")})


def package_prefix(record: Mapping[str, Any], folder: str) -> str:
    """The storage prefix of a record's current package: titles/<folder>/<version>."""
    version = str(record.get("package", "")).rstrip("/").rsplit("/", 1)[-1]
    return join_key(TITLES, folder, version)


def title_summary(folder: str, record: Mapping[str, Any]) -> dict[str, Any]:
    renditions = record.get("renditions") or []
    video = [r for r in renditions if r.get("kind") == "video"]
    ladder = record.get("ladder") or {}
    return {
        "folder": folder,
        "title_id": record.get("title_id", folder),
        "status": record.get("status", "published"),
        "published_at": record.get("published_at"),
        "source": (record.get("source") or {}).get("name"),
        "qc_verdict": (record.get("qc") or {}).get("verdict"),
        "qc_flags": list((record.get("qc") or {}).get("warnings") or []),
        "ladder_mode": ladder.get("mode"),
        "codec": ladder.get("codec"),
        "video_rungs": len(video),
        "top": max((f"{r.get('height')}p" for r in video), key=lambda h: int(h[:-1]), default=None),
        "audio_tracks": sum(1 for r in renditions if r.get("kind") == "audio"),
        "subtitles": len(record.get("subtitles") or []),
        "left_out": len(record.get("audio_left_out") or []),
        "encrypted": record.get("encryption") is not None,
    }


def list_titles(storage: Storage) -> list[dict[str, Any]]:
    out = []
    for folder in title_folders(storage):
        record = read_json(storage, join_key(TITLES, folder, "title.json"))
        if record is not None:
            out.append(title_summary(folder, record))
    return sorted(out, key=lambda t: str(t.get("published_at") or ""), reverse=True)


def list_quarantined(storage: Storage) -> list[dict[str, Any]]:
    """Sources refused by QC (or unreadable drops): the title, the file and the errors that stopped it."""
    out = []
    for key in storage.list(f"{QUARANTINE}/"):
        if key.count("/") != 2 or not key.endswith("/qc.json"):
            continue
        report = read_json(storage, key) or {}
        errors = [f"{c.get('name')}: {c.get('message')}" for c in report.get("checks", [])
                  if not c.get("passed") and c.get("severity") == "error"]
        out.append({"title_id": key.split("/")[1], "source": report.get("source"), "errors": errors})
    return out


def load_record(storage: Storage, folder: str) -> dict[str, Any]:
    if "/" in folder or folder in (".", "..") or not folder:
        raise NotFound(f"no title {folder!r}")
    record = read_json(storage, join_key(TITLES, folder, "title.json"))
    if record is None:
        raise NotFound(f"no title {folder!r} is published")
    return record


def prefect_api_url() -> str | None:
    """PREFECT_API_URL, else the address of this machine's orchestration service, if one was started."""
    given = os.environ.get("PREFECT_API_URL")
    if given:
        return given
    from reelflow.flows.server import read_state  # no Prefect import: only the recorded address

    state = read_state()
    return state.url if state else None


def recent_runs(api_url: str | None, limit: int = RUNS_SHOWN, timeout_s: float = 3.0) -> dict[str, Any]:
    """The latest ingest flow runs with their state and, for failures, the reason; never raises."""
    if not api_url:
        return {"api": None, "runs": [], "note": "no orchestration service has run on this machine yet"}
    try:
        found = httpx.post(f"{api_url}/flow_runs/filter", timeout=timeout_s,
                           json={"limit": limit, "sort": "EXPECTED_START_TIME_DESC"})
        found.raise_for_status()
        flows = httpx.post(f"{api_url}/flows/filter", json={"limit": 200}, timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"api": api_url, "runs": [], "note": f"the Prefect API did not answer ({type(exc).__name__})"}
    names = {f["id"]: f["name"] for f in flows if isinstance(f, dict)}
    runs = []
    for run in found.json():
        state = run.get("state") or {}
        params = run.get("parameters") or {}
        runs.append({
            "name": run.get("name"), "flow": names.get(run.get("flow_id"), "?"),
            "state": state.get("name") or run.get("state_name"), "type": state.get("type"),
            "message": state.get("message") if state.get("type") in ("FAILED", "CRASHED") else None,
            "start": run.get("start_time") or run.get("expected_start_time"), "end": run.get("end_time"),
            "seconds": run.get("total_run_time"), "source": params.get("source"),
            "title_id": params.get("title_id"),
        })
    return {"api": api_url, "runs": runs, "note": None}


# --- rendering ---------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1,h2{font-weight:600} table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f4f4f4} .pass{color:#176f2c} .warning{color:#9a6700} .error,.FAILED,.CRASHED{color:#b3261e}
.info{color:#555} .COMPLETED{color:#176f2c} .muted{color:#777} code{font-size:12px}
img.plot{max-width:900px;border:1px solid #ddd} iframe{border:1px solid #ddd}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_index(titles: list[dict[str, Any]], quarantined: list[dict[str, Any]], runs: dict[str, Any]) -> str:
    rows = [[f"<a href='/console/titles/{_e(t['folder'])}'>{_e(t['title_id'])}</a>", _e(t["status"]),
             f"<span class='{_e(t['qc_verdict'])}'>{_e(t['qc_verdict'])}</span>"
             + (f" <span class='muted'>({_e(', '.join(t['qc_flags']))})</span>" if t["qc_flags"] else ""),
             _e(f"{t['ladder_mode']} {t['codec'] or ''}"), _e(f"{t['video_rungs']} (top {t['top']})"),
             _e(t["audio_tracks"]), _e(t["subtitles"]), _e(t["left_out"]), "yes" if t["encrypted"] else "no",
             _e(t["published_at"])] for t in titles]
    body = ["<h1>reelflow console</h1>", f"<h2>Titles ({len(titles)})</h2>"]
    body.append(_table(["title", "status", "QC", "ladder", "video rungs", "audio", "subtitles", "left out",
                        "encrypted", "published"], rows, "titles") if titles else "<p>No title published yet.</p>")
    if quarantined:
        body.append(f"<h2>Quarantined ({len(quarantined)})</h2>")
        body.append(_table(["title", "source", "why"], [[_e(q["title_id"]), _e(q["source"]),
                                                          "<br>".join(_e(e) for e in q["errors"])]
                                                         for q in quarantined], "quarantined"))
    body.append("<h2>Recent ingest runs</h2>")
    if runs["note"]:
        body.append(f"<p class='muted'>{_e(runs['note'])}</p>")
    if runs["runs"]:
        body.append(_table(["run", "flow", "state", "title / source", "started", "run time s", "reason"],
                           [[_e(r["name"]), _e(r["flow"]), f"<span class='{_e(r['type'])}'>{_e(r['state'])}</span>",
                             _e(r["title_id"] or r["source"]), _e(r["start"]),
                             _e(f"{r['seconds']:.1f}" if isinstance(r["seconds"], int | float) else ""),
                             _e(r["message"])] for r in runs["runs"]], "runs"))
    if runs["api"]:
        ui = str(runs["api"]).removesuffix("/api")
        body.append(f"<p class='muted'>From the Prefect API at {_e(runs['api'])}; its UI: "
                    f"<a href='{_e(ui)}'>{_e(ui)}</a></p>")
    return _page("reelflow console", "".join(body))


def _rung_rows(ladder: Mapping[str, Any], renditions: list[dict[str, Any]]) -> list[list[str]]:
    """Planned against delivered per rung when the ladder was measured; otherwise the renditions."""
    rows = []
    for rung in ladder.get("rungs") or []:
        planned, delivered = rung.get("planned") or {}, rung.get("delivered") or {}
        rows.append([_e(rung.get("name")), _e(f"{rung.get('width')}x{rung.get('height')}"),
                     _e(planned.get("kbps")), _e(planned.get("vmaf")), _e(delivered.get("kbps")),
                     _e(delivered.get("vmaf"))])
    if not rows:
        rows = [[_e(r.get("name")), _e(f"{r.get('width')}x{r.get('height')}"), _e(r.get("target_kbps")), "-",
                 _e(r.get("kbps")), "-"] for r in renditions if r.get("kind") == "video"]
    return rows


def render_title(folder: str, record: Mapping[str, Any], qc: Mapping[str, Any] | None, has_plot: bool) -> str:
    title_id = record.get("title_id", folder)
    renditions = list(record.get("renditions") or [])
    ladder = record.get("ladder") or {}
    body = [f"<p><a href='/console'>&larr; all titles</a></p><h1>{_e(title_id)}</h1>",
            f"<p>{_e(record.get('status'))}, published {_e(record.get('published_at'))} from "
            f"<code>{_e((record.get('source') or {}).get('name'))}</code> "
            f"(sha256 <code>{_e(str((record.get('source') or {}).get('sha256', ''))[:16])}</code>); "
            f"package <code>{_e(record.get('package'))}</code></p>"]
    verdict = (record.get("qc") or {}).get("verdict")
    body.append(f"<h2>QC: <span class='{_e(verdict)}'>{_e(verdict)}</span></h2>")
    if qc is not None:
        fired = [c for c in qc.get("checks", []) if not c.get("passed")]
        body.append(_table(["check", "severity", "finding"],
                           [[_e(c.get("name")), f"<span class='{_e(c.get('severity'))}'>{_e(c.get('severity'))}</span>",
                             _e(c.get("message"))] for c in fired], "qc") if fired else "<p>Every check passed.</p>")
    conform = record.get("conform") or []
    if conform:
        body.append("<h2>Conform</h2>" + _table(["step", "found", "action", "filter"], [
            [_e(s.get("step")), _e(s.get("found")), _e(s.get("action")), f"<code>{_e(s.get('filter'))}</code>"]
            for s in conform], "conform"))
    body.append(f"<h2>Ladder: {_e(ladder.get('mode'))} {_e(ladder.get('codec'))}</h2>")
    if has_plot:
        body.append(f"<img class='plot' alt='ladder plot' src='/console/titles/{_e(folder)}/ladder.png'>")
    body.append(_table(["rung", "size", "planned kbps", "planned VMAF", "delivered kbps", "delivered VMAF"],
                       _rung_rows(ladder, renditions), "rungs"))
    body.append("<h2>Renditions and tracks</h2>")
    body.append(_table(["kind", "name", "codec", "size / channels", "language", "role", "kbps"], [
        [_e(r.get("kind")), _e(r.get("name")), _e(r.get("codec")),
         _e(f"{r.get('width')}x{r.get('height')}" if r.get("kind") == "video" else f"{r.get('channels')} ch"),
         _e(r.get("language", "")), _e(r.get("role", "")), _e(r.get("kbps"))] for r in renditions]
        + [["text", _e(s.get("name")), "wvtt", "", _e(s.get("language")), _e(s.get("role")), ""]
           for s in record.get("subtitles") or []], "renditions"))
    left_out = record.get("audio_left_out") or []
    body.append("<h2>Left out of the package</h2>")
    body.append(_table(["stream", "audio track", "why"], [
        [_e(item.get("stream")), _e(item.get("track")), _e(item.get("reason"))] for item in left_out], "left-out")
        if left_out else "<p>Nothing: every stream of the source is in the package.</p>")
    # the player's path takes the title's storage key (packaging/titles.py), which is the folder
    body.append(f"<h2>Play</h2><iframe title='player' src='/play/{_e(folder)}' width='720' height='460'>"
                "</iframe>")
    return _page(f"{title_id} - reelflow console", "".join(body))
