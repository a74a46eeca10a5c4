// The WebSocket's life (PROTOCOL §1): a one-time session id over HTTP, the
// socket, the register and its answer, and reconnecting with backoff when
// the socket goes. What the frames mean is the page's business (app.js),
// told through hooks; this file only keeps one registered socket alive.

import { api, HttpError } from "./api.js";
import { backoffDelay, BACKOFF_MAX_ATTEMPT } from "./backoff.js";
import { parseFrame, parseStatus, registerFrame, TYPE_SEND_STATUS } from "./proto.js";

/** A register that gets no answer this long is given up, and retried. */
const REGISTER_WAIT_MS = 15000;
/** The server closes with this when the same clientName registers elsewhere. */
const CLOSE_REPLACED = 4000;

/**
 * hooks: {
 *   me(): the user id, clientName(): this browser's client name, newId(): a UUID,
 *   state(s): "connecting" | "connected" | "offline",
 *   registered(): the register was answered SUCCESS,
 *   refused(status): the register was refused (the server closes the socket next),
 *   frame(m): every other frame,
 *   down(): the socket is gone, whatever the reason,
 *   closed(code, reason): the server closed it; on 4000 (replaced) no retry follows,
 *   expired(): the login is no longer valid (401),
 * }
 */
export class Connection {
  constructor(hooks) {
    this.hooks = hooks;
    this.ws = null;
    this.registered = false;
    this.registerId = null;
    this.registerTimer = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.connecting = false;
    /** bumped by every fresh start: an older attempt in flight stops */
    this.token = 0;
    this.stopped = true;
  }

  /** Sends a frame when registered-or-registering; false when there is no socket. */
  send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(frame);
      return true;
    } catch (_) {
      return false;
    }
  }

  /** Starts (or restarts) now, forgetting the backoff. */
  start() {
    this.stopped = false;
    this.attempt = 0;
    this.clearRetry();
    this.drop(1000, "reconnecting");
    this.token += 1;
    this.connecting = false;
    this.connect();
  }

  /** Stops for good (logout): no retry, any attempt in flight is dropped. */
  stop(reason) {
    this.token += 1;
    this.stopped = true;
    this.connecting = false;
    this.clearRetry();
    this.drop(1000, reason);
  }

  clearRetry() {
    if (this.retryTimer) window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  scheduleReconnect() {
    if (this.stopped) return;
    this.clearRetry();
    const wait = backoffDelay(this.attempt);
    this.attempt = Math.min(this.attempt + 1, BACKOFF_MAX_ATTEMPT);
    this.hooks.state("connecting");
    this.retryTimer = window.setTimeout(() => this.connect(), wait);
  }

  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.registered = false;
    if (this.registerTimer) window.clearTimeout(this.registerTimer);
    this.registerTimer = null;
    this.hooks.down();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code || 1000, reason || "");
      } catch (_) {
        /* already closed */
      }
    }
  }

  async connect() {
    if (this.stopped || this.connecting || this.ws || !this.hooks.me()) return;
    this.clearRetry();
    this.connecting = true;
    const token = this.token;
    this.hooks.state("connecting");
    let url;
    let sessionId;
    try {
      url = (await api("GET", "/api/websocket/url")).url;
      const s = await api("GET", "/api/websocket/client/login/" + encodeURIComponent(this.hooks.clientName()));
      sessionId = s.sessionId;
      if (typeof url !== "string" || typeof sessionId !== "string") throw new HttpError(0, "bad answer");
    } catch (e) {
      if (token !== this.token) return;
      this.connecting = false;
      if (e.status === 401) {
        this.hooks.expired();
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (token !== this.token) return;
    if (this.stopped) {
      this.connecting = false;
      return;
    }
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      this.connecting = false;
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.connecting = false;
    this.registered = false;
    this.registerId = this.hooks.newId();

    ws.onopen = () => {
      if (this.ws !== ws) return;
      ws.send(registerFrame(this.registerId, this.hooks.me(), sessionId));
      this.registerTimer = window.setTimeout(() => {
        if (this.ws === ws && !this.registered) {
          this.drop(1000, "no register answer");
          this.scheduleReconnect();
        }
      }, REGISTER_WAIT_MS);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const m = parseFrame(ev.data);
      if (!m) return;
      if (m.type === TYPE_SEND_STATUS && m.id === this.registerId && !this.registered) this.onRegisterAnswer(m);
      else this.hooks.frame(m);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.drop();
      this.onClosed(ev.code, ev.reason);
    };
  }

  onRegisterAnswer(m) {
    if (this.registerTimer) window.clearTimeout(this.registerTimer);
    this.registerTimer = null;
    const st = parseStatus(m.body);
    if (st.code !== 200) {
      // The server closes the socket after a refused register; retry then.
      this.hooks.refused(st);
      return;
    }
    this.registered = true;
    this.attempt = 0;
    this.hooks.state("connected");
    this.hooks.registered();
  }

  onClosed(code, reason) {
    if (this.stopped) return;
    if (code === CLOSE_REPLACED) {
      // Another tab of this browser took over this clientName: fighting it
      // back would close that one, and so on forever.
      this.stopped = true;
      this.clearRetry();
      this.hooks.state("offline");
      this.hooks.closed(code, reason);
      return;
    }
    this.hooks.closed(code, reason);
    this.scheduleReconnect();
  }
}
