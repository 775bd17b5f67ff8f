// Renders an SVG file to PNG with Debian's Chromium (playwright-core).
//   argv: IN.svg OUT.png
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

async function main() {
  const [input, output] = process.argv.slice(2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chart-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await ctx.newPage();
    await page.setContent(`<html><body style="margin:0">${fs.readFileSync(input, "utf8")}</body></html>`);
    await page.locator("svg").screenshot({ path: output });
  } finally {
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((err) => { console.error(err); process.exit(1); });
