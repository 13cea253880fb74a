// Plays one page in Debian's headless Chromium with Playwright and prints what happened as JSON.
//
//   node tests/browser/play.mjs '{"url": "...", "until_s": 5, "timeout_ms": 90000}'
//
// The page follows the contract of the service's /play page: document.body.dataset.state is
// loading|playing|ended|error and window.reelflow holds {play, player, error}. The script waits
// until the video has played `until_s` seconds, or the page says error, or the timeout, then
// reports the page's state, video time, decoded frames, the picture size changes the page logged,
// Shaka's variant tracks and error, the license and key requests the browser made (status, and the
// key ids a license answer held), and the console and page errors (for the test's assertion message).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const opts = JSON.parse(process.argv[2]);
const untilS = opts.until_s ?? 5;
const timeoutMs = opts.timeout_ms ?? 90000;
const profile = mkdtempSync(join(tmpdir(), "reelflow-chromium-"));
const log = [];
const drm = [];  // license and key responses
const stamp = () => (performance.now() / 1000).toFixed(2) + "s";

const context = await chromium.launchPersistentContext(profile, {  // a new, empty user data dir
  executablePath: opts.executable ?? "/usr/bin/chromium",
  headless: true,
  chromiumSandbox: false,  // --no-sandbox: we run as root
  args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});
let result;
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (m) => log.push(`${stamp()} console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`${stamp()} pageerror: ${e.message}`));
  page.on("requestfailed", (r) => log.push(`${stamp()} requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", async (r) => {
    const url = new URL(r.url());
    const kind = url.pathname.startsWith("/api/license") ? "license"
      : /\/keys\/[0-9a-f]{32}$/.test(url.pathname) ? "key" : null;
    if (r.status() >= 400 || kind) log.push(`${stamp()} ${r.request().method()} ${url.pathname} -> ${r.status()}`);
    if (!kind || r.request().method() === "OPTIONS") return;
    const entry = { kind, path: url.pathname, status: r.status(), kids: [] };
    drm.push(entry);
    if (kind === "license" && r.status() === 200) {
      try { entry.kids = ((await r.json()).keys || []).map((k) => k.kid); } catch (e) { entry.kids = ["?"]; }
    }
  });
  await page.goto(opts.url, { waitUntil: "load", timeout: timeoutMs });
  let timedOut = false;
  try {
    await page.waitForFunction((until) => {
      const v = document.querySelector("video");
      return document.body.dataset.state === "error" || (v && v.currentTime >= until && !v.error);
    }, untilS, { timeout: timeoutMs, polling: 200 });
  } catch (e) {
    timedOut = true;
    log.push(`${stamp()} timeout: ${e.message.split("\n")[0]}`);
  }
  const state = await page.evaluate(() => {
    const v = document.querySelector("video");
    const rf = window.reelflow || {};
    const player = rf.player;
    const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    return {
      state: document.body.dataset.state, error: rf.error || null, shaka_error: rf.shakaError || null,
      current_time: v ? v.currentTime : null, video_error: v && v.error ? v.error.message || String(v.error.code) : null,
      frames: q ? q.totalVideoFrames : null, dropped: q ? q.droppedVideoFrames : null,
      variants: player ? player.getVariantTracks().map((t) => ({ height: t.height, bandwidth: t.bandwidth,
                                                               active: t.active, codecs: t.codecs,
                                                               language: t.language, channels: t.channelsCount })) : [],
      audio_picker: rf.audio || null,
      sizes: rf.sizes || [],   // the page's log of picture size changes (player.html)
      key_system: player && player.keySystem ? player.keySystem() : null,
      play: rf.play ? { limits: rf.play.limits, license: rf.play.license } : null,
      origin: location.origin,
    };
  });
  result = { ...state, timed_out: timedOut, drm, log };
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
