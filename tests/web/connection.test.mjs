// The WebSocket's life (web/js/connection.js) against a fake server: the
// session id over HTTP, the register with presence asked for, the answer,
// reconnecting with backoff, and the two ways it stops (4000, logout).
import { beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';

// What the module needs from a browser: timers, fetch, WebSocket.
const timers = [];
globalThis.window = {
  setTimeout: (fn, ms) => timers.push({ fn, ms }) && timers.length,
  clearTimeout: (id) => {
    if (timers[id - 1]) timers[id - 1].fn = null;
  },
};
let answers = {};
globalThis.fetch = async (path) => {
  const [status, body] = answers[path] ?? [404, { code: 404, msg: 'no such endpoint' }];
  return { ok: status === 200, status, json: async () => body };
};
const sockets = [];
class FakeSocket {
  static OPEN = 1;
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    this.closedWith = null;
    sockets.push(this);
  }
  send(frame) {
    this.sent.push(JSON.parse(frame));
  }
  close(code, reason) {
    this.closedWith = [code, reason];
  }
}
globalThis.WebSocket = FakeSocket;

const { Connection } = await import('../../web/js/connection.js');

const settle = () => new Promise((r) => setImmediate(r));

function harness() {
  const log = [];
  const conn = new Connection({
    me: () => 'alice',
    clientName: () => 'web-1',
    newId: () => 'reg-1',
    state: (s) => log.push(`state ${s}`),
    registered: () => log.push('registered'),
    refused: (st) => log.push(`refused ${st.code}`),
    frame: (m) => log.push(`frame ${m.type}`),
    down: () => log.push('down'),
    closed: (code) => log.push(`closed ${code}`),
    expired: () => log.push('expired'),
  });
  return { conn, log };
}

async function registered() {
  const h = harness();
  h.conn.start();
  await settle();
  const ws = sockets.at(-1);
  ws.onopen();
  ws.onmessage({ data: JSON.stringify({ id: 'reg-1', type: 9001, body: '{"code":200,"status":"SUCCESS","msg":""}' }) });
  return { ...h, ws };
}

beforeEach(() => {
  timers.length = 0;
  sockets.length = 0;
  answers = {
    '/api/websocket/url': [200, { url: 'ws://h:1/websocket' }],
    '/api/websocket/client/login/web-1': [200, { sessionId: 's-1' }],
  };
});

describe('the connection', () => {
  it('registers with a one-time session id and asks for presence', async () => {
    const { conn, log, ws } = await registered();
    assert.equal(ws.url, 'ws://h:1/websocket');
    assert.equal(ws.sent[0].type, 1000);
    assert.deepEqual(JSON.parse(ws.sent[0].body), { sessionId: 's-1', presence: true });
    assert.equal(conn.registered, true);
    assert.deepEqual(log.filter((l) => l !== 'down'), ['state connecting', 'state connected', 'registered']);
  });

  it('hands every other frame on, and drops what is not JSON', async () => {
    const { log, ws } = await registered();
    ws.onmessage({ data: '{"type":3001,"body":"{}"}' });
    ws.onmessage({ data: 'garbage' });
    assert.deepEqual(log.filter((l) => l.startsWith('frame')), ['frame 3001']);
  });

  it('reconnects after the server goes, waiting longer each time', async () => {
    const { conn, log, ws } = await registered();
    ws.onclose({ code: 1006, reason: '' });
    assert.equal(conn.registered, false);
    assert.ok(log.includes('closed 1006'));
    assert.equal(log.at(-1), 'state connecting');
    const first = timers.at(-1);
    assert.ok(first.ms >= 500 && first.ms < 650, `first wait ${first.ms}`);
    answers['/api/websocket/url'] = [503, { code: 503, msg: 'busy' }];
    first.fn();
    await settle();
    assert.ok(timers.at(-1).ms >= 1000, `second wait ${timers.at(-1).ms}`);
  });

  it('stops for good when another tab takes over (4000)', async () => {
    const { log, ws } = await registered();
    const before = timers.length;
    ws.onclose({ code: 4000, reason: 'replaced' });
    assert.equal(log.at(-1), 'closed 4000');
    assert.ok(log.includes('state offline'));
    assert.equal(timers.slice(before).filter((t) => t.fn && t.ms < 15000).length, 0, 'a retry was planned');
  });

  it('passes a refused register on, and a lost login', async () => {
    const h = harness();
    h.conn.start();
    await settle();
    const ws = sockets.at(-1);
    ws.onopen();
    ws.onmessage({ data: JSON.stringify({ id: 'reg-1', type: 9001, body: '{"code":402,"status":"SESSION_ERROR","msg":""}' }) });
    assert.equal(h.log.at(-1), 'refused 402');
    answers['/api/websocket/client/login/web-1'] = [401, { code: 401, msg: 'not logged in' }];
    const h2 = harness();
    h2.conn.start();
    await settle();
    assert.equal(h2.log.at(-1), 'expired');
  });

  it('closes the socket and never retries after stop (logout)', async () => {
    const { conn, ws } = await registered();
    conn.stop('logout');
    assert.deepEqual(ws.closedWith, [1000, 'logout']);
    assert.equal(ws.onclose, null);
    assert.equal(conn.send('{}'), false);
  });
});
