// edgeim chat page. Plain JavaScript, no build step, no dependencies.
//
// Flow: log in over HTTP (cookie), ask for a one-time session id, open the
// WebSocket, register (type 1000), then send texts (2001), read send
// statuses (9001) and delivery receipts (9101), and acknowledge every text
// received with a 9101. Text from the network is only ever put on the page
// with textContent.
"use strict";

(function () {
  const TYPE_REGISTER = 1000;
  const TYPE_TEXT = 2001;
  const TYPE_SEND_STATUS = 9001;
  const TYPE_RECEIVE_STATUS = 9101;
  const SYSTEM = "SYSTEM";

  const PRESENCE_EVERY_MS = 10000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_CAP_MS = 10000;
  const REGISTER_WAIT_MS = 15000;
  const HISTORY_PAGE = 50;
  // The server's default largest message; a bigger frame would close the socket (1009).
  const MAX_FRAME_BYTES = 64 * 1024;
  const NEAR_BOTTOM_PX = 80;
  const NEAR_TOP_PX = 40;

  const KEY_CLIENT = "edgeim.clientName";
  const KEY_USER = "edgeim.userId";
  const outboxKey = (user) => "edgeim.outbox." + user;

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);
  const ui = {
    body: document.body,
    loginView: $("login-view"),
    loginForm: $("login-form"),
    loginUser: $("login-username"),
    loginPass: $("login-password"),
    loginError: $("login-error"),
    loginSubmit: $("login-submit"),
    chatView: $("chat-view"),
    me: $("me"),
    logout: $("logout"),
    connState: $("conn-state"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    reconnect: $("reconnect"),
    contacts: $("contacts"),
    conversation: $("conversation"),
    convTitle: $("conv-title"),
    convSub: $("conv-sub"),
    scroller: $("scroller"),
    loadOlder: $("load-older"),
    emptyState: $("empty-state"),
    messages: $("messages"),
    composer: $("composer"),
    to: $("to"),
    text: $("text"),
    send: $("send"),
    composerError: $("composer-error"),
    announcer: $("announcer"),
  };

  /** localStorage that never throws (private windows, disabled storage). */
  const storage = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch (_) {
        return null;
      }
    },
    set(key, value) {
      try {
        window.localStorage.setItem(key, value);
      } catch (_) {
        /* storage full or disabled: the page still works for this load */
      }
    },
    remove(key) {
      try {
        window.localStorage.removeItem(key);
      } catch (_) {
        /* ignore */
      }
    },
  };

  function randomHex(bytes) {
    const b = new Uint8Array(bytes);
    window.crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  /** A v4 UUID. crypto.randomUUID exists only in secure contexts (https or
   * localhost); on a plain-http LAN address the fallback is used. */
  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      try {
        return window.crypto.randomUUID();
      } catch (_) {
        /* fall through */
      }
    }
    const b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  let cachedClientName = null;
  /** Stable per browser profile, so the server keeps this browser's queue. */
  function clientName() {
    if (cachedClientName) return cachedClientName;
    let name = storage.get(KEY_CLIENT);
    if (!name || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
      name = "web-" + randomHex(8);
      storage.set(KEY_CLIENT, name);
    }
    cachedClientName = name;
    return name;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pad2 = (n) => String(n).padStart(2, "0");
  function hhmm(ms) {
    const d = new Date(ms);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  }
  function fullTime(ms) {
    const d = new Date(ms);
    return (
      d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) +
      " " + hhmm(ms) + ":" + pad2(d.getSeconds())
    );
  }

  /** Recipients as the server normalises them: trimmed, no empties, no duplicates. */
  function splitTo(to) {
    const seen = [];
    for (const part of String(to || "").split(",")) {
      const t = part.trim();
      if (t && !seen.includes(t)) seen.push(t);
    }
    return seen;
  }

  function frameBytes(frame) {
    return new TextEncoder().encode(frame).length;
  }

  // ------------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const opts = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (_) {
      throw new HttpError(0, "Cannot reach the server.");
    }
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const msg = data && typeof data.msg === "string" ? data.msg : "HTTP " + res.status;
      throw new HttpError(res.status, msg);
    }
    return data || {};
  }

  // ------------------------------------------------------------------ state

  const state = {
    me: null,
    /** userId -> contact {li, dot, name, unread, online} */
    contacts: new Map(),
    /** peer -> conversation */
    convs: new Map(),
    open: null,
    /** own texts without a 9001 yet: [{id, to, body}] in send order */
    outbox: [],
    /** message id -> [records] of own messages (a group message can be in two histories) */
    mine: new Map(),
    /** ids of own messages whose receipt arrived (also before they are shown) */
    receipts: new Set(),
    /** id -> number of our 9101s awaiting their 9001 */
    acks: new Map(),
    seq: 0,
    presenceTimer: null,
    presenceSoon: null,
    focusContacts: false,
    /** the view follows new messages while the reader is at the bottom */
    stick: true,
  };

  const conn = {
    ws: null,
    registered: false,
    registerId: null,
    registerTimer: null,
    attempt: 0,
    retryTimer: null,
    connecting: false,
    /** bumped on logout: stale async steps see it and stop */
    gen: 0,
    /** bumped by every fresh connection attempt: an older one in flight stops */
    token: 0,
    stopped: true,
  };

  // ------------------------------------------------------------- the views

  function showLogin(message) {
    ui.body.classList.remove("booting");
    ui.chatView.hidden = true;
    ui.loginView.hidden = false;
    setLoginError(message || "");
    ui.loginSubmit.disabled = false;
    document.title = "edgeim";
    (ui.loginUser.value ? ui.loginPass : ui.loginUser).focus();
  }

  function setLoginError(message) {
    ui.loginError.textContent = message;
    ui.loginError.hidden = !message;
  }

  function showChat() {
    ui.body.classList.remove("booting");
    ui.loginView.hidden = true;
    ui.chatView.hidden = false;
    ui.me.textContent = state.me;
    renderConversationHeader();
  }

  function setConnState(s) {
    ui.connState.textContent = s;
    ui.connState.classList.remove("connected", "connecting", "offline");
    ui.connState.classList.add(s);
    const sys = state.contacts.get(SYSTEM);
    if (sys) setDot(sys, s === "connected");
    const self = state.contacts.get(state.me);
    if (self && s === "connected") setDot(self, true);
  }

  function setNotice(text, withButton) {
    ui.noticeText.textContent = text || "";
    ui.notice.hidden = !text;
    ui.reconnect.hidden = !withButton;
  }

  function announce(text) {
    ui.announcer.textContent = "";
    // A fresh text node after a tick makes screen readers read it again.
    window.setTimeout(() => {
      ui.announcer.textContent = text;
    }, 30);
  }

  function isNarrow() {
    return window.matchMedia("(max-width: 640px)").matches;
  }

  // -------------------------------------------------------------- contacts

  function displayName(userId) {
    if (userId === SYSTEM) return "System";
    if (userId === state.me) return userId + " (you)";
    return userId;
  }

  function subtitle(userId) {
    if (userId === SYSTEM) return "Messages from the server";
    if (userId === state.me) return "Notes to self";
    return "";
  }

  function ensureContact(userId) {
    let c = state.contacts.get(userId);
    if (c) return c;
    const li = el("li", "contact");
    li.dataset.user = userId;
    li.tabIndex = 0;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    if (userId === SYSTEM) li.classList.add("contact-system");
    if (userId === state.me) li.classList.add("contact-self");
    const dot = el("span", "dot offline");
    dot.setAttribute("aria-hidden", "true");
    const names = el("span", "contact-names");
    const name = el("span", "contact-name", displayName(userId));
    names.appendChild(name);
    const sub = subtitle(userId);
    if (sub) names.appendChild(el("span", "contact-sub", sub));
    const unread = el("span", "unread", "");
    unread.hidden = true;
    unread.setAttribute("aria-hidden", "true");
    li.append(dot, names, unread);
    c = { userId, li, dot, unread, online: false, count: 0 };
    state.contacts.set(userId, c);
    placeContact(c);
    labelContact(c);
    return c;
  }

  /** Others by name, then notes to self, then SYSTEM. */
  function contactRank(userId) {
    if (userId === SYSTEM) return 2;
    if (userId === state.me) return 1;
    return 0;
  }

  function placeContact(c) {
    const items = Array.from(ui.contacts.children);
    const rank = contactRank(c.userId);
    const before = items.find((li) => {
      const u = li.dataset.user;
      const r = contactRank(u);
      return r > rank || (r === rank && u.localeCompare(c.userId) > 0);
    });
    ui.contacts.insertBefore(c.li, before || null);
  }

  function labelContact(c) {
    const parts = [displayName(c.userId)];
    if (c.userId === state.me) parts.push("notes to self");
    else if (c.userId !== SYSTEM) parts.push(c.online ? "online" : "offline");
    if (c.count > 0) parts.push(c.count + " unread");
    c.li.setAttribute("aria-label", parts.join(", "));
  }

  function setDot(c, online) {
    c.online = online;
    c.dot.classList.toggle("online", online);
    c.dot.classList.toggle("offline", !online);
    labelContact(c);
  }

  function setUnread(userId, count) {
    const c = ensureContact(userId);
    c.count = count;
    c.unread.textContent = count > 0 ? String(count) : "";
    c.unread.hidden = count === 0;
    labelContact(c);
    updateTitle();
  }

  function updateTitle() {
    let total = 0;
    for (const c of state.contacts.values()) total += c.count;
    document.title = total > 0 ? `(${total}) edgeim` : "edgeim";
  }

  async function refreshUsers() {
    const gen = conn.gen;
    let data;
    try {
      data = await api("GET", "/api/users");
    } catch (e) {
      if (gen !== conn.gen) return;
      if (e.status === 401) loginExpired();
      return;
    }
    if (gen !== conn.gen || !state.me) return;
    applyUsers(data.users);
  }

  function applyUsers(users) {
    if (!Array.isArray(users)) return;
    const listed = new Set();
    for (const u of users) {
      if (!u || typeof u.userId !== "string") continue;
      listed.add(u.userId);
      const c = ensureContact(u.userId);
      setDot(c, u.userId === state.me ? u.online || conn.registered : u.online === true);
    }
    ensureContact(state.me);
    ensureContact(SYSTEM);
    if (state.focusContacts) {
      // Right after logging in, the keyboard starts on the contact list.
      state.focusContacts = false;
      const active = document.activeElement;
      if (!active || active === document.body || ui.loginView.contains(active)) {
        const first = ui.contacts.querySelector("li[data-user]");
        if (first) first.focus();
      }
    }
    // Users removed from the server disappear unless a conversation with them is kept.
    for (const [id, c] of state.contacts) {
      if (id === SYSTEM || id === state.me || listed.has(id)) continue;
      if (state.convs.has(id) || state.open === id) {
        setDot(c, false);
      } else {
        c.li.remove();
        state.contacts.delete(id);
      }
    }
  }

  function refreshUsersSoon() {
    if (state.presenceSoon) return;
    state.presenceSoon = window.setTimeout(() => {
      state.presenceSoon = null;
      refreshUsers();
    }, 400);
  }

  function startPresence() {
    stopPresence();
    state.presenceTimer = window.setInterval(refreshUsers, PRESENCE_EVERY_MS);
  }

  function stopPresence() {
    if (state.presenceTimer) window.clearInterval(state.presenceTimer);
    if (state.presenceSoon) window.clearTimeout(state.presenceSoon);
    state.presenceTimer = null;
    state.presenceSoon = null;
  }

  ui.contacts.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-user]");
    if (li) openConversation(li.dataset.user, { focusText: !isNarrow() });
  });

  ui.contacts.addEventListener("keydown", (e) => {
    const li = e.target.closest("li[data-user]");
    if (!li) return;
    if (e.key === "Enter" || e.key === " " || e.key === "Spacebar") {
      e.preventDefault();
      openConversation(li.dataset.user, { focusText: e.key === "Enter" });
      return;
    }
    const items = Array.from(ui.contacts.children);
    const i = items.indexOf(li);
    let next = null;
    if (e.key === "ArrowDown" || e.key === "ArrowRight") next = items[i + 1];
    else if (e.key === "ArrowUp" || e.key === "ArrowLeft") next = items[i - 1];
    else if (e.key === "Home") next = items[0];
    else if (e.key === "End") next = items[items.length - 1];
    if (next) {
      e.preventDefault();
      next.focus();
      next.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  });

  // --------------------------------------------------------- conversations

  function getConv(peer) {
    let conv = state.convs.get(peer);
    if (!conv) {
      conv = {
        peer,
        msgs: new Map(),
        list: [],
        historyLoaded: false,
        historyDone: false,
        loading: false,
        loadError: "",
        oldest: null,
        unread: 0,
      };
      state.convs.set(peer, conv);
      ensureContact(peer);
    }
    return conv;
  }

  /** Which conversation a message belongs to. */
  function peerOf(from, to, isSystem) {
    if (isSystem || from === SYSTEM) return SYSTEM;
    if (from === state.me) {
      const others = splitTo(to).filter((u) => u !== state.me);
      return others.length ? others[0] : state.me;
    }
    return from;
  }

  const keyOf = (from, id) => from + "\u0000" + id;
  const sortTs = (rec) => (rec.pending ? Infinity : rec.ts);

  function compareRecs(a, b) {
    const ta = sortTs(a);
    const tb = sortTs(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    return a.seq - b.seq;
  }

  function insertRec(conv, rec) {
    let i = conv.list.length;
    while (i > 0 && compareRecs(conv.list[i - 1], rec) > 0) i--;
    conv.list.splice(i, 0, rec);
    if (state.open === conv.peer) {
      const next = conv.list[i + 1];
      ui.messages.insertBefore(liOf(rec), next ? liOf(next) : null);
      ui.emptyState.hidden = true;
    }
  }

  function reposition(conv, rec) {
    const i = conv.list.indexOf(rec);
    if (i >= 0) conv.list.splice(i, 1);
    insertRec(conv, rec);
    renderMeta(rec);
  }

  /** Adds a message (live or from history) unless it is already shown.
   * Returns the record when it is new, null when it was a duplicate. */
  function ingest(m, into) {
    const isSystem = m.isSystem === true || m.from === SYSTEM;
    const conv = into || getConv(peerOf(m.from, m.to, isSystem));
    const key = keyOf(m.from, m.id);
    const known = conv.msgs.get(key);
    const ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
    if (known) {
      // A redelivery, a history copy, or our own note coming back: it carries
      // the server's exact timestamp, and proves the message was accepted.
      if (known.pending || known.approx) {
        known.pending = false;
        known.approx = typeof m.timestamp !== "number";
        known.ts = ts;
        reposition(conv, known);
      }
      if (known.kind === "mine" && !known.acked && !known.error) {
        known.acked = true;
        dropFromOutbox(known.id);
        renderStatus(known);
      }
      return null;
    }
    const kind = isSystem ? "system" : m.from === state.me ? "mine" : "theirs";
    const rec = {
      key,
      conv,
      id: m.id,
      from: m.from,
      to: m.to,
      body: typeof m.body === "string" ? m.body : String(m.body),
      ts,
      approx: typeof m.timestamp !== "number",
      pending: false,
      seq: ++state.seq,
      kind,
      acked: kind === "mine",
      receipt: kind === "mine" && state.receipts.has(m.id),
      error: "",
      li: null,
    };
    addRec(conv, rec);
    return rec;
  }

  function addRec(conv, rec) {
    conv.msgs.set(rec.key, rec);
    if (rec.kind === "mine") {
      const list = state.mine.get(rec.id) || [];
      list.push(rec);
      state.mine.set(rec.id, list);
    }
    insertRec(conv, rec);
  }

  function liOf(rec) {
    if (rec.li) return rec.li;
    const li = el("li", "msg " + rec.kind);
    li.dataset.id = rec.id;
    const text = el("div", "text", rec.body);
    const meta = el("span", "meta");
    li.append(text, meta);
    if (rec.kind === "mine") {
      const status = el("span", "status");
      li.appendChild(status);
    }
    rec.li = li;
    renderMeta(rec);
    renderStatus(rec);
    return li;
  }

  function renderMeta(rec) {
    if (!rec.li) return;
    const meta = rec.li.querySelector(".meta");
    const recipients = splitTo(rec.to);
    const parts = [];
    if (rec.kind === "theirs") parts.push(rec.from);
    if (rec.kind === "system") parts.push("System");
    if (recipients.length > 1) {
      parts.push("to " + recipients.map((u) => (u === state.me ? "you" : u)).join(", "));
    }
    parts.push(rec.pending ? hhmm(Date.now()) : hhmm(rec.ts));
    meta.textContent = parts.join(" · ");
    meta.title = rec.pending ? "not sent yet" : fullTime(rec.ts);
  }

  function renderStatus(rec) {
    if (!rec.li || rec.kind !== "mine") return;
    const status = rec.li.querySelector(".status");
    let text = "";
    let title = "Sending…";
    if (rec.error) {
      text = rec.error;
      title = "Not sent";
    } else if (rec.receipt) {
      text = "\u2713\u2713";
      title = "Delivered";
    } else if (rec.acked) {
      text = "\u2713";
      title = "Sent";
    }
    status.textContent = text;
    status.title = title;
    status.classList.toggle("error", Boolean(rec.error));
    status.classList.toggle("pending", !text);
    rec.li.classList.toggle("failed", Boolean(rec.error));
  }

  function renderConversationHeader() {
    const peer = state.open;
    if (!peer) {
      ui.convTitle.textContent = "No conversation open";
      ui.convSub.textContent = "";
      return;
    }
    ui.convTitle.textContent =
      peer === SYSTEM ? "System messages" : peer === state.me ? "Notes to self" : peer;
    ui.convSub.textContent =
      peer === SYSTEM ? "Notices from the server; they cannot be answered" : "";
  }

  function openConversation(peer, opts) {
    const conv = getConv(peer);
    state.open = peer;
    ui.conversation.dataset.with = peer;
    for (const c of state.contacts.values()) {
      const selected = c.userId === peer;
      c.li.setAttribute("aria-selected", selected ? "true" : "false");
      c.li.classList.toggle("selected", selected);
    }
    conv.unread = 0;
    setUnread(peer, 0);
    renderConversationHeader();
    ui.to.value = peer === SYSTEM ? "" : peer;
    setComposerError("");

    const nodes = conv.list.map(liOf);
    ui.messages.replaceChildren(...nodes);
    ui.emptyState.hidden = nodes.length > 0 || !conv.historyDone;
    ui.emptyState.textContent = "No messages yet.";
    updateLoadOlder();
    scrollToBottom();
    const c = state.contacts.get(peer);
    if (c) c.li.scrollIntoView({ block: "nearest", inline: "nearest" });
    if (!conv.historyLoaded) loadOlder(conv);
    if (opts && opts.focusText) ui.text.focus();
  }

  function updateLoadOlder() {
    const conv = state.open ? state.convs.get(state.open) : null;
    const btn = ui.loadOlder;
    btn.hidden = !conv;
    if (!conv) return;
    btn.classList.toggle("done", conv.historyDone);
    btn.setAttribute("aria-busy", conv.loading ? "true" : "false");
    if (conv.loading) btn.textContent = "Loading…";
    else if (conv.loadError) btn.textContent = "Could not load history: " + conv.loadError + " (retry)";
    else if (conv.historyDone) btn.textContent = "No older messages";
    else btn.textContent = "Load older messages";
  }

  function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    state.stick = true;
  }

  // Keep the newest message in view when the list or the window changes
  // size (a notice appears, the phone keyboard opens), unless the reader
  // has scrolled up.
  if (typeof ResizeObserver === "function") {
    const keepBottom = new ResizeObserver(() => {
      if (state.stick) ui.scroller.scrollTop = ui.scroller.scrollHeight;
    });
    keepBottom.observe(ui.scroller);
    keepBottom.observe(ui.messages);
  }

  /** One page of history, older than what history has shown so far. A page
   * that held only messages already shown (a redelivered backlog) is
   * followed by the next one, a few pages at most. */
  async function loadOlder(conv, chainLeft) {
    if (chainLeft === undefined) chainLeft = 3;
    if (conv.loading) return;
    const gen = conn.gen;
    conv.loading = true;
    conv.loadError = "";
    if (state.open === conv.peer) updateLoadOlder();
    const q = new URLSearchParams({ with: conv.peer, limit: String(HISTORY_PAGE) });
    if (conv.oldest !== null) q.set("before", String(conv.oldest));
    let data;
    try {
      data = await api("GET", "/api/message/history?" + q.toString());
    } catch (e) {
      if (gen !== conn.gen) return;
      conv.loading = false;
      if (e.status === 401) {
        loginExpired();
        return;
      }
      conv.loadError = e.message;
      if (state.open === conv.peer) updateLoadOlder();
      return;
    }
    if (gen !== conn.gen) return;
    const page = Array.isArray(data.messages) ? data.messages : [];
    const first = !conv.historyLoaded;
    const isOpen = state.open === conv.peer;
    const s = ui.scroller;
    const wasAtBottom = isOpen && nearBottom();
    const fromBottom = s.scrollHeight - s.scrollTop;
    // Newest first on the wire; add oldest first so equal timestamps keep
    // the server's order.
    let added = 0;
    for (let i = page.length - 1; i >= 0; i--) {
      const m = page[i];
      if (!m || typeof m.id !== "string" || typeof m.from !== "string") continue;
      if (typeof m.timestamp === "number") {
        conv.oldest = conv.oldest === null ? m.timestamp : Math.min(conv.oldest, m.timestamp);
      }
      if (ingest(m, conv)) added += 1;
    }
    if (page.length === 0) conv.historyDone = true;
    conv.historyLoaded = true;
    conv.loading = false;
    if (isOpen && state.open === conv.peer) {
      ui.emptyState.hidden = conv.list.length > 0;
      updateLoadOlder();
      if (first || wasAtBottom) scrollToBottom();
      else s.scrollTop = s.scrollHeight - fromBottom;
    }
    if (page.length > 0 && added === 0 && chainLeft > 0) loadOlder(conv, chainLeft - 1);
  }

  /** After a reconnect, history that failed to load while offline is asked for again. */
  function retryHistory() {
    for (const conv of state.convs.values()) {
      if (!conv.loadError) continue;
      conv.loadError = "";
      if (state.open === conv.peer) {
        if (conv.historyLoaded) updateLoadOlder();
        else loadOlder(conv);
      }
    }
  }

  ui.loadOlder.addEventListener("click", () => {
    const conv = state.open ? state.convs.get(state.open) : null;
    if (conv) loadOlder(conv);
  });

  ui.scroller.addEventListener("scroll", () => {
    state.stick = nearBottom();
    if (ui.scroller.scrollTop > NEAR_TOP_PX) return;
    const conv = state.open ? state.convs.get(state.open) : null;
    if (conv && conv.historyLoaded && !conv.historyDone && !conv.loading && !conv.loadError) {
      loadOlder(conv);
    }
  });

  // ----------------------------------------------------------------- outbox

  function saveOutbox() {
    if (!state.me) return;
    if (state.outbox.length) storage.set(outboxKey(state.me), JSON.stringify(state.outbox));
    else storage.remove(outboxKey(state.me));
  }

  function loadOutbox() {
    state.outbox = [];
    const raw = storage.get(outboxKey(state.me));
    if (!raw) return;
    try {
      const items = JSON.parse(raw);
      if (!Array.isArray(items)) return;
      for (const it of items) {
        if (it && typeof it.id === "string" && typeof it.to === "string" && typeof it.body === "string") {
          state.outbox.push({ id: it.id, to: it.to, body: it.body });
          showPending(it);
        }
      }
    } catch (_) {
      storage.remove(outboxKey(state.me));
    }
  }

  function dropFromOutbox(id) {
    const before = state.outbox.length;
    state.outbox = state.outbox.filter((m) => m.id !== id);
    if (state.outbox.length !== before) saveOutbox();
  }

  function inOutbox(id) {
    return state.outbox.some((m) => m.id === id);
  }

  /** An own message shown before the server has answered. */
  function showPending(item) {
    const conv = getConv(peerOf(state.me, item.to, false));
    const key = keyOf(state.me, item.id);
    if (conv.msgs.has(key)) return conv.msgs.get(key);
    const rec = {
      key,
      conv,
      id: item.id,
      from: state.me,
      to: item.to,
      body: item.body,
      ts: Date.now(),
      approx: true,
      pending: true,
      seq: ++state.seq,
      kind: "mine",
      acked: false,
      receipt: state.receipts.has(item.id),
      error: "",
      li: null,
    };
    addRec(conv, rec);
    return rec;
  }

  function textFrame(item) {
    return JSON.stringify({
      id: item.id,
      type: TYPE_TEXT,
      isSystem: false,
      from: state.me,
      to: item.to,
      body: item.body,
    });
  }

  function flushOutbox() {
    for (const item of state.outbox) sendFrame(textFrame(item));
  }

  function setComposerError(text) {
    ui.composerError.textContent = text;
    ui.composerError.hidden = !text;
  }

  function sendFromComposer() {
    const body = ui.text.value;
    if (!body.trim()) {
      ui.text.focus();
      return;
    }
    const recipients = splitTo(ui.to.value);
    if (!recipients.length) {
      setComposerError("Add a recipient in the To field.");
      ui.to.focus();
      return;
    }
    if (recipients.includes(SYSTEM)) {
      setComposerError("System messages cannot be answered.");
      ui.to.focus();
      return;
    }
    const item = { id: uuid(), to: recipients.join(","), body };
    if (frameBytes(textFrame(item)) > MAX_FRAME_BYTES) {
      setComposerError("This message is too long to send; split it into parts.");
      return;
    }
    setComposerError("");
    state.outbox.push(item);
    saveOutbox();
    const rec = showPending(item);
    ui.text.value = "";
    autoGrow();
    const peer = rec.conv.peer;
    if (state.open !== peer) {
      const toValue = ui.to.value;
      openConversation(peer, { focusText: true });
      ui.to.value = toValue;
    }
    scrollToBottom();
    if (conn.registered) sendFrame(textFrame(item));
  }

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    sendFromComposer();
  });

  ui.text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      sendFromComposer();
    }
  });

  ui.to.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing) {
      e.preventDefault();
      ui.text.focus();
    }
  });

  function autoGrow() {
    const lines = ui.text.value.split("\n").length;
    ui.text.rows = Math.max(1, Math.min(6, lines));
  }
  ui.text.addEventListener("input", autoGrow);

  // -------------------------------------------------------------- WebSocket

  function sendFrame(frame) {
    const ws = conn.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(frame);
      return true;
    } catch (_) {
      return false;
    }
  }

  function clearRetry() {
    if (conn.retryTimer) window.clearTimeout(conn.retryTimer);
    conn.retryTimer = null;
  }

  function scheduleReconnect() {
    if (conn.stopped) return;
    clearRetry();
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * Math.pow(2, conn.attempt));
    const wait = base + Math.random() * base * 0.3;
    conn.attempt = Math.min(conn.attempt + 1, 20);
    setConnState("connecting");
    conn.retryTimer = window.setTimeout(connect, wait);
  }

  function dropSocket(code, reason) {
    const ws = conn.ws;
    conn.ws = null;
    conn.registered = false;
    if (conn.registerTimer) window.clearTimeout(conn.registerTimer);
    conn.registerTimer = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code || 1000, reason || "");
      } catch (_) {
        /* already closed */
      }
    }
  }

  /** Start (or restart) the connection now, forgetting the backoff. */
  function connectNow() {
    conn.stopped = false;
    conn.attempt = 0;
    clearRetry();
    setNotice("");
    dropSocket(1000, "reconnecting");
    conn.token += 1;
    conn.connecting = false;
    connect();
  }

  async function connect() {
    if (conn.stopped || conn.connecting || conn.ws || !state.me) return;
    clearRetry();
    conn.connecting = true;
    const token = conn.token;
    setConnState("connecting");
    let url;
    let sessionId;
    try {
      url = (await api("GET", "/api/websocket/url")).url;
      const s = await api(
        "GET",
        "/api/websocket/client/login/" + encodeURIComponent(clientName())
      );
      sessionId = s.sessionId;
      if (typeof url !== "string" || typeof sessionId !== "string") throw new HttpError(0, "bad answer");
    } catch (e) {
      if (token !== conn.token) return;
      conn.connecting = false;
      if (e.status === 401) {
        loginExpired();
        return;
      }
      scheduleReconnect();
      return;
    }
    if (token !== conn.token) return;
    if (conn.stopped) {
      conn.connecting = false;
      return;
    }
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      conn.connecting = false;
      scheduleReconnect();
      return;
    }
    conn.ws = ws;
    conn.connecting = false;
    conn.registered = false;
    conn.registerId = uuid();

    ws.onopen = () => {
      if (conn.ws !== ws) return;
      ws.send(
        JSON.stringify({
          id: conn.registerId,
          type: TYPE_REGISTER,
          isSystem: false,
          from: state.me,
          to: SYSTEM,
          body: JSON.stringify({ sessionId }),
        })
      );
      conn.registerTimer = window.setTimeout(() => {
        if (conn.ws === ws && !conn.registered) {
          dropSocket(1000, "no register answer");
          scheduleReconnect();
        }
      }, REGISTER_WAIT_MS);
    };
    ws.onmessage = (ev) => {
      if (conn.ws !== ws || typeof ev.data !== "string") return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (m && typeof m === "object") onFrame(m);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (ev) => {
      if (conn.ws !== ws) return;
      dropSocket();
      onClosed(ev.code, ev.reason);
    };
  }

  function onClosed(code, reason) {
    if (conn.stopped) return;
    if (code === 4000) {
      conn.stopped = true;
      clearRetry();
      setConnState("offline");
      setNotice("This chat was opened in another tab or window of this browser.", true);
      return;
    }
    if (code === 1009) {
      // A message larger than the server allows: it would close every retry too.
      const biggest = state.outbox.reduce(
        (a, m) => (!a || m.body.length > a.body.length ? m : a),
        null
      );
      if (biggest) markError(biggest.id, "message too big");
    }
    if (code === 1008 && reason && reason !== "slow" && reason !== "register timeout") {
      setNotice("The server refused this connection (" + reason + "); retrying.", false);
    }
    scheduleReconnect();
  }

  function markError(id, text, serverTs) {
    dropFromOutbox(id);
    for (const rec of state.mine.get(id) || []) {
      if (rec.acked) continue;
      rec.error = text;
      rec.pending = false;
      rec.ts = typeof serverTs === "number" ? serverTs : Date.now();
      reposition(rec.conv, rec);
      renderStatus(rec);
    }
  }

  function parseStatus(body) {
    let s = body;
    if (typeof body === "string") {
      try {
        s = JSON.parse(body);
      } catch (_) {
        s = null;
      }
    }
    if (!s || typeof s !== "object") return { code: 0, status: "", msg: "" };
    return {
      code: typeof s.code === "number" ? s.code : 0,
      status: typeof s.status === "string" ? s.status : "",
      msg: typeof s.msg === "string" ? s.msg : "",
    };
  }

  function onFrame(m) {
    const type = m.type;
    if (type === TYPE_SEND_STATUS) onSendStatus(m);
    else if (type === TYPE_TEXT) onText(m);
    else if (type === TYPE_RECEIVE_STATUS) onReceipt(m);
  }

  function onSendStatus(m) {
    const st = parseStatus(m.body);
    if (m.id === conn.registerId && !conn.registered) {
      onRegisterAnswer(st);
      return;
    }
    if (typeof m.id !== "string") return;
    if (inOutbox(m.id)) {
      if (st.code === 200) {
        dropFromOutbox(m.id);
        for (const rec of state.mine.get(m.id) || []) {
          rec.acked = true;
          if (rec.pending) {
            rec.pending = false;
            rec.ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
            rec.approx = true;
            reposition(rec.conv, rec);
          }
          renderStatus(rec);
        }
      } else {
        markError(m.id, st.msg || st.status || "error " + st.code, m.timestamp);
      }
      return;
    }
    const waiting = state.acks.get(m.id);
    if (waiting) {
      if (waiting > 1) state.acks.set(m.id, waiting - 1);
      else state.acks.delete(m.id);
      if (st.code !== 200) console.warn("edgeim: receipt for", m.id, "refused:", st.status, st.msg);
    }
  }

  function onRegisterAnswer(st) {
    if (conn.registerTimer) window.clearTimeout(conn.registerTimer);
    conn.registerTimer = null;
    if (st.code === 200) {
      conn.registered = true;
      conn.attempt = 0;
      setNotice("");
      setConnState("connected");
      flushOutbox();
      refreshUsers();
      retryHistory();
      return;
    }
    if (st.code === 405) {
      // The cookie belongs to another user than the one this page thinks.
      loginExpired();
      return;
    }
    if (st.code === 400) {
      setNotice("The server refused this connection: " + (st.msg || st.status) + ". Retrying.", false);
    }
    // The server closes the socket after a refused register; retry then.
  }

  function onText(m) {
    if (typeof m.id !== "string" || typeof m.from !== "string") return;
    const isSystem = m.isSystem === true || m.from === SYSTEM;
    // Acknowledge every text, also repeats: that is what stops redelivery.
    state.acks.set(m.id, (state.acks.get(m.id) || 0) + 1);
    sendFrame(
      JSON.stringify({
        id: m.id,
        type: TYPE_RECEIVE_STATUS,
        isSystem: false,
        from: state.me,
        to: isSystem ? SYSTEM : m.from,
        body: JSON.stringify({ code: 200, status: "SUCCESS", msg: "received" }),
      })
    );
    const isOpenBefore = state.open;
    const atBottom = nearBottom();
    const rec = ingest(m);
    if (!rec) return;
    const peer = rec.conv.peer;
    if (rec.kind !== "mine") {
      if (peer === isOpenBefore && !document.hidden) {
        if (atBottom) scrollToBottom();
      } else if (peer !== isOpenBefore) {
        rec.conv.unread += 1;
        setUnread(peer, rec.conv.unread);
      }
      const who = rec.kind === "system" ? "System" : rec.from;
      announce(peer === isOpenBefore ? `${who}: ${rec.body}` : `New message from ${who}`);
    } else if (peer === isOpenBefore && atBottom) {
      scrollToBottom();
    }
    refreshUsersSoon();
  }

  function onReceipt(m) {
    if (typeof m.id !== "string") return;
    state.receipts.add(m.id);
    if (inOutbox(m.id)) dropFromOutbox(m.id);
    for (const rec of state.mine.get(m.id) || []) {
      if (rec.error) continue;
      rec.receipt = true;
      rec.acked = true;
      if (rec.pending) {
        rec.pending = false;
        rec.ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
        reposition(rec.conv, rec);
      }
      renderStatus(rec);
    }
    refreshUsersSoon();
  }

  ui.reconnect.addEventListener("click", () => connectNow());

  window.addEventListener("online", () => {
    if (state.me && !conn.stopped && !conn.registered) connectNow();
  });

  // ------------------------------------------------------- login / logout

  /** Shows the chat for `userId`; `users` is a directory already fetched. */
  function startSession(userId, users) {
    state.me = userId;
    storage.set(KEY_USER, userId);
    conn.gen += 1;
    showChat();
    ensureContact(userId);
    ensureContact(SYSTEM);
    loadOutbox();
    ui.emptyState.hidden = false;
    ui.emptyState.textContent =
      "Choose a contact to see your conversation, or type recipients below to start one.";
    updateLoadOlder();
    startPresence();
    setConnState("connecting");
    if (users) {
      applyUsers(users);
      connectNow();
      return;
    }
    // The contact list first, so that "connected" finds it filled in.
    const gen = conn.gen;
    refreshUsers().then(() => {
      if (gen === conn.gen && state.me) connectNow();
    });
  }

  /** Forget everything about the session on this page. */
  function endSession() {
    conn.gen += 1;
    conn.token += 1;
    conn.stopped = true;
    conn.connecting = false;
    clearRetry();
    dropSocket(1000, "logout");
    stopPresence();
    setConnState("offline");
    setNotice("");
    state.me = null;
    state.contacts.clear();
    state.convs.clear();
    state.open = null;
    state.outbox = [];
    state.mine.clear();
    state.receipts.clear();
    state.acks.clear();
    ui.contacts.replaceChildren();
    ui.messages.replaceChildren();
    ui.conversation.dataset.with = "";
    ui.to.value = "";
    ui.text.value = "";
    setComposerError("");
    storage.remove(KEY_USER);
  }

  function loginExpired() {
    if (!state.me) return;
    const user = state.me;
    endSession();
    ui.loginUser.value = user;
    ui.loginPass.value = "";
    showLogin("Your login has expired. Please log in again.");
  }

  ui.loginForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = ui.loginUser.value.trim();
    const password = ui.loginPass.value;
    if (!username || !password) {
      setLoginError("Enter your username and password.");
      (username ? ui.loginPass : ui.loginUser).focus();
      return;
    }
    ui.loginSubmit.disabled = true;
    setLoginError("");
    try {
      const data = await api("POST", "/api/login", { username, password });
      ui.loginPass.value = "";
      state.focusContacts = true;
      startSession(typeof data.userId === "string" ? data.userId : username);
    } catch (err) {
      if (err.status === 401) setLoginError("Wrong username or password.");
      else if (err.status === 0) setLoginError("Cannot reach the server. Check the connection and try again.");
      else setLoginError(err.message);
      ui.loginPass.select();
      ui.loginPass.focus();
    } finally {
      ui.loginSubmit.disabled = false;
    }
  });

  ui.logout.addEventListener("click", async () => {
    const user = state.me;
    ui.logout.disabled = true;
    endSession();
    try {
      await api("POST", "/api/logout");
    } catch (_) {
      /* the cookie is cleared or invalid either way */
    }
    ui.logout.disabled = false;
    ui.loginUser.value = user || "";
    ui.loginPass.value = "";
    showLogin("");
  });

  // ------------------------------------------------------------------ boot

  async function boot() {
    const stored = storage.get(KEY_USER);
    if (!stored) {
      showLogin("");
      return;
    }
    try {
      const data = await api("GET", "/api/users");
      const users = Array.isArray(data.users) ? data.users : [];
      if (!users.some((u) => u && u.userId === stored)) {
        storage.remove(KEY_USER);
        showLogin("");
        return;
      }
      startSession(stored, users);
    } catch (e) {
      if (e.status === 401) {
        storage.remove(KEY_USER);
        ui.loginUser.value = stored;
        showLogin("");
        return;
      }
      // The server is not reachable right now: show the chat and keep trying.
      startSession(stored);
    }
  }

  boot();
})();
