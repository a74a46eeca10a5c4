// edgeim behind a real nginx that terminates TLS, with the config the README
// shows (packaging/nginx/edgeim.conf). The test makes a throwaway self-signed
// certificate for 127.0.0.1 with openssl, starts the real edgeim binary on
// loopback ports with websocket.public_url set to nginx's wss:// URL, and
// nginx in a temporary prefix on a free loopback port. Then, through nginx
// only: the page and /api/websocket/url name the wss:// URL; alice logs in as
// a browser (cookie) and bob as an app (token) over https://; both register
// over wss:// and chat both ways with 9001s and 9101 receipts; and the login
// throttle sees each client's own address, which nginx passes on in
// X-Forwarded-For. nginx and edgeim are stopped at the end, or killed.
//
// Run by .ci/run (step "TLS through nginx") after `cargo build`, from the
// repo root:  (cd tests/tls && npm ci) && node --test tests/tls/
// EDGEIM_BIN  the binary (default target/debug/edgeim, relative to the repo root)
// NGINX       nginx (default /usr/sbin/nginx: Debian's nginx package)
// OPENSSL     openssl (default openssl on the PATH)
// The logs of the server and of nginx go to target/tls-test/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(REPO, process.env.EDGEIM_BIN || 'target/debug/edgeim');
const NGINX = process.env.NGINX || '/usr/sbin/nginx';
const OPENSSL = process.env.OPENSSL || 'openssl';
const NGINX_CONF = path.join(REPO, 'packaging', 'nginx', 'edgeim.conf');
const OUT = path.join(REPO, 'target', 'tls-test');

/** How long any one thing may take to happen. */
const WAIT = 10_000;
const PASSWORDS = { alice: 'pw-alice-tls', bob: 'pw-bob-tls' };

// ---- processes ----

/** A child process whose stderr lines are kept, appended to a log file,
 *  and can be waited for. */
class Proc {
  /** `group`: the process gets a process group of its own, which
   *  killNow ends whole (nginx's workers with their master). */
  constructor(name, logFile, { group = false } = {}) {
    this.name = name;
    this.logFile = logFile;
    this.group = group;
    this.child = null;
    this.lines = [];
    this.waiters = [];
  }

  start(cmd, args) {
    fs.appendFileSync(this.logFile, `---- ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: childEnv(),
      detached: this.group,
    });
    this.child = child;
    this.lines = [];
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        resolve({ code, signal });
        for (const w of this.waiters) w.fail(new Error(`${this.name} exited (${code ?? signal}):\n${this.log()}`));
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
  }

  running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  log() {
    return this.lines.join('\n');
  }

  /** The first line (since start) matching `re`, once it is there. */
  waitForLine(re, timeout = WAIT) {
    const seen = this.lines.map((l) => l.match(re)).find(Boolean);
    if (seen) return Promise.resolve(seen);
    if (!this.running()) return Promise.reject(new Error(`${this.name} is not running; no ${re} in:\n${this.log()}`));
    return new Promise((resolve, reject) => {
      const w = {
        check: (line) => {
          const m = line.match(re);
          if (m) done(null, m);
        },
        fail: (e) => done(e),
      };
      const timer = setTimeout(
        () => done(new Error(`no ${re} from ${this.name} within ${timeout} ms:\n${this.log()}`)),
        timeout,
      );
      const done = (err, m) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        if (err) reject(err);
        else resolve(m);
      };
      this.waiters.push(w);
    });
  }

  /** Sends `signal` and waits (at most WAIT) for the exit; returns its status. */
  async stop(signal) {
    assert.equal(this.running(), true, `${this.name} runs`);
    this.child.kill(signal);
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} did not exit within ${WAIT} ms of ${signal}`)), WAIT);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** For cleanup: whatever state it is in, it is gone afterwards. */
  killNow() {
    if (!this.running()) return;
    if (this.group) process.kill(-this.child.pid, 'SIGKILL');
    else this.child.kill('SIGKILL');
  }
}

function childEnv() {
  const env = { ...process.env };
  delete env.EDGEIM_LOG;
  return env;
}

/** Runs a command to completion; its stdout. */
function run(cmd, args, input = '') {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: WAIT, env: childEnv() });
  assert.equal(r.error, undefined, `${cmd} ${args.join(' ')}: ${r.error}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** A loopback port nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- the nginx config ----

/** The one fenced nginx block of README.md. */
function readmeNginxBlock() {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```nginx\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1, 'README.md has one ```nginx block');
  return blocks[0];
}

/** `text` with `from` replaced by `to`, which must occur exactly once. */
function replaceOnce(text, from, to) {
  const n = text.split(from).length - 1;
  assert.equal(n, 1, `${path.relative(REPO, NGINX_CONF)} has \`${from.trim()}\` exactly once (found ${n})`);
  return text.replace(from, () => to);
}

/** packaging/nginx/edgeim.conf for this run: the listen port, the
 *  certificate paths and the upstream ports changed, nothing else. */
function serverBlock({ port, cert, key, httpPort, wsPort }) {
  let conf = fs.readFileSync(NGINX_CONF, 'utf8');
  conf = replaceOnce(conf, '    listen 443 ssl;', `    listen 127.0.0.1:${port} ssl;`);
  conf = replaceOnce(conf, '/etc/ssl/chat.example.org.crt;', `${cert};`);
  conf = replaceOnce(conf, '/etc/ssl/chat.example.org.key;', `${key};`);
  conf = replaceOnce(conf, 'proxy_pass http://127.0.0.1:8080;', `proxy_pass http://127.0.0.1:${httpPort};`);
  conf = replaceOnce(conf, 'proxy_pass http://127.0.0.1:8081;', `proxy_pass http://127.0.0.1:${wsPort};`);
  return conf;
}

/** The rest of an nginx.conf around the server block (Debian's
 *  /etc/nginx/nginx.conf plays this part): everything under `prefix`,
 *  in the foreground, errors to stderr, requests to target/tls-test/. */
function mainConfig(prefix, serverConf) {
  const p = (name) => JSON.stringify(path.join(prefix, name));
  return `daemon off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log stderr notice;
events {
    worker_connections 64;
}
http {
    access_log ${JSON.stringify(path.join(OUT, 'nginx-access.log'))};
    client_body_temp_path ${p('client_body')};
    proxy_temp_path ${p('proxy')};
    fastcgi_temp_path ${p('fastcgi')};
    uwsgi_temp_path ${p('uwsgi')};
    scgi_temp_path ${p('scgi')};
    include ${p(path.basename(serverConf))};
}
`;
}

// ---- clients ----

/** One HTTPS request to nginx: { status, headers, text, json }. */
function request(port, ca, method, urlPath, { headers = {}, body, localAddress } = {}) {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const h = { ...headers };
  if (data !== undefined) {
    h['content-type'] = 'application/json';
    h['content-length'] = Buffer.byteLength(data);
  }
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method, path: urlPath, headers: h, ca, localAddress, agent: false, timeout: WAIT },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${WAIT} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** A registered WebSocket client: every frame it got is kept, and can be
 *  waited for by what it is. */
class Client {
  constructor(user, ws) {
    this.user = user;
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'the server sends text frames');
      const f = JSON.parse(data.toString('utf8'));
      this.frames.push(f);
      for (const w of this.waiters) w(f);
    });
  }

  static open(url, ca, user) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { ca, handshakeTimeout: WAIT });
      ws.once('open', () => resolve(new Client(user, ws)));
      // After the open, an error closes the socket: the waits report it.
      ws.on('error', reject);
    });
  }

  send(frame) {
    this.ws.send(JSON.stringify({ isSystem: false, from: this.user, ...frame }));
  }

  /** The first frame (received so far or later) for which `pred` holds. */
  next(what, pred) {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.user} got no ${what} within ${WAIT} ms; got ${JSON.stringify(this.frames)}`));
      }, WAIT);
      const w = (f) => {
        if (!pred(f)) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(f);
      };
      this.waiters.push(w);
    });
  }

  /** The 9001 answering message `id`, as { frame, status }. */
  async answer(id) {
    const frame = await this.next(`9001 for ${id}`, (f) => f.type === 9001 && f.id === id);
    return { frame, status: JSON.parse(frame.body) };
  }

  close() {
    this.ws.close(1000);
    return this.closed;
  }
}

// ---- the test ----

describe('edgeim through nginx over https:// and wss://', { timeout: 60_000 }, () => {
  let tmp;
  let cert;
  let key;
  let ca;
  let port; // nginx's
  let server;
  let nginx;
  const clients = [];
  const get = (urlPath, opts) => request(port, ca, 'GET', urlPath, opts);
  const post = (urlPath, opts) => request(port, ca, 'POST', urlPath, opts);

  /** edgeim with public_url naming nginx's port, then nginx in front of
   *  it; true once both serve, false if another process took the port. */
  async function startBoth() {
    port = await freePort();
    const config = path.join(tmp, 'edgeim.toml');
    fs.writeFileSync(
      config,
      `data_dir = ${JSON.stringify(path.join(tmp, 'data'))}\n\n` +
        `[http]\nlisten = "127.0.0.1:0"\ntrusted_proxies = ["127.0.0.1/32"]\n\n` +
        `[websocket]\nlisten = "127.0.0.1:0"\npublic_url = "wss://127.0.0.1:${port}/websocket"\n`,
    );
    if (!fs.existsSync(path.join(tmp, 'data'))) {
      for (const [name, pw] of Object.entries(PASSWORDS)) {
        run(BIN, ['user', 'add', name, '--config', config], `${pw}\n`);
      }
    }
    server.start(BIN, ['serve', '--config', config]);
    const [, httpPort] = await server.waitForLine(/http listening on 127\.0\.0\.1:(\d+)/);
    const [, wsPort] = await server.waitForLine(/websocket listening on ws:\/\/127\.0\.0\.1:(\d+)\//);

    const serverConf = path.join(tmp, 'edgeim.conf');
    fs.writeFileSync(serverConf, serverBlock({ port, cert, key, httpPort, wsPort }));
    const mainConf = path.join(tmp, 'nginx.conf');
    fs.writeFileSync(mainConf, mainConfig(tmp, serverConf));
    nginx.start(NGINX, ['-p', tmp, '-c', mainConf, '-e', 'stderr']);
    // The master binds its sockets before it starts the workers.
    const [line] = await nginx.waitForLine(/start worker processes|bind\(\) to \S+ failed \(98: /);
    if (!line.includes('failed')) return true;
    nginx.killNow();
    await nginx.exited;
    assert.deepEqual(await server.stop('SIGTERM'), { code: 0, signal: null });
    return false;
  }

  before(async () => {
    assert.ok(fs.existsSync(BIN), `no edgeim binary at ${BIN}: run cargo build (or set EDGEIM_BIN)`);
    assert.ok(fs.existsSync(NGINX), `no nginx at ${NGINX}: apt-get install nginx (or set NGINX)`);
    fs.mkdirSync(OUT, { recursive: true });
    for (const f of ['server.log', 'nginx.log', 'nginx-access.log']) fs.rmSync(path.join(OUT, f), { force: true });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeim-tls-'));
    // nginx's workers drop root for nobody: they must reach their temp dirs.
    fs.chmodSync(tmp, 0o711);
    cert = path.join(tmp, 'cert.pem');
    key = path.join(tmp, 'key.pem');
    run(OPENSSL, [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', key, '-out', cert,
    ]);
    ca = fs.readFileSync(cert);

    server = new Proc('edgeim', path.join(OUT, 'server.log'));
    nginx = new Proc('nginx', path.join(OUT, 'nginx.log'), { group: true });
    // Should this process end before `after` ran: nothing stays behind.
    const killAll = () => {
      nginx.killNow();
      server.killNow();
    };
    process.on('exit', killAll);
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.once(sig, () => {
        killAll();
        process.exit(1);
      });
    }
    for (let attempt = 1; !(await startBoth()); attempt++) {
      assert.ok(attempt < 3, 'another process took the free port three times');
    }
  });

  after(async () => {
    for (const c of clients) c.ws.terminate();
    for (const p of [nginx, server]) {
      if (p?.running()) {
        p.killNow();
        await p.exited;
      }
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('README.md shows packaging/nginx/edgeim.conf, byte for byte', () => {
    assert.equal(readmeNginxBlock(), fs.readFileSync(NGINX_CONF, 'utf8'));
  });

  it("nginx's proxy_read_timeout is longer than edgeim's ping interval", () => {
    const conf = fs.readFileSync(NGINX_CONF, 'utf8');
    const timeout = Number(conf.match(/^\s*proxy_read_timeout (\d+)s;/m)?.[1]);
    const config = fs.readFileSync(path.join(REPO, 'docs', 'CONFIG.md'), 'utf8');
    const ping = Number(config.match(/^ {4}ping_interval_s = (\d+)$/m)?.[1]);
    assert.ok(ping > 0, 'docs/CONFIG.md gives ping_interval_s');
    assert.ok(timeout > ping, `proxy_read_timeout ${timeout}s, ping_interval_s ${ping}`);
  });

  it('serves over https://, through nginx', async () => {
    const r = await get('/healthz');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.server ?? '', /^nginx/, 'the answer came through nginx');
  });

  it('GET /api/websocket/url answers the wss:// public URL', async () => {
    const r = await get('/api/websocket/url');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json(), { url: `wss://127.0.0.1:${port}/websocket` });
  });

  it("the page's Content-Security-Policy lets it connect to the wss:// origin", async () => {
    const r = await get('/');
    assert.equal(r.status, 200, r.text);
    const csp = r.headers['content-security-policy'] ?? '';
    assert.match(csp, new RegExp(`connect-src [^;]*wss://127\\.0\\.0\\.1:${port}(;| |$)`), csp);
  });

  it('logs in over https://, registers over wss:// and chats both ways with receipts', async () => {
    const origin = `https://127.0.0.1:${port}`;
    // alice as the chat page does: a cookie, from the page's own origin.
    const login = await post('/api/login', {
      headers: { origin },
      body: { username: 'alice', password: PASSWORDS.alice },
    });
    assert.equal(login.status, 200, login.text);
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    assert.match(cookie, /^edgeim_session=/);
    const aliceSid = await get('/api/websocket/client/login/web-tls', { headers: { cookie } });
    assert.equal(aliceSid.status, 200, aliceSid.text);
    // bob as an app: a token.
    const appLogin = await post('/app/login', { body: { username: 'bob', password: PASSWORDS.bob } });
    assert.equal(appLogin.status, 200, appLogin.text);
    const { token } = appLogin.json();
    const bobSid = await get('/app/websocket/client/login/phone-tls', { headers: { token } });
    assert.equal(bobSid.status, 200, bobSid.text);

    // Both open the URL the server gives out, as the page does.
    const { url } = (await get('/api/websocket/url')).json();
    const alice = await Client.open(url, ca, 'alice');
    clients.push(alice);
    const bob = await Client.open(url, ca, 'bob');
    clients.push(bob);
    for (const [c, sid] of [[alice, aliceSid], [bob, bobSid]]) {
      const id = `r-${c.user}`;
      c.send({ id, type: 1000, to: 'SYSTEM', body: JSON.stringify({ sessionId: sid.json().sessionId }) });
      const { frame, status } = await c.answer(id);
      assert.equal(status.code, 200, `${c.user}'s register: ${frame.body}`);
    }

    for (const [from, to, text] of [
      [alice, bob, 'hello bob, over TLS'],
      [bob, alice, 'hello alice, through nginx'],
    ]) {
      const id = `m-${from.user}`;
      from.send({ id, type: 2001, to: to.user, body: text });
      const accepted = await from.answer(id);
      assert.equal(accepted.status.code, 200, `9001 for the text: ${accepted.frame.body}`);
      const got = await to.next(`${from.user}'s text`, (f) => f.type === 2001 && f.id === id);
      assert.equal(got.body, text);
      assert.equal(got.from, from.user);
      assert.equal(got.to, to.user);

      const receipt = JSON.stringify({ code: 200, status: 'SUCCESS', msg: 'received' });
      to.send({ id, type: 9101, to: from.user, body: receipt });
      const recorded = await to.answer(id);
      assert.equal(recorded.status.code, 200, `9001 for the receipt: ${recorded.frame.body}`);
      const back = await from.next(`${to.user}'s receipt`, (f) => f.type === 9101 && f.id === id);
      assert.equal(back.from, to.user);
      assert.equal(JSON.parse(back.body).code, 200);
    }
    for (const c of clients.splice(0)) assert.equal(await c.close(), 1000);
  });

  it("the login throttle counts each client's own address (X-Forwarded-For), not nginx's", async () => {
    // Both clients reach nginx from their own loopback address; nginx reaches
    // edgeim from 127.0.0.1 for both. After 5 free failures for one name,
    // an address waits 1 s, doubling with each further failure
    // (docs/OPERATIONS.md): a few quick tries from 127.0.0.2 meet a 429.
    const attempt = (localAddress) =>
      post('/app/login', { localAddress, body: { username: 'mallory', password: 'wrong-password' } });
    let tries = 0;
    let r;
    do {
      r = await attempt('127.0.0.2');
      tries++;
      if (r.status !== 429) assert.equal(r.status, 401, `try ${tries} from 127.0.0.2: ${r.text}`);
    } while (r.status !== 429 && tries < 12);
    assert.equal(r.status, 429, `127.0.0.2 is still not throttled after ${tries} tries`);
    assert.ok(tries > 5, `the first 5 failures are free, yet try ${tries} was throttled`);
    assert.match(r.headers['retry-after'] ?? '', /^[1-9]\d*$/, 'Retry-After');
    // Had edgeim seen nginx's address, 127.0.0.3 would be throttled too.
    const other = await attempt('127.0.0.3');
    assert.equal(other.status, 401, `the first try from 127.0.0.3: ${other.text}`);
  });

  it('nginx and edgeim stop when told', async () => {
    assert.deepEqual(await nginx.stop('SIGQUIT'), { code: 0, signal: null }, nginx.log());
    assert.deepEqual(await server.stop('SIGTERM'), { code: 0, signal: null }, server.log());
  });
});
