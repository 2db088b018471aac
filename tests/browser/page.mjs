// Browser test of the HTML pages: loads the landing page, follows a check link, at desktop
// (1280 px) and phone (390 px) widths, light and dark. Fails on console errors, page errors,
// failed requests, or a layout wider than the viewport (document.documentElement.scrollWidth >
// innerWidth), also with every <details> opened. Screenshots go to the output folder.
//
//   node tests/browser/page.mjs http://127.0.0.1:9439/ target/browser
//
// Drives Debian's /usr/bin/chromium (CHROMIUM overrides) through playwright-core, with a fresh
// profile and the flags that keep it off the (closed) network.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base = 'http://127.0.0.1:9439/', out = 'target/browser'] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'redshift-exporter-browser-'));
const problems = [];

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  timeout: 60_000,
});

async function overflow(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  if (scroll > inner) problems.push(`${what}: the page is ${scroll} px wide in a ${inner} px viewport`);
}

async function openAllDetails(page) {
  await page.evaluate(() => document.querySelectorAll('details').forEach((d) => { d.open = true; }));
}

const views = [
  { name: 'desktop', width: 1280, height: 900, scheme: 'light' },
  { name: 'phone', width: 390, height: 844, scheme: 'light' },
  { name: 'phone-dark', width: 390, height: 844, scheme: 'dark' },
];
try {
  for (const v of views) {
    const page = await context.newPage();
    await page.setViewportSize({ width: v.width, height: v.height });
    await page.emulateMedia({ colorScheme: v.scheme });
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`${v.name}: console error: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`${v.name}: page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`${v.name}: request failed: ${r.url()}`));
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`${v.name}: ${r.status()} for ${r.url()}`); });

    const res = await page.goto(base, { waitUntil: 'load' });
    if (!res || res.status() !== 200) problems.push(`${v.name}: / answered ${res && res.status()}`);
    const title = await page.title();
    if (!title.includes('Redshift Exporter')) problems.push(`${v.name}: title ${title}`);
    if ((await page.locator('ul.att li').count()) === 0) problems.push(`${v.name}: nothing needs attention on the demo`);
    await overflow(page, `${v.name} /`);
    await page.screenshot({ path: join(out, `landing-${v.name}.png`) });
    await page.screenshot({ path: join(out, `landing-${v.name}-full.png`), fullPage: true });
    await openAllDetails(page);
    await overflow(page, `${v.name} / with every <details> open`);

    // Follow the first attention item's check link.
    const link = page.locator('ul.att a[href^="checks/"]').first();
    const href = await link.getAttribute('href');
    await Promise.all([page.waitForURL('**/checks/**'), link.click()]);
    if (!page.url().endsWith(href)) problems.push(`${v.name}: followed ${href}, landed on ${page.url()}`);
    if ((await page.locator('h2', { hasText: 'Last run' }).count()) !== 1) problems.push(`${v.name}: ${href} has no "Last run"`);
    await overflow(page, `${v.name} ${href}`);
    await page.screenshot({ path: join(out, `check-${v.name}.png`), fullPage: true });
    await openAllDetails(page);
    await overflow(page, `${v.name} ${href} with every <details> open`);
    // And back, by the page's own link.
    await Promise.all([page.waitForURL(base), page.locator('nav a', { hasText: 'Overview' }).click()]);
    await page.close();
  }
} catch (e) {
  problems.push(`browser run failed: ${e && e.stack || e}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`ok: screenshots in ${out}`);
