// Drives the service's web page in headless Chromium (Debian's) with playwright-core.
// Usage: node page.mjs URL IDS [--service orders|files] [--screenshot FILE] [--stop-after N] [--hold]
//        node page.mjs URL IDS --event-source   (the GET form, read by the browser's own EventSource)
// Prints one JSON object: what a person would have seen. --hold: then keeps the browser (and the page)
// open until a line arrives on stdin, so that a test can look at the server meanwhile.
import { chromium } from 'playwright-core';

const [url, ids, ...rest] = process.argv.slice(2);
const option = (name) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
const screenshot = option('--screenshot');
const stopAfter = option('--stop-after');
const service = option('--service') ?? 'orders';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  await page.goto(url);
  if (rest.includes('--event-source')) {
    const query = new URLSearchParams(ids.split(' ').map((id) => ['order_ids', id]));
    const events = await page.evaluate((source) => new Promise((resolve, reject) => {
      const seen = [];
      const stream = new EventSource(source);
      for (const name of ['start', 'progress', 'complete']) {
        stream.addEventListener(name, (message) => {
          seen.push({ event: name, id: message.lastEventId, data: JSON.parse(message.data) });
          if (name === 'complete') { stream.close(); resolve(seen); }
        });
      }
      stream.onerror = () => { stream.close(); reject(new Error('EventSource failed')); };
    }), `/v1/orders:process?${query}`);
    console.log(JSON.stringify({ events }));
  } else {
  await page.selectOption('#service', service);
  await page.fill('#ids', ids);
  await page.click('#process');
  if (stopAfter !== undefined) {
    await page.waitForFunction((n) => document.querySelectorAll('#results tr').length >= n, Number(stopAfter));
    await page.click('#stop');
  } else {
    await page.waitForFunction(() => ['complete', 'failed'].includes(document.querySelector('#state').textContent),
                               null, { timeout: 30000 });
  }
  const seen = await page.evaluate(() => ({
    state: document.querySelector('#state').textContent,
    rows: [...document.querySelectorAll('#results tr')].map((row) => row.dataset.id),
    bar: { value: document.querySelector('#bar').value, max: document.querySelector('#bar').max },
    count: document.querySelector('#count').textContent,
    elapsed: document.querySelector('#elapsed').textContent,
    error: document.querySelector('#error').textContent,
  }));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
  if (rest.includes('--hold')) {
    await new Promise((resolve) => { process.stdin.once('data', resolve); process.stdin.once('end', resolve); });
    process.stdin.destroy();
  }
  }
} finally {
  await browser.close();
}
