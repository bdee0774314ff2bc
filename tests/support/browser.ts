// A real browser for the tests that look at a screen as a person would (the Temporal UI, Label
// Studio): Debian's Chromium, headless, driven by playwright-core. The flags keep it off the network
// beyond localhost (this machine's network is closed; without them Chromium keeps dialling Google).
import { access } from 'node:fs/promises';
import { chromium, type Browser } from 'playwright-core';

const CHROMIUM_PATHS = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];

async function chromiumPath(): Promise<string> {
  for (const candidate of CHROMIUM_PATHS) {
    if (candidate === undefined || candidate === '') continue;
    try {
      await access(candidate);
      return candidate;
    } catch {
      // the next one
    }
  }
  throw new Error(
    "Chromium is not installed: install Debian's package (`apt-get install chromium`, as .ci/run does) or set CHROMIUM_PATH",
  );
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: await chromiumPath(),
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}
