#!/usr/bin/env bash
# `make demo`: ingest a real clip, encrypted, with the embedded defaults, start the playback service
# and print the URL of a page that plays it in a browser (ClearKey licenses from the service).
#
# With a terminal attached the service runs in the foreground until Ctrl-C. Without one (CI, a
# pipe) the demo checks that the service answers, prints the URL and leaves the service running in
# the background (its pid in serve.pid, its log in serve.log, both in REELFLOW_HOME), so the
# demo itself ends. Everything the demo makes (keys, database, output, the orchestration service)
# is in REELFLOW_HOME: by default ~/.local/share/reelflow, whatever folder the demo runs from. REELFLOW_DEMO_SERVE=no skips the service; REELFLOW_DEMO_PORT picks the port.
set -euo pipefail
cd "$(dirname "$0")/.."
# Read the demo's own knobs, then drop them: reelflow reads every REELFLOW_* variable as a setting
# and refuses ones it does not know ("invalid setting 'demo_port'").
serve="${REELFLOW_DEMO_SERVE:-yes}"
port="${REELFLOW_DEMO_PORT:-8700}"
unset REELFLOW_DEMO_SERVE REELFLOW_DEMO_PORT

home=$(python -c "from reelflow.infra.home import reelflow_home; print(reelflow_home())")
mkdir -p "$home"
clip="../shared/media/03_sintel_fight_10s_640x360.mp4"
if [[ ! -f "$clip" ]]; then
  # No ../shared here: make a 10 s clip with two hard cuts and a tone, with ffmpeg's lavfi.
  clip="$home/demo-source.mp4"
  ffmpeg=$(python -c "from reelflow.infra.tools import ffmpeg_exe; print(ffmpeg_exe())")
  "$ffmpeg" -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=640x360:rate=24:duration=4" \
    -f lavfi -i "mandelbrot=size=640x360:rate=24,trim=duration=3" \
    -f lavfi -i "smptehdbars=size=640x360:rate=24:duration=3" \
    -f lavfi -i "sine=frequency=440:duration=10:sample_rate=48000" \
    -filter_complex "[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v]" \
    -map "[v]" -map 3:a -c:v libx264 -crf 18 -c:a aac -ac 2 "$clip"
  echo "(../shared/media is not here: using a generated clip, $clip)"
fi

storage=$(python -c "from reelflow.infra.settings import load_settings; print(load_settings().storage.output)")
# Encrypted (the default): one content key per tier, sealed in the service database
# ($home/service.db) under the master key in $home/drm-master.key; the service started below
# reads them there and hands the browser page its keys through the ClearKey license.
reelflow ingest "$clip" --title-id demo

# title.json names the package folder that is current (packages are versioned by content)
package=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['package'])" "$storage/titles/demo/title.json")
cat <<MSG

Demo ingest done. The title is in $package/ (encrypted: cenc, one key per tier):
  DASH manifest:  $package/manifest.mpd
  HLS playlist:   $package/master.m3u8
  title record:   $storage/titles/demo/title.json
  ladder report:  $package/ladder.json and ladder.png (trials, hulls, rungs, planned against delivered VMAF)
The files need the service's license to play (below). For players that read files in the clear,
ingest with --no-drm: reelflow ingest $clip --title-id demo-clear --no-drm
MSG

# --- the playback service ---------------------------------------------------------------------
if [[ "$serve" == "no" ]]; then
  exit 0
fi
url="http://127.0.0.1:$port"
pidfile="$home/serve.pid"
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill "$(cat "$pidfile")" && sleep 1   # the service an earlier demo left running
fi
reelflow serve --port "$port" >"$home/serve.log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"
if ! python - "$url/healthz" <<'PY'
import sys, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
then
  echo "the playback service did not start; its log ($home/serve.log):" >&2
  tail -20 "$home/serve.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi
shaka_note=""
if [[ ! -f node_modules/shaka-player/dist/shaka-player.compiled.js ]]; then
  shaka_note="  (Shaka Player is not installed here: run 'make browser-deps' (npm ci) in $(pwd) first; the page says so too)"
fi
cat <<MSG

The playback service is running at $url (log: $home/serve.log).
Open this page to play the encrypted title in a browser (Shaka Player, ClearKey; DASH, add
?format=hls for HLS):
  $url/play/demo
$shaka_note
The media engineers' console (titles, QC, ladder, renditions, recent ingest runs): $url/console
MSG
if [[ -t 0 && -t 1 ]]; then
  echo "Press Ctrl-C to stop the service."
  trap 'kill "$pid" 2>/dev/null; rm -f "$pidfile"; echo; echo "service stopped"' INT TERM
  wait "$pid" || true
else
  echo "It keeps running in the background (pid $pid); stop it with: kill \$(cat $pidfile)"
fi
