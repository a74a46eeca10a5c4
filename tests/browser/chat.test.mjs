// The chat page end to end: the real edgeim binary on loopback ports, driven
// by Debian's headless Chromium through playwright-core. alice and bob log in
// from two browser contexts and chat both ways with receipts; bob leaves, alice
// writes, bob comes back and gets it; markup in a text stays text; the pages
// recover when the server restarts; bob's dot follows his logout and login
// within 2 s (presence frames); alice makes a group with bob and carol and the
// three chat in it, with "✓✓ 2/2" that survives a reload; a draft and the open
// conversation survive a reload; a mistyped recipient does not become a contact.
//
// Run by .ci/run after `cargo build`:  node --test tests/browser/
// EDGEIM_BIN  the binary (default target/debug/edgeim, relative to the repo root)
// CHROMIUM    the browser (default /usr/bin/chromium)
// Screenshots of every step, and the server's log, go to target/browser-test/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(REPO, process.env.EDGEIM_BIN || 'target/debug/edgeim');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.join(REPO, 'target', 'browser-test');

/** How long any one thing may take to happen. */
const WAIT = 15_000;
/** How long the pages may take to come back after the server restarts: the
 *  page's backoff reaches 8-10 s (plus jitter) after a few refused attempts. */
const RECONNECT_WAIT = 30_000;
/** A whole step. */
const STEP_TIMEOUT = 120_000;

/** Chromium flags for this machine (a closed network, running as root). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const PASSWORDS = { alice: 'pw-alice-browser', bob: 'pw-bob-browser', carol: 'pw-carol-browser' };
/** How soon a dot must follow a login or logout (issue 13). */
const PRESENCE_WAIT = 2_000;
const GROUP = '#night-shift';
/** The integration key, for POST /api/system/message. */
const API_KEY = 'browser-test-api-key-0123456789';
const XSS = '<img src=x onerror=alert(1)>';

// ---- the server ----

/** Runs `edgeim ARGS` to completion with `input` on stdin. */
function runBin(args, input = '') {
  const r = spawnSync(BIN, args, { input, encoding: 'utf8', timeout: WAIT, env: serverEnv() });
  assert.equal(r.error, undefined, `edgeim ${args.join(' ')}: ${r.error}`);
  assert.equal(r.status, 0, `edgeim ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

function serverEnv() {
  const env = { ...process.env };
  delete env.EDGEIM_LOG;
  return env;
}

/** One `edgeim serve` process; its stderr lines are kept and written to a log file. */
class Server {
  constructor(config, logFile) {
    this.config = config;
    this.logFile = logFile;
    this.child = null;
  }

  /** Starts the server and waits for the two `listening` lines. */
  async start() {
    assert.equal(this.running(), false, 'the previous server is still running');
    const child = spawn(BIN, ['serve', '--config', this.config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: serverEnv(),
    });
    this.child = child;
    this.lines = [];
    this.waiters = [];
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        resolve({ code, signal });
        for (const w of this.waiters) w.fail(new Error(`edgeim exited (${code ?? signal})`));
      });
    });
    child.on('error', (e) => {
      for (const w of this.waiters) w.fail(e);
    });
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      this.lines.push(line);
      fs.appendFileSync(this.logFile, `${line}\n`);
      for (const w of this.waiters) w.check(line);
    });
    fs.appendFileSync(this.logFile, `---- edgeim serve --config ${this.config} (pid ${child.pid})\n`);
    const http = await this.waitForLine(/http listening on (\S+)/);
    const ws = await this.waitForLine(/websocket listening on (ws:\/\/\S+)/);
    assert.match(http, /^127\.0\.0\.1:[1-9]\d*$/, 'the real HTTP address');
    assert.match(ws, /^ws:\/\/127\.0\.0\.1:[1-9]\d*\/websocket$/, 'the real WebSocket address');
    return { http, ws };
  }

  running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first group of the first log line (of this process) matching `re`. */
  waitForLine(re, timeout = WAIT) {
    const seen = this.lines.map((l) => l.match(re)).find(Boolean);
    if (seen) return Promise.resolve(seen[1]);
    if (!this.running()) return Promise.reject(new Error(`edgeim is not running; no ${re} in its log`));
    return new Promise((resolve, reject) => {
      const w = {
        check: (line) => {
          const m = line.match(re);
          if (m) done(null, m[1]);
        },
        fail: (e) => done(e),
      };
      const timer = setTimeout(
        () => done(new Error(`no ${re} in the log within ${timeout} ms:\n${this.lines.join('\n')}`)),
        timeout,
      );
      const done = (err, value) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        if (err) reject(err);
        else resolve(value);
      };
      this.waiters.push(w);
    });
  }

  /** SIGTERM, and the exit status (must be 0) within WAIT. */
  async stop() {
    assert.equal(this.running(), true, 'the server runs');
    this.child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`edgeim did not exit within ${WAIT} ms of SIGTERM`)), WAIT);
    });
    try {
      const st = await Promise.race([this.exited, timeout]);
      assert.deepEqual(st, { code: 0, signal: null }, `exit after SIGTERM:\n${this.lines.join('\n')}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** For cleanup: whatever state it is in, it is gone afterwards. */
  async kill() {
    if (!this.running()) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

// ---- the pages ----

/** A RegExp matching exactly `s` (Playwright compares normalised text). */
function exact(s) {
  return new RegExp(`^${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

/** Watches every page for problems: console errors, uncaught exceptions, CSP
 *  violations, dialogs. A network error while the server is down on purpose
 *  is expected and kept apart. */
const problems = [];
const tolerated = [];
let serverDown = false;
const NETWORK_ERROR =
  /net::ERR_CONNECTION_REFUSED|net::ERR_CONNECTION_RESET|net::ERR_EMPTY_RESPONSE|WebSocket connection to '[^']*' failed/;

function problem(user, kind, text) {
  const line = `${user}: ${kind}: ${text}`;
  if (serverDown && kind === 'console error' && NETWORK_ERROR.test(text)) tolerated.push(line);
  else problems.push(line);
}

/** Runs in every page before its own scripts (injected by the browser, so
 *  the page's CSP does not apply): reports CSP violations, and records every
 *  text each own message's `.status` showed, so a ✓ that turns into ✓✓ a
 *  moment later is still seen. */
function pageProbe() {
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__edgeimProblem(
      'csp violation',
      `${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`,
    );
  });
  const history = {};
  window.__edgeimStatusHistory = history;
  const scan = () => {
    for (const li of document.querySelectorAll('#messages li.msg.mine[data-id]')) {
      const status = li.querySelector('.status');
      const text = status ? status.textContent : '';
      const h = (history[li.dataset.id] ??= []);
      if (h[h.length - 1] !== text) h.push(text);
    }
  };
  new MutationObserver(scan).observe(document, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
  });
}

let browser;
let base;
const users = {}; // name -> { name, context, page }

/** A new browser context (a new profile: new localStorage, so a new
 *  clientName) with one page at the chat page, not yet logged in. */
async function openBrowser(name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  await context.exposeBinding('__edgeimProblem', (_source, kind, text) => problem(name, kind, text));
  await context.addInitScript(pageProbe);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problem(name, 'console error', `${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problem(name, 'page error', e.stack || e.message));
  page.on('dialog', (d) => {
    problem(name, 'dialog', `${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  const u = { name, context, page };
  users[name] = u;
  return u;
}

async function closeBrowser(u) {
  delete users[u.name];
  await u.context.close();
}

/** Screenshots of every open page: target/browser-test/NN-step-user.png. */
async function shot(step) {
  for (const u of Object.values(users)) {
    await u.page.screenshot({ path: path.join(OUT, `${step}-${u.name}.png`), fullPage: true });
  }
}

async function connState(page, state, timeout = WAIT) {
  await page.locator('#conn-state').filter({ hasText: exact(state) }).waitFor({ timeout });
}

/** Waits until the page shows it lost the server: `connecting` or `offline`. */
async function notConnected(page) {
  await page.locator('#conn-state').filter({ hasText: /^(connecting|offline)$/ }).waitFor();
}

async function logIn(u) {
  const resp = await u.page.goto(base);
  assert.equal(resp.status(), 200, 'GET /');
  await fillLogin(u);
  await connState(u.page, 'connected');
  await u.page.locator('#me').filter({ hasText: exact(u.name) }).waitFor();
  await u.page.locator('#login-form').waitFor({ state: 'hidden' });
  const error = (await u.page.locator('#login-error').textContent()) ?? '';
  assert.equal(error.trim(), '', '#login-error after a good login');
  for (const who of ['alice', 'bob', 'SYSTEM']) {
    await u.page.locator(`#contacts li[data-user="${who}"]`).waitFor();
  }
  return resp;
}

/** Fills in and sends the login form already on the page. */
async function fillLogin(u) {
  await u.page.fill('#login-username', u.name);
  await u.page.fill('#login-password', PASSWORDS[u.name]);
  await u.page.click('#login-submit');
}

/** Reloads the page and waits until it is connected again. */
async function reload(u) {
  const resp = await u.page.reload();
  assert.equal(resp.status(), 200, 'reload');
  await connState(u.page, 'connected');
}

function contact(page, who) {
  return page.locator(`#contacts li[data-user="${who}"]`);
}

/** A group's item in the sidebar (`id` is `#name`). */
function groupItem(page, id) {
  return page.locator(`#contacts li[data-conv="${id}"]`);
}

async function openGroup(page, id) {
  await groupItem(page, id).click();
  await page.locator(`#conversation[data-with="${id}"]`).waitFor();
  assert.equal(await page.locator('#to').inputValue(), id, '#to after opening a group');
}

async function openConversation(page, who) {
  await contact(page, who).click();
  await page.locator(`#conversation[data-with="${who}"]`).waitFor();
  assert.equal(await page.locator('#to').inputValue(), who, '#to after opening a conversation');
}

/** Writes `text` in the composer and sends it with the button or Enter. */
async function send(page, text, how = 'button') {
  await page.fill('#text', text);
  if (how === 'enter') await page.press('#text', 'Enter');
  else await page.click('#send');
}

/** The `li.msg.KIND` in #messages whose `.text` is exactly `text`. */
function message(page, kind, text) {
  return page
    .locator(`#messages li.msg.${kind}`)
    .filter({ has: page.locator('.text').filter({ hasText: exact(text) }) });
}

async function statusShows(page, text, status, timeout = WAIT) {
  await message(page, 'mine', text).locator('.status').filter({ hasText: exact(status) }).waitFor({ timeout });
}

/** Every text the `.status` of the own message `text` has shown, in order. */
async function statusHistory(page, text) {
  const id = await message(page, 'mine', text).getAttribute('data-id');
  assert.ok(id, `data-id of "${text}"`);
  return page.evaluate((i) => window.__edgeimStatusHistory[i] ?? [], id);
}

/** Asserts ✓ appeared, and ✓✓ after it, and no error text. */
async function assertTicks(page, text) {
  await statusShows(page, text, '✓✓');
  const shown = (await statusHistory(page, text)).filter((s) => s !== '');
  assert.deepEqual(shown, ['✓', '✓✓'], `the .status of "${text}" showed, in order`);
}

/** Waits until `who`'s unread count on `page` is at least 1. */
async function unreadFrom(page, who) {
  await contact(page, who).locator('.unread').filter({ hasText: /^[1-9]\d*$/ }).waitFor();
}

/** Waits until `who`'s unread count is hidden or empty. */
async function noUnreadFrom(page, who) {
  await contact(page, who).locator('.unread:visible').filter({ hasText: /\S/ }).waitFor({ state: 'detached' });
}

// ---- the test ----

describe('the chat page in a real browser', { timeout: 10 * STEP_TIMEOUT }, () => {
  let tmp;
  let config;
  let server;
  let ports;
  let broken = null;

  function writeConfig(httpListen, wsListen) {
    fs.writeFileSync(
      config,
      `data_dir = ${JSON.stringify(path.join(tmp, 'data'))}\n\n` +
        `[http]\nlisten = "${httpListen}"\n\n[websocket]\nlisten = "${wsListen}"\n\n` +
        `[api]\nkey = "${API_KEY}"\n`,
    );
  }

  /** One step: skipped once an earlier one failed; checked for page problems
   *  afterwards; on failure, screenshots of every page as NN-FAILED-user.png. */
  function step(name, fn) {
    it(name, { timeout: STEP_TIMEOUT }, async (t) => {
      if (broken) {
        t.skip(`an earlier step failed: ${broken}`);
        return;
      }
      try {
        await fn();
        assert.deepEqual(problems, [], 'console errors, page errors, CSP violations or dialogs');
      } catch (e) {
        broken = name;
        await shot(`${name.slice(0, 2)}-FAILED`).catch(() => {});
        throw e;
      }
    });
  }

  before(async () => {
    assert.ok(fs.existsSync(BIN), `no edgeim binary at ${BIN}: run cargo build (or set EDGEIM_BIN)`);
    assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
    fs.mkdirSync(OUT, { recursive: true });
    for (const f of fs.readdirSync(OUT)) {
      if (f.endsWith('.png') || f === 'server.log') fs.rmSync(path.join(OUT, f));
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeim-browser-'));
    config = path.join(tmp, 'edgeim.toml');
    writeConfig('127.0.0.1:0', '127.0.0.1:0');
    for (const [name, pw] of Object.entries(PASSWORDS)) {
      runBin(['user', 'add', name, '--config', config], `${pw}\n`);
    }
    server = new Server(config, path.join(OUT, 'server.log'));
    // Should the runner end this process before `after` ran: no server stays behind.
    process.on('exit', () => {
      if (server.running()) server.child.kill('SIGKILL');
    });
    ports = await server.start();
    // The restart must come back on the same addresses the pages know.
    writeConfig(ports.http, ports.ws.replace(/^ws:\/\//, '').replace(/\/websocket$/, ''));
    base = `http://${ports.http}/`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_ARGS,
      timeout: WAIT,
    });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.kill();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    if (tolerated.length) console.log(`expected network errors while the server was down:\n${tolerated.join('\n')}`);
  });

  step('01 alice and bob log in', async () => {
    const alice = await openBrowser('alice');
    const bob = await openBrowser('bob');
    const resp = await logIn(alice);
    const csp = resp.headers()['content-security-policy'];
    assert.ok(csp, 'the page has a Content-Security-Policy header');
    const directives = csp.split(';').map((d) => d.trim().replace(/\s+/g, ' '));
    assert.ok(directives.includes("default-src 'none'"), `default-src 'none' in: ${csp}`);
    await logIn(bob);
    // Both are online, and alice's page noticed bob came online after her.
    await contact(alice.page, 'bob').locator('.dot.online').waitFor({ timeout: RECONNECT_WAIT });
    await contact(bob.page, 'alice').locator('.dot.online').waitFor({ timeout: RECONNECT_WAIT });
    await shot('01-logged-in');
  });

  step('02 alice sends to bob: ✓ then ✓✓, bob sees it', async () => {
    const { alice, bob } = users;
    await openConversation(alice.page, 'bob');
    await send(alice.page, 'hello bob');
    // bob has no conversation open: the message shows as unread from alice.
    await unreadFrom(bob.page, 'alice');
    await assertTicks(alice.page, 'hello bob');
    await shot('02-alice-sent');
    await openConversation(bob.page, 'alice');
    await message(bob.page, 'theirs', 'hello bob').waitFor();
    await noUnreadFrom(bob.page, 'alice');
    await shot('02-bob-reads');
  });

  step('03 bob replies and alice sees it', async () => {
    const { alice, bob } = users;
    await send(bob.page, 'hi alice', 'enter');
    await message(alice.page, 'theirs', 'hi alice').waitFor();
    await assertTicks(bob.page, 'hi alice');
    await shot('03-bob-replied');
  });

  step('04 bob leaves, alice writes, bob logs in again and gets it', async () => {
    const { alice, bob } = users;
    await closeBrowser(bob);
    await contact(alice.page, 'bob').locator('.dot.offline').waitFor({ timeout: RECONNECT_WAIT });
    await send(alice.page, 'are you there?');
    await statusShows(alice.page, 'are you there?', '✓');
    await shot('04-bob-gone');
    // A new profile: a new clientName, which gets what no client acknowledged.
    const bob2 = await openBrowser('bob');
    await logIn(bob2);
    await unreadFrom(bob2.page, 'alice');
    await assertTicks(alice.page, 'are you there?');
    await contact(alice.page, 'bob').locator('.dot.online').waitFor({ timeout: RECONNECT_WAIT });
    await shot('04-bob-back');
    await openConversation(bob2.page, 'alice');
    await message(bob2.page, 'theirs', 'are you there?').waitFor();
    await shot('04-bob-reads');
  });

  step('05 markup in a text is shown as text', async () => {
    const { alice, bob } = users;
    await send(alice.page, XSS);
    const theirs = message(bob.page, 'theirs', XSS);
    await theirs.waitFor();
    assert.equal(await theirs.locator('.text').textContent(), XSS, "bob's .text");
    await assertTicks(alice.page, XSS);
    assert.equal(await message(alice.page, 'mine', XSS).locator('.text').textContent(), XSS, "alice's .text");
    for (const u of [alice, bob]) {
      assert.equal(await u.page.locator('#messages img').count(), 0, `an img in ${u.name}'s #messages`);
    }
    await shot('05-markup-as-text');
  });

  step('06 the pages recover after the server restarts', async () => {
    const { alice, bob } = users;
    serverDown = true;
    await server.stop();
    await notConnected(alice.page);
    await notConnected(bob.page);
    // Disconnected, the page knows nobody is online: every dot is grey.
    for (const who of ['alice', 'bob']) {
      await contact(alice.page, who).locator('.dot.offline').waitFor();
    }
    // Written while the server is down: pending, sent after the reconnect.
    await send(alice.page, 'written while the server was down');
    const pending = message(alice.page, 'mine', 'written while the server was down');
    await pending.waitFor();
    assert.equal((await pending.locator('.status').textContent()).trim(), '', 'the status while pending');
    await shot('06-server-down');
    const again = await server.start();
    assert.deepEqual(again, ports, 'the restarted server is on the same addresses');
    await connState(alice.page, 'connected', RECONNECT_WAIT);
    await connState(bob.page, 'connected', RECONNECT_WAIT);
    serverDown = false;
    await message(bob.page, 'theirs', 'written while the server was down').waitFor();
    await assertTicks(alice.page, 'written while the server was down');
    assert.equal(
      await message(bob.page, 'theirs', 'written while the server was down').count(),
      1,
      'the message written while the server was down shows once',
    );
    await send(alice.page, 'back again');
    await message(bob.page, 'theirs', 'back again').waitFor();
    await assertTicks(alice.page, 'back again');
    await send(bob.page, 'welcome back', 'enter');
    await message(alice.page, 'theirs', 'welcome back').waitFor();
    await assertTicks(bob.page, 'welcome back');
    await shot('06-after-restart');
  });

  step('07 bob\'s dot in alice\'s page follows his logout and login within 2 s', async () => {
    const { alice, bob } = users;
    await contact(alice.page, 'bob').locator('.dot.online').waitFor();
    await bob.page.click('#logout');
    await bob.page.locator('#login-form').waitFor();
    await contact(alice.page, 'bob').locator('.dot.offline').waitFor({ timeout: PRESENCE_WAIT });
    await shot('07-bob-logged-out');
    await fillLogin(bob);
    await connState(bob.page, 'connected');
    await contact(alice.page, 'bob').locator('.dot.online').waitFor({ timeout: PRESENCE_WAIT });
    await shot('07-bob-logged-in');
  });

  step('08 alice creates a group with bob and carol, and all three chat in it', async () => {
    const { alice, bob } = users;
    const carol = await openBrowser('carol');
    await logIn(carol);
    await alice.page.click('#new-group');
    await alice.page.locator('#group-dialog').waitFor();
    await alice.page.fill('#group-title', 'Night shift');
    assert.equal(await alice.page.inputValue('#group-name'), 'night-shift', 'the name suggested by the title');
    await alice.page.check('#group-member-picks input[value="bob"]');
    await alice.page.check('#group-member-picks input[value="carol"]');
    await shot('08-new-group');
    await alice.page.click('#group-create');
    await alice.page.locator(`#conversation[data-with="${GROUP}"]`).waitFor();
    await alice.page.locator('#conv-title').filter({ hasText: exact('Night shift') }).waitFor();
    // The group's announcement shows in the group, apart from the texts.
    await alice.page.locator('#messages li.msg.announce').first().waitFor();
    await send(alice.page, 'hello team');
    for (const u of [bob, carol]) {
      await groupItem(u.page, GROUP).filter({ hasText: 'Night shift' }).waitFor();
      await openGroup(u.page, GROUP);
      await u.page.locator('#messages li.msg.announce').first().waitFor();
      await message(u.page, 'theirs', 'hello team').waitFor();
    }
    await statusShows(alice.page, 'hello team', '✓✓ 2/2');
    await send(bob.page, 'hi from bob', 'enter');
    await send(carol.page, 'hi from carol', 'enter');
    for (const [u, texts] of [
      [alice, ['hi from bob', 'hi from carol']],
      [bob, ['hi from carol']],
      [carol, ['hi from bob']],
    ]) {
      for (const t of texts) await message(u.page, 'theirs', t).waitFor();
    }
    await statusShows(bob.page, 'hi from bob', '✓✓ 2/2');
    await statusShows(carol.page, 'hi from carol', '✓✓ 2/2');
    // The group's announcements are not the server's notices to the user.
    assert.equal(await contact(bob.page, 'SYSTEM').locator('.unread:visible').count(), 0, "bob's System unread");
    await shot('08-group-chat');
  });

  step('09 carol\'s page shows ✓✓ 2/2 on her text after a reload', async () => {
    const { carol } = users;
    await reload(carol);
    // The open conversation came back, and history says who received what.
    await carol.page.locator(`#conversation[data-with="${GROUP}"]`).waitFor();
    await statusShows(carol.page, 'hi from carol', '✓✓ 2/2');
    await message(carol.page, 'theirs', 'hello team').waitFor();
    await carol.page.locator('#messages li.day-sep').first().waitFor();
    await shot('09-carol-reloaded');
  });

  step('10 a draft survives a reload', async () => {
    const { alice } = users;
    const draft = 'a thought for the team, not sent yet';
    await alice.page.fill('#text', draft);
    await openConversation(alice.page, 'bob');
    assert.equal(await alice.page.inputValue('#text'), '', "bob's conversation has no draft");
    await openGroup(alice.page, GROUP);
    assert.equal(await alice.page.inputValue('#text'), draft, "the group's draft, back");
    await reload(alice);
    await alice.page.locator(`#conversation[data-with="${GROUP}"]`).waitFor();
    assert.equal(await alice.page.inputValue('#text'), draft, 'the draft after a reload');
    await shot('10-draft-kept');
    await alice.page.fill('#text', '');
  });

  step('11 a recipient typed wrong is refused and does not become a contact', async () => {
    const { alice } = users;
    await alice.page.fill('#to', 'bobb');
    await send(alice.page, 'to a typo');
    await alice.page.locator('#composer-error').filter({ hasText: /bobb/ }).waitFor();
    assert.equal(await alice.page.inputValue('#text'), 'to a typo', 'the text is back in the composer');
    assert.equal(await contact(alice.page, 'bobb').count(), 0, 'a contact for the typo');
    assert.equal(await message(alice.page, 'mine', 'to a typo').count(), 0, 'the refused text in a conversation');
    await shot('11-typo-refused');
    // Several people in To: the page offers a group of them instead.
    await alice.page.fill('#to', 'bob, carol');
    await send(alice.page, 'to two people');
    await alice.page.locator('#suggest-group').waitFor();
    await alice.page.click('#suggest-group-create');
    await alice.page.locator('#group-dialog').waitFor();
    for (const who of ['bob', 'carol']) {
      assert.equal(await alice.page.isChecked(`#group-member-picks input[value="${who}"]`), true, `${who} picked`);
    }
    await alice.page.click('#group-cancel');
    await alice.page.locator('#group-dialog').waitFor({ state: 'hidden' });
    assert.equal(await message(alice.page, 'mine', 'to two people').count(), 0, 'a text to two people sent anyway');
    await alice.page.fill('#text', '');
  });

  step('12 alice removes carol and adds her back; bob leaves the group', async () => {
    const { alice, bob, carol } = users;
    await openGroup(alice.page, GROUP);
    await alice.page.click('#group-members');
    const members = alice.page.locator('#members-list li');
    await members.filter({ hasText: /^carol/ }).waitFor();
    assert.equal(await members.count(), 3, 'members listed');
    await alice.page.click('#members-list button[aria-label="Remove carol"]');
    await members.filter({ hasText: /^carol/ }).waitFor({ state: 'detached' });
    // Removed, carol still gets the announcement, and her page knows.
    await carol.page.locator('#messages li.msg.announce').filter({ hasText: 'alice removed carol' }).waitFor();
    await carol.page.locator('#conv-sub').filter({ hasText: /not a member/ }).waitFor();
    await alice.page.selectOption('#members-add-user', 'carol');
    await alice.page.click('#members-add-button');
    await members.filter({ hasText: /^carol/ }).waitFor();
    await carol.page.locator('#messages li.msg.announce').filter({ hasText: 'alice added carol' }).waitFor();
    await carol.page.locator('#group-members').waitFor();
    await shot('12-members');
    await alice.page.click('#members-close');
    await bob.page.click('#group-members');
    await bob.page.click('#members-leave');
    await groupItem(bob.page, GROUP).waitFor({ state: 'detached' });
    await alice.page.locator('#messages li.msg.announce').filter({ hasText: 'bob left' }).waitFor();
    await alice.page.locator('#conv-sub').filter({ hasText: /2 members/ }).waitFor();
    await shot('12-bob-left');
  });

  step('13 unread counts and the new-messages divider survive a reload', async () => {
    const { alice, bob } = users;
    await openConversation(alice.page, 'bob');
    await send(alice.page, 'unread one');
    await send(alice.page, 'unread two');
    await statusShows(alice.page, 'unread two', '✓✓');
    // bob's page has no conversation open (he left the group): both are unread.
    await contact(bob.page, 'alice').locator('.unread').filter({ hasText: exact('2') }).waitFor();
    await reload(bob);
    await contact(bob.page, 'alice').locator('.unread').filter({ hasText: exact('2') }).waitFor();
    await openConversation(bob.page, 'alice');
    await noUnreadFrom(bob.page, 'alice');
    // The divider stands right before the first of the two.
    const next = bob.page.locator('#messages li.new-divider + li.msg');
    await next.filter({ has: bob.page.locator('.text').filter({ hasText: exact('unread one') }) }).waitFor();
    await shot('13-unread-divider');
    await reload(bob);
    await bob.page.locator('#conversation[data-with="alice"]').waitFor();
    assert.equal(await contact(bob.page, 'alice').locator('.unread:visible').count(), 0, 'unread after reading and a reload');
  });

  step('14 history pages back by seq to the very first message, in order', async () => {
    const { carol } = users;
    const N = 70;
    for (let i = 0; i < N; i++) {
      const r = await fetch(`${base}api/system/message`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ to: 'carol', body: `notice ${i}` }),
      });
      assert.equal(r.status, 200, `POST /api/system/message: ${await r.text()}`);
    }
    await contact(carol.page, 'SYSTEM').locator('.unread').filter({ hasText: exact(String(N)) }).waitFor();
    await contact(carol.page, 'SYSTEM').click();
    await carol.page.locator('#conversation[data-with="SYSTEM"]').waitFor();
    await message(carol.page, 'system', `notice ${N - 1}`).waitFor();
    // After a reload the conversation comes from history: one page, then the rest.
    await reload(carol);
    await carol.page.locator('#conversation[data-with="SYSTEM"]').waitFor();
    const shown = carol.page.locator('#messages li.msg.system .text');
    await message(carol.page, 'system', `notice ${N - 1}`).waitFor();
    assert.equal(await shown.count(), 50, 'the first page');
    await carol.page.click('#load-older');
    await carol.page.locator('#load-older').filter({ hasText: 'No older messages' }).waitFor();
    assert.deepEqual(
      await shown.allTextContents(),
      Array.from({ length: N }, (_, i) => `notice ${i}`),
      'every notice once, oldest first',
    );
    await shot('14-history-paged');
  });
});
