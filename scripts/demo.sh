#!/usr/bin/env bash
# `make demo`: ingest a real clip with the embedded defaults and say where the stream is.
set -euo pipefail
cd "$(dirname "$0")/.."

clip="../shared/media/03_sintel_fight_10s_640x360.mp4"
if [[ ! -f "$clip" ]]; then
  # No ../shared here: make a 10 s clip with two hard cuts and a tone, with ffmpeg's lavfi.
  clip="reelflow-data/demo-source.mp4"
  mkdir -p reelflow-data
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

# Absolute paths throughout: ffmpeg's DASH demuxer doubles a relative manifest's folder when it
# resolves segment URLs, so a relative path printed here would not play.
storage="$(pwd)/reelflow-data/reelflow-output"
# In the clear: the players below read files, not the playback service's licenses.
reelflow ingest "$clip" --title-id demo --storage "$storage" --no-drm

# title.json names the package folder that is current (packages are versioned by content)
package=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['package'])" "$storage/titles/demo/title.json")
dash="$package/manifest.mpd"
hls="$package/master.m3u8"
cat <<MSG

Demo done. The title is in $package/:
  DASH manifest:  $dash
  HLS playlist:   $hls
  title record:   $storage/titles/demo/title.json
Play it with any player that reads DASH or HLS from files, if you have one (ffplay, mpv):
  ffplay $dash
  mpv $hls
Or check that it decodes with the bundled ffmpeg:
  $(python -c "from reelflow.infra.tools import ffmpeg_exe; print(ffmpeg_exe())") -i $dash -f null -
MSG
