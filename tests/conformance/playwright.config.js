// Our Playwright config for the official Mercure conformance suite (tests/conformance/run copies
// it next to the suite, under target/conformance/, and runs `playwright test -c` with it). The
// suite's own playwright.config.ts wants three downloaded browsers, an html report and
// https://localhost; here: Debian's /usr/bin/chromium only, headless, one worker (the machine
// is small), a list report plus a JSON one the run script summarizes, BASE_URL the hub.
const { devices } = require('@playwright/test');
// The suite's .env: CUSTOM_ID=1 (the hub must answer a publish with the id it was given).
require('dotenv').config({ path: require('node:path').join(__dirname, '.env'), quiet: true });

if (!process.env.BASE_URL) throw new Error('BASE_URL is not set: tests/conformance/run sets it to the hub it starts');

module.exports = {
  testDir: __dirname,
  testMatch: 'mercure.spec.ts',
  timeout: 10 * 1000,
  expect: { timeout: 5000 },
  forbidOnly: true,
  retries: 0,
  workers: 1,
  reporter: [['list'], ['json', { outputFile: process.env.CONFORMANCE_JSON || 'results.json' }]],
  use: {
    baseURL: process.env.BASE_URL,
    actionTimeout: 0,
    trace: 'off',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        headless: true,
        launchOptions: {
          executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
          args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
            '--no-first-run', '--disable-background-networking', '--disable-component-update'],
        },
      },
    },
  ],
};
