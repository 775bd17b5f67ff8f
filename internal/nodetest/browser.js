// Drives Debian's Chromium with playwright-core: opens the BlogStack page on
// two nodes (A first, alone, then B), comments on the first, waits for the
// comment on the second, and saves a screenshot of both.
//   argv: URL_A URL_B SCREENSHOT_DIR
//   out:  {"ok": true, "seen": "<text>", "readersB": "<n>", "receiptA": "<text>",
//          "fleetAlone": "<A's fleet before B came>", "fleetA": "...", "fleetB": "...",
//          "nodeA": "<node of A's socket>", "nodeB": "..."} or {"error": "..."}
//   A fleet is the page's per-node reader list, items joined with "|".
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function main() {
  const [urlA, urlB, shots] = process.argv.slice(2);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "blogstack-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const a = await context.newPage();
    const b = await context.newPage();
    const fleet = (p) => p.evaluate(() => [...document.querySelectorAll("#fleet li")].map((li) => li.textContent).join("|"));
    const fleetItems = (p, n) => p.waitForFunction((n) => document.querySelectorAll("#fleet li").length === n, n);
    await a.goto(urlA + "/?post=7");
    await a.waitForFunction(() => document.getElementById("conn").textContent === "connected");
    await fleetItems(a, 1);
    const fleetAlone = await fleet(a);
    await b.goto(urlB + "/?post=7");
    await b.waitForFunction(() => document.getElementById("conn").textContent === "connected");
    await b.waitForFunction(() => document.getElementById("readers").textContent === "2");
    // A learns of B only by the push when B joins.
    await fleetItems(a, 2);
    await fleetItems(b, 2);
    const text = "hello from node A at " + Date.now();
    await a.fill("#text", text);
    await a.click("#send");
    await b.waitForFunction((t) => [...document.querySelectorAll("#comments li")].some((li) => li.textContent.startsWith(t)), text);
    const seen = await b.textContent("#comments li:last-child");
    // Both tabs confirmed the comment: A's receipt says so.
    await a.waitForFunction(() => document.getElementById("receipt").textContent.startsWith("Delivered"));
    const receiptA = await a.textContent("#receipt");
    await a.screenshot({ path: path.join(shots, "node-a.png"), fullPage: true });
    await b.screenshot({ path: path.join(shots, "node-b.png"), fullPage: true });
    out({
      ok: true, seen, readersB: await b.textContent("#readers"), receiptA,
      fleetAlone, fleetA: await fleet(a), fleetB: await fleet(b),
      nodeA: await a.textContent("#sockNode"), nodeB: await b.textContent("#sockNode"),
    });
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((err) => { out({ error: String(err && err.stack || err) }); process.exit(1); });
