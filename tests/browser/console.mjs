// Opens the service's /console in Debian's headless Chromium, follows the link of one title and
// waits until the player embedded in that title's page has played `until_s` seconds; prints JSON:
// the titles listed, the title page's headings and rung rows, and the player's state.
//
//   node tests/browser/console.mjs '{"url": "http://127.0.0.1:PORT/console", "title": "ID", "until_s": 2}'
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const opts = JSON.parse(process.argv[2]);
const profile = mkdtempSync(join(tmpdir(), "reelflow-chromium-"));
const log = [];
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.executable ?? "/usr/bin/chromium", headless: true, chromiumSandbox: false,
  args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});
let result = {};
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(opts.url, { waitUntil: "load", timeout: 60000 });
  result.titles = await page.$$eval("#titles tbody tr td:first-child", (cells) => cells.map((c) => c.textContent));
  await page.click(`#titles a:text-is("${opts.title}")`);
  await page.waitForSelector("#rungs", { timeout: 60000 });
  result.title_url = page.url();
  result.headings = await page.$$eval("h1, h2", (hs) => hs.map((h) => h.textContent));
  result.rungs = await page.$$eval("#rungs tbody tr", (rows) => rows.map((r) => r.textContent));
  const frame = page.frameLocator("iframe[title=player]");
  const video = frame.locator("video");
  try {
    await video.evaluate((v, until) => new Promise((resolve, reject) => {
      const check = () => (v.currentTime >= until ? resolve() : setTimeout(check, 200));
      check();
      setTimeout(() => reject(new Error("not played in time")), 60000);
    }), opts.until_s ?? 2);
  } catch (e) {
    log.push(`player: ${e.message}`);
  }
  result.played_s = await video.evaluate((v) => v.currentTime).catch(() => null);
  result.frames = await video.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames).catch(() => null);
  result.player_state = await frame.locator("body").evaluate((b) => b.dataset.state).catch(() => null);
} catch (e) {
  log.push(`error: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ ...result, log }) + "\n");
