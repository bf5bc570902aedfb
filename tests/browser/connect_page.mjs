// Drives examples/web (the Connect / gRPC-Web page) in headless Chromium (Debian's) with playwright-core.
// Usage: node connect_page.mjs URL IDS [--protocol connect|connect-proto|grpc-web] [--stop-after N]
//        [--screenshot FILE] [--runs N]   (N runs: prints each run's first-item latency too)
// Prints one JSON object: what a person would have seen.
import { chromium } from 'playwright-core';

const [url, ids, ...rest] = process.argv.slice(2);
const option = (name) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
const protocol = option('--protocol') ?? 'connect';
const stopAfter = option('--stop-after');
const screenshot = option('--screenshot');
const runs = Number(option('--runs') ?? 1);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 560 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(url);
  await page.selectOption('#protocol', protocol);
  await page.fill('#ids', ids);
  const firsts = [];
  let seen;
  for (let run = 0; run < runs; run += 1) {
    await page.click('#process');
    if (stopAfter !== undefined) {
      await page.waitForFunction((n) => document.querySelectorAll('#results tr').length >= n, Number(stopAfter));
      await page.click('#stop');
    }
    await page.waitForFunction(() => ['complete', 'failed', 'stopped'].includes(document.querySelector('#state').textContent),
                               null, { timeout: 30000 });
    seen = await page.evaluate(() => ({
      state: document.querySelector('#state').textContent,
      rows: [...document.querySelectorAll('#results tr')].map((row) => row.dataset.id),
      count: document.querySelector('#count').textContent,
      first: document.querySelector('#first').textContent,
      error: document.querySelector('#error').textContent,
    }));
    firsts.push(seen.first);
  }
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...seen, firsts, errors }));
} finally {
  await browser.close();
}
