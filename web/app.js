// edgeim chat page, the entry module. Plain JavaScript modules, no build
// step, no dependencies; the pure parts live in js/ (unit-tested with
// `node --test tests/web/`), this file holds the page's state and wires it
// to the DOM and the network.
//
// Flow: log in over HTTP (cookie), load the directory (/api/users), the
// groups (/api/groups) and the conversation list (/api/conversations), ask
// for a one-time session id, open the WebSocket, register (type 1000, with
// "presence": true), then send texts (2001), read send statuses (9001),
// delivery receipts (9101) and presence (3001), and acknowledge every text
// received with a 9101. Text from the network is only ever put on the page
// with textContent. A version 1 server (no groups, no presence frames, no
// seq) still works: the page then polls /api/users for the dots and pages
// history by timestamp.

import { api } from "./js/api.js";
import { Connection } from "./js/connection.js";
import {
  convOf,
  isSystemMessage,
  kindOf,
  parseConversations,
  parseGroup,
  severalRecipients,
} from "./js/convs.js";
import { announce, el, isNarrow, ui } from "./js/dom.js";
import { groupDialogs } from "./js/groups-ui.js";
import * as sidebar from "./js/sidebar-view.js";
import * as threadView from "./js/thread-view.js";
import { advanceCursor, historyDone, historyQuery, HISTORY_PAGE, insertIndex } from "./js/order.js";
import { Presence } from "./js/presence.js";
import {
  ackFrame,
  frameBytes,
  groupId,
  groupName,
  isGroupId,
  MAX_FRAME_BYTES,
  parseStatus,
  splitTo,
  SYSTEM,
  textFrame,
  TYPE_PRESENCE,
  TYPE_RECEIVE_STATUS,
  TYPE_SEND_STATUS,
  TYPE_TEXT,
} from "./js/proto.js";
import { KEY_CLIENT, KEY_USER, makeStore, openKey, outboxKey, unreadKey } from "./js/store.js";
import { dividerIndex, UnreadBook } from "./js/unread.js";

/** A version 1 server sends no presence frames: after this long without
 * one, the page polls the directory for the dots instead. */
const PRESENCE_GRACE_MS = 3000;
const POLL_EVERY_MS = 10000;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 40;

const store = makeStore(safeLocalStorage());

function safeLocalStorage() {
  try {
    return window.localStorage;
  } catch (_) {
    return null;
  }
}

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
  const h = randomHex(16).split("");
  h[12] = "4";
  h[16] = "89ab"[parseInt(h[16], 16) & 3];
  const s = h.join("");
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

let cachedClientName = null;
/** Stable per browser profile, so the server keeps this browser's queue. */
function clientName() {
  if (cachedClientName) return cachedClientName;
  let name = store.get(KEY_CLIENT);
  if (!name || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    name = "web-" + randomHex(8);
    store.set(KEY_CLIENT, name);
  }
  cachedClientName = name;
  return name;
}

// ------------------------------------------------------------------ state

const state = {
  me: null,
  /** user ids of GET /api/users */
  directory: new Set(),
  /** conversation id (user, #group, SYSTEM) -> sidebar item */
  items: new Map(),
  /** conversation id -> conversation */
  convs: new Map(),
  /** group name -> group as the API gave it (member) */
  groups: new Map(),
  /** group names the server said this user is not a member of */
  notMember: new Set(),
  /** groups this user left here: their later texts are not shown */
  leftHere: new Set(),
  open: null,
  /** own texts without a 9001 yet: [{id, to, body}] in send order */
  outbox: [],
  /** message id -> [records] of own messages */
  mine: new Map(),
  /** message id -> users whose receipt (9101) arrived, also before it is shown */
  receipts: new Map(),
  /** id -> number of our 9101s awaiting their 9001 */
  acks: new Map(),
  local: 0,
  presence: new Presence(),
  unread: new UnreadBook(),
  /** the "new messages" divider: {conv, key} of the first unread text */
  divider: null,
  focusContacts: false,
  /** the view follows new messages while the reader is at the bottom */
  stick: true,
  /** a version 1 server: no /api/groups */
  noGroups: false,
  pollTimer: null,
  graceTimer: null,
  directorySoon: null,
};

const session = {
  /** bumped on every login and logout: stale async steps see it and stop */
  gen: 0,
};

const groupsUi = groupDialogs({
  me: () => state.me,
  directory: () => Array.from(state.directory).sort(),
  group: (name) => state.groups.get(name) || null,
  onGroup: (g, opts) => {
    setGroup(g);
    if (opts && opts.open) openConversation(groupId(g.name), { focusText: true });
  },
  onLeft: (name) => leftGroup(name),
  onExpired: () => loginExpired(),
});

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
  renderDots();
}

function setNotice(text, withButton) {
  ui.noticeText.textContent = text || "";
  ui.notice.hidden = !text;
  ui.reconnect.hidden = !withButton;
}

// --------------------------------------------------------------- sidebar

function displayName(id) {
  if (id === SYSTEM) return "System";
  if (id === state.me) return id + " (you)";
  if (isGroupId(id)) {
    const g = state.groups.get(groupName(id));
    return g ? g.title : id;
  }
  return id;
}

function defaultSub(id) {
  if (id === SYSTEM) return "Messages from the server";
  if (id === state.me) return "Notes to self";
  if (isGroupId(id)) return state.notMember.has(groupName(id)) ? id + " \u00b7 not a member" : id;
  return "";
}

/** The sidebar item of conversation `id`, made when missing. Only
 * conversations the page knows are real get one: a directory user, a group
 * this user is in, one of /api/conversations, or one a text was accepted
 * for; never a recipient the server refused (406). */
function ensureItem(id) {
  let it = state.items.get(id);
  if (it) return it;
  it = sidebar.makeItem(id);
  sidebar.select(it, id === state.open);
  state.items.set(id, it);
  renderItem(it);
  placeItem(it);
  return it;
}

function renderItem(it) {
  const id = it.id;
  const online = isGroupId(id) ? null : isOnline(id);
  let said = "";
  if (isGroupId(id)) said = "group";
  else if (id === state.me) said = "notes to self";
  else if (id !== SYSTEM) said = online ? "online" : "offline";
  sidebar.render(it, {
    name: displayName(id),
    sub: it.preview || defaultSub(id),
    // Notes to self sit apart below the people, unless they are recent.
    apart: id === state.me && it.lastTs === null,
    unread: state.unread.count(id),
    online,
    state: said,
  });
}

function isOnline(id) {
  const connected = conn.registered;
  if (id === SYSTEM || id === state.me) return connected;
  return state.presence.isOnline(id, connected);
}

/** Dots change often (presence, the connection): the whole item is cheap. */
const renderDot = renderItem;

function renderDots() {
  for (const it of state.items.values()) renderDot(it);
}

function placeItem(it) {
  sidebar.place(ui.contacts, it, (id) => state.items.get(id), state.me);
}

/** A message became the conversation's newest: the item moves up and shows it. */
function noteActivity(id, rec) {
  const it = state.items.get(id);
  if (!it || rec.pending) return;
  if (it.lastTs !== null && rec.ts < it.lastTs) return;
  it.lastTs = rec.ts;
  it.preview = previewOf(rec);
  renderItem(it);
  placeItem(it);
}

function previewOf(m) {
  const body = typeof m.body === "string" ? m.body : "";
  const line = body.replace(/\s+/g, " ").trim().slice(0, 80);
  if (m.kind === "mine" || m.from === state.me) return "You: " + line;
  if (isGroupId(m.convId) && m.kind === "theirs") return m.from + ": " + line;
  return line;
}

function updateTitle() {
  const total = state.unread.total();
  document.title = total > 0 ? `(${total}) edgeim` : "edgeim";
}

function saveUnread() {
  if (state.me) store.setJSON(unreadKey(state.me), state.unread.toJSON());
  updateTitle();
}

function refreshUnread(id) {
  const it = state.items.get(id);
  if (it) renderItem(it);
  saveUnread();
}

/** The directory of users (who can be written to); the dots too while the
 * server sends no presence frames (version 1). */
async function refreshDirectory() {
  const gen = session.gen;
  let data;
  try {
    data = await api("GET", "/api/users");
  } catch (e) {
    if (gen !== session.gen) return;
    if (e.status === 401) loginExpired();
    return;
  }
  if (gen !== session.gen || !state.me) return;
  applyUsers(data.users);
}

function refreshDirectorySoon() {
  if (state.directorySoon) return;
  state.directorySoon = window.setTimeout(() => {
    state.directorySoon = null;
    refreshDirectory();
  }, 400);
}

function applyUsers(users) {
  if (!Array.isArray(users)) return;
  const listed = new Set();
  for (const u of users) {
    if (u && typeof u.userId === "string") listed.add(u.userId);
  }
  state.directory = listed;
  for (const id of listed) ensureItem(id);
  ensureItem(state.me);
  ensureItem(SYSTEM);
  state.presence.fromDirectory(users);
  // Users removed from the server disappear unless a conversation with them is kept.
  for (const [id, it] of state.items) {
    if (id === SYSTEM || id === state.me || isGroupId(id) || listed.has(id)) continue;
    if (it.lastTs === null && state.open !== id && !hasMessages(id)) {
      it.li.remove();
      state.items.delete(id);
    }
  }
  renderDots();
  focusContactsOnce();
}

function hasMessages(id) {
  const conv = state.convs.get(id);
  return Boolean(conv && conv.list.length);
}

function focusContactsOnce() {
  if (!state.focusContacts) return;
  // Right after logging in, the keyboard starts on the conversation list.
  state.focusContacts = false;
  const active = document.activeElement;
  if (!active || active === document.body || ui.loginView.contains(active)) {
    const first = ui.contacts.querySelector("li[data-conv]");
    if (first) first.focus();
  }
}

/** The caller's groups (404 from a version 1 server: none, and the page
 * does not ask it again). */
async function refreshGroups() {
  if (state.noGroups) return;
  const gen = session.gen;
  let data;
  try {
    data = await api("GET", "/api/groups");
  } catch (e) {
    if (gen !== session.gen) return;
    if (e.status === 401) loginExpired();
    if (e.status === 404) state.noGroups = true;
    return;
  }
  if (gen !== session.gen || !state.me) return;
  const list = Array.isArray(data.groups) ? data.groups : [];
  const listed = new Set();
  for (const raw of list) {
    const g = parseGroup(raw);
    if (!g) continue;
    listed.add(g.name);
    setGroup(g);
  }
  // Removed while this page was away.
  for (const name of Array.from(state.groups.keys())) if (!listed.has(name)) notAMember(name);
}

/** A group as the server described it, the user a member. */
function setGroup(g) {
  state.groups.set(g.name, g);
  state.notMember.delete(g.name);
  state.leftHere.delete(g.name);
  const id = groupId(g.name);
  renderItem(ensureItem(id));
  if (state.open === id) renderConversationHeader();
  // The "✓✓ n/m" of own texts counts the members.
  const conv = state.convs.get(id);
  if (conv) for (const rec of conv.list) if (rec.kind === "mine") renderStatus(rec);
  groupsUi.refresh(g);
}

/** Asks the server about group `name` again (after an announcement, or a
 * text from a group the page does not know). Resolves when known. The list
 * of the caller's groups is asked for, not the group itself: a group the
 * caller was removed from is then simply not in it, where GET
 * /api/groups/{name} would answer 404 (an error in the browser's console). */
async function fetchGroup(name) {
  const gen = session.gen;
  let data;
  try {
    data = await api("GET", "/api/groups");
  } catch (e) {
    if (gen === session.gen && e.status === 401) loginExpired();
    return;
  }
  if (gen !== session.gen) return;
  const list = Array.isArray(data.groups) ? data.groups : [];
  const g = list.map(parseGroup).find((x) => x && x.name === name);
  if (g) setGroup(g);
  else notAMember(name);
}

/** Removed from a group by someone else: its conversation stays readable. */
function notAMember(name) {
  state.groups.delete(name);
  state.notMember.add(name);
  const it = state.items.get(groupId(name));
  if (it) renderItem(it);
  if (state.open === groupId(name)) renderConversationHeader();
}

/** This user left the group here: it leaves the sidebar. */
function leftGroup(name) {
  const id = groupId(name);
  state.groups.delete(name);
  state.leftHere.add(name);
  state.convs.delete(id);
  state.unread.clear(id);
  saveUnread();
  const it = state.items.get(id);
  if (it) {
    it.li.remove();
    state.items.delete(id);
  }
  if (state.open === id) closeConversation();
  announce("You left " + id);
}

/** GET /api/conversations (1.1): the order of the sidebar, the previews and
 * the unread counts of what came while no client was connected. */
async function loadConversations() {
  let data;
  try {
    data = await api("GET", "/api/conversations");
  } catch (e) {
    if (e.status === 401) loginExpired();
    return;
  }
  for (const c of parseConversations(data)) {
    if (isGroupId(c.with) && !state.groups.has(groupName(c.with))) continue;
    const it = ensureItem(c.with);
    if (c.last && c.lastTs !== null && (it.lastTs === null || c.lastTs >= it.lastTs)) {
      it.lastTs = c.lastTs;
      it.preview = previewOf({
        body: c.last.body,
        from: c.last.from,
        kind: kindOf(c.last, state.me),
        convId: c.with,
      });
    }
    state.unread.seed(c.with, c.unread);
    renderItem(it);
    placeItem(it);
  }
  saveUnread();
}

ui.contacts.addEventListener("click", (e) => {
  const li = e.target.closest("li[data-conv]");
  if (li) openConversation(li.dataset.conv, { focusText: !isNarrow() });
});

sidebar.keyboard(ui.contacts, (id, how) => openConversation(id, { focusText: how === "Enter" }));

ui.newGroup.addEventListener("click", () => groupsUi.openCreate([]));
ui.groupMembers.addEventListener("click", () => {
  if (state.open && isGroupId(state.open)) groupsUi.openMembers(groupName(state.open));
});

// --------------------------------------------------------- conversations

function getConv(id) {
  let conv = state.convs.get(id);
  if (!conv) {
    conv = {
      id,
      msgs: new Map(),
      list: [],
      historyLoaded: false,
      historyDone: false,
      loading: false,
      loadError: "",
      cursor: null,
      /** day key -> its separator */
      days: new Map(),
    };
    state.convs.set(id, conv);
  }
  return conv;
}

const keyOf = (from, id) => from + "\u0000" + id;

function insertRec(conv, rec) {
  const i = insertIndex(conv.list, rec);
  conv.list.splice(i, 0, rec);
  if (state.open === conv.id) {
    const next = conv.list[i + 1];
    ui.messages.insertBefore(liOf(rec), next ? liOf(next) : null);
    ui.emptyState.hidden = true;
    syncSeparators(conv);
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
  const convId = into ? into.id : convOf(m, state.me);
  const conv = into || getConv(convId);
  const key = keyOf(m.from, m.id);
  const known = conv.msgs.get(key);
  const ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
  const seq = typeof m.seq === "number" ? m.seq : null;
  if (known) {
    // A redelivery, a history copy, or our own note coming back: it carries
    // the server's exact timestamp (and, from history, its seq and who
    // received it), and proves the message was accepted.
    let moved = false;
    if (known.pending || known.approx) {
      known.pending = false;
      known.approx = typeof m.timestamp !== "number";
      known.ts = ts;
      moved = true;
    }
    if (seq !== null && known.seq === null) {
      known.seq = seq;
      moved = true;
    }
    if (moved) reposition(conv, known);
    if (known.kind === "mine") {
      mergeReceivedBy(known, m.receivedBy);
      if (!known.acked && !known.error) {
        known.acked = true;
        dropFromOutbox(known.id);
      }
      renderStatus(known);
    }
    return null;
  }
  const kind = kindOf(m, state.me);
  const rec = {
    key,
    conv,
    id: m.id,
    from: m.from,
    to: typeof m.to === "string" ? m.to : "",
    body: typeof m.body === "string" ? m.body : String(m.body),
    ts,
    approx: typeof m.timestamp !== "number",
    pending: false,
    seq,
    local: ++state.local,
    kind,
    acked: kind === "mine",
    receivedBy: new Set(state.receipts.get(m.id) || []),
    error: "",
    li: null,
  };
  if (kind === "mine") mergeReceivedBy(rec, m.receivedBy);
  addRec(conv, rec);
  return rec;
}

function mergeReceivedBy(rec, list) {
  if (!Array.isArray(list)) return;
  for (const u of list) if (typeof u === "string") rec.receivedBy.add(u);
}

function addRec(conv, rec) {
  conv.msgs.set(rec.key, rec);
  if (rec.kind === "mine") {
    const list = state.mine.get(rec.id) || [];
    list.push(rec);
    state.mine.set(rec.id, list);
  }
  insertRec(conv, rec);
  noteActivity(conv.id, { ...rec, convId: conv.id });
}

// The message items, their separators and the divider: js/thread-view.js.
const view = {
  me: () => state.me,
  members: (id) => {
    const g = state.groups.get(groupName(id));
    return g ? g.members : null;
  },
};
const liOf = (rec) => threadView.liOf(rec, view);
const renderMeta = (rec) => threadView.renderMeta(rec, view);
const renderStatus = (rec) => threadView.renderStatus(rec, view);

/** The open conversation's separators and divider, brought up to date. */
function syncSeparators(conv) {
  if (state.open !== conv.id) return;
  const dividerKey = state.divider && state.divider.conv === conv.id ? state.divider.key : null;
  threadView.syncSeparators(ui.messages, conv, dividerKey, view);
}

function renderConversationHeader() {
  const id = state.open;
  ui.groupMembers.hidden = true;
  if (!id) {
    ui.convTitle.textContent = "No conversation open";
    ui.convSub.textContent = "";
    return;
  }
  if (isGroupId(id)) {
    const g = state.groups.get(groupName(id));
    ui.convTitle.textContent = g ? g.title : id;
    if (g) {
      ui.convSub.textContent = `${id} \u00b7 ${g.members.length} member${g.members.length === 1 ? "" : "s"}`;
      ui.groupMembers.hidden = false;
    } else {
      ui.convSub.textContent = state.notMember.has(groupName(id)) ? `${id} \u00b7 you are not a member` : id;
    }
    return;
  }
  ui.convTitle.textContent = id === SYSTEM ? "System messages" : id === state.me ? "Notes to self" : id;
  ui.convSub.textContent = id === SYSTEM ? "Notices from the server; they cannot be answered" : "";
}

function selectItem(id) {
  for (const it of state.items.values()) sidebar.select(it, it.id === id);
}

/** Opens conversation `id`, with its draft in the composer. opts:
 * {focusText, keepComposer (the To and the text stay as typed instead)}. */
function openConversation(id, opts) {
  opts = opts || {};
  if (state.open !== id) saveDraft();
  const conv = getConv(id);
  const wasOpen = state.open === id;
  state.open = id;
  if (state.me) store.set(openKey(state.me), id);
  ui.conversation.dataset.with = id;
  selectItem(id);
  // The divider marks what came while the conversation was not read.
  if (!wasOpen) {
    const count = state.unread.count(id);
    state.divider = null;
    if (count > 0) {
      // The unread texts may not be loaded yet (after a reload they come
      // from history): their keys are kept until they are.
      const keys = new Set(state.unread.keys(id));
      const i = dividerIndex(conv.list, (k) => keys.has(k), count);
      state.divider = { conv: id, key: i >= 0 ? conv.list[i].key : null, count, keys };
    }
  }
  state.unread.clear(id);
  refreshUnread(id);
  renderConversationHeader();
  setComposerError("");
  showSuggestion(null);
  if (!opts.keepComposer) {
    ui.to.value = id === SYSTEM ? "" : id;
    ui.text.value = state.me ? store.loadDraft(state.me, id).text : "";
    autoGrow();
  }

  const nodes = conv.list.map(liOf);
  ui.messages.replaceChildren(...nodes);
  syncSeparators(conv);
  ui.emptyState.hidden = nodes.length > 0 || !conv.historyDone;
  ui.emptyState.textContent = "No messages yet.";
  updateLoadOlder();
  if (state.divider && state.divider.conv === id && state.divider.key) scrollToDivider();
  else scrollToBottom();
  const it = state.items.get(id);
  if (it) it.li.scrollIntoView({ block: "nearest", inline: "nearest" });
  if (!conv.historyLoaded) loadOlder(conv);
  if (opts.focusText) ui.text.focus();
}

/** No conversation open (after leaving the open group, or when the only
 * text of a new one was refused). opts: {keepComposer}. */
function closeConversation(opts) {
  state.open = null;
  state.divider = null;
  if (state.me) store.remove(openKey(state.me));
  ui.conversation.dataset.with = "";
  selectItem(null);
  ui.messages.replaceChildren();
  if (!(opts && opts.keepComposer)) {
    ui.to.value = "";
    ui.text.value = "";
  }
  ui.emptyState.hidden = false;
  ui.emptyState.textContent = "Choose a conversation, or type recipients below to start one.";
  renderConversationHeader();
  updateLoadOlder();
}

function updateLoadOlder() {
  const conv = state.open ? state.convs.get(state.open) : null;
  const btn = ui.loadOlder;
  btn.hidden = !conv;
  if (!conv) return;
  btn.classList.toggle("done", conv.historyDone);
  btn.setAttribute("aria-busy", conv.loading ? "true" : "false");
  if (conv.loading) btn.textContent = "Loading\u2026";
  else if (conv.loadError) btn.textContent = "Could not load history: " + conv.loadError + " (retry)";
  else if (conv.historyDone) btn.textContent = "No older messages";
  else btn.textContent = "Load older messages";
}

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
}

/** The reader starts at the first new message, and the view stops
 * following the bottom until they scroll there. */
function scrollToDivider() {
  threadView.dividerLi.scrollIntoView({ block: "center" });
  state.stick = nearBottom();
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
  const gen = session.gen;
  conv.loading = true;
  conv.loadError = "";
  if (state.open === conv.id) updateLoadOlder();
  const q = new URLSearchParams(historyQuery(conv.id, conv.cursor, HISTORY_PAGE));
  let data;
  try {
    data = await api("GET", "/api/message/history?" + q.toString());
  } catch (e) {
    if (gen !== session.gen) return;
    conv.loading = false;
    if (e.status === 401) {
      loginExpired();
      return;
    }
    if (e.status === 403 && isGroupId(conv.id)) notAMember(groupName(conv.id));
    conv.loadError = e.message;
    if (state.open === conv.id) updateLoadOlder();
    return;
  }
  if (gen !== session.gen || state.convs.get(conv.id) !== conv) return;
  const page = (Array.isArray(data.messages) ? data.messages : []).filter(
    (m) => m && typeof m.id === "string" && typeof m.from === "string"
  );
  const first = !conv.historyLoaded;
  const isOpen = state.open === conv.id;
  const s = ui.scroller;
  const wasAtBottom = isOpen && nearBottom();
  const fromBottom = s.scrollHeight - s.scrollTop;
  conv.cursor = advanceCursor(conv.cursor, page);
  // Newest first on the wire; add oldest first so equal timestamps keep
  // the server's order.
  let added = 0;
  for (let i = page.length - 1; i >= 0; i--) {
    if (ingest(page[i], conv)) added += 1;
  }
  if (historyDone(page, HISTORY_PAGE)) conv.historyDone = true;
  conv.historyLoaded = true;
  conv.loading = false;
  if (isOpen && state.open === conv.id) {
    placeServerDivider(conv);
    ui.emptyState.hidden = conv.list.length > 0;
    updateLoadOlder();
    if (first && state.divider && state.divider.conv === conv.id && state.divider.key) {
      scrollToDivider();
    } else if (first || wasAtBottom) scrollToBottom();
    else s.scrollTop = s.scrollHeight - fromBottom;
  }
  if (page.length > 0 && added === 0 && !conv.historyDone && chainLeft > 0) loadOlder(conv, chainLeft - 1);
}

/** A divider owed to the server's unread count, placed once history is in. */
function placeServerDivider(conv) {
  const d = state.divider;
  if (!d || d.conv !== conv.id || d.key) return;
  const i = dividerIndex(conv.list, (k) => d.keys.has(k), d.count);
  if (i >= 0) {
    d.key = conv.list[i].key;
    syncSeparators(conv);
  }
}

/** After a reconnect, history that failed to load while offline is asked for again. */
function retryHistory() {
  for (const conv of state.convs.values()) {
    if (!conv.loadError) continue;
    conv.loadError = "";
    if (state.open === conv.id) {
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

// Texts that came while the page was hidden are read once it is shown again.
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !state.open || !state.unread.count(state.open)) return;
  state.unread.clear(state.open);
  refreshUnread(state.open);
});

// ----------------------------------------------------------------- outbox

function saveOutbox() {
  if (!state.me) return;
  if (state.outbox.length) store.setJSON(outboxKey(state.me), state.outbox);
  else store.remove(outboxKey(state.me));
}

function loadOutbox() {
  state.outbox = [];
  const items = store.getJSON(outboxKey(state.me));
  if (!Array.isArray(items)) return;
  for (const it of items) {
    if (it && typeof it.id === "string" && typeof it.to === "string" && typeof it.body === "string") {
      state.outbox.push({ id: it.id, to: it.to, body: it.body });
      showPending(it);
    }
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

/** An own message shown before the server has answered. Its conversation
 * gets a sidebar item only once the server accepts the text, unless it is
 * one the page already knows. */
function showPending(item) {
  const conv = getConv(convOf({ from: state.me, to: item.to, isSystem: false }, state.me));
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
    seq: null,
    local: ++state.local,
    kind: "mine",
    acked: false,
    receivedBy: new Set(state.receipts.get(item.id) || []),
    error: "",
    li: null,
  };
  addRec(conv, rec);
  return rec;
}

function flushOutbox() {
  for (const item of state.outbox) sendFrame(textFrame(state.me, item));
}

function setComposerError(text) {
  ui.composerError.textContent = text;
  ui.composerError.hidden = !text;
}

/** The suggestion to make a group of several recipients (or none). */
let suggested = null;
function showSuggestion(users) {
  suggested = users;
  ui.suggestGroup.hidden = !users;
  ui.suggestGroupText.textContent = users
    ? `A text to several people goes to a group here, so that replies reach everyone: ${users.join(", ")}.`
    : "";
}

ui.suggestGroupCreate.addEventListener("click", () => {
  if (suggested) groupsUi.openCreate(suggested);
});

function saveDraft() {
  if (!state.me) return;
  store.saveDraft(state.me, state.open || "", { to: ui.to.value, text: ui.text.value });
}

function sendFromComposer() {
  const body = ui.text.value;
  if (!body.trim()) {
    ui.text.focus();
    return;
  }
  const recipients = splitTo(ui.to.value);
  showSuggestion(null);
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
  if (recipients.some(isGroupId) && recipients.length > 1) {
    setComposerError("A group must be the only recipient.");
    ui.to.focus();
    return;
  }
  // Decision (issue 13): a text to `bob, carol` would scatter over one thread
  // per recipient and lose its replies-to-all; the page offers a group instead.
  const several = severalRecipients(recipients, state.me);
  if (several) {
    setComposerError("");
    showSuggestion(several);
    ui.suggestGroupCreate.focus();
    return;
  }
  const item = { id: uuid(), to: recipients.join(","), body };
  if (frameBytes(textFrame(state.me, item)) > MAX_FRAME_BYTES) {
    setComposerError("This message is too long to send; split it into parts.");
    return;
  }
  setComposerError("");
  state.outbox.push(item);
  saveOutbox();
  const rec = showPending(item);
  const id = rec.conv.id;
  // What was typed is sent: no draft is left of it, here or in the
  // conversation the composer belonged to until now.
  ui.text.value = "";
  autoGrow();
  if (state.open !== id) openConversation(id, { focusText: true, keepComposer: true });
  saveDraft();
  // Writing ends "new messages": the reader has seen them.
  if (state.divider && state.divider.conv === id) {
    state.divider = null;
    syncSeparators(rec.conv);
  }
  scrollToBottom();
  if (conn.registered) sendFrame(textFrame(state.me, item));
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
ui.text.addEventListener("input", () => {
  autoGrow();
  saveDraft();
});
ui.to.addEventListener("input", () => {
  showSuggestion(null);
  saveDraft();
});

// -------------------------------------------------------------- WebSocket

const conn = new Connection({
  me: () => state.me,
  clientName,
  newId: uuid,
  state: (s) => setConnState(s),
  registered: () => onRegistered(),
  refused: (st) => onRegisterRefused(st),
  frame: (m) => onFrame(m),
  down: () => {
    // Without a connection nobody is known to be online.
    stopPolling();
    state.presence.reset();
    renderDots();
  },
  closed: (code, reason) => onClosed(code, reason),
  expired: () => loginExpired(),
});

function sendFrame(frame) {
  return conn.send(frame);
}

/** Start (or restart) the connection now, forgetting the backoff. */
function connectNow() {
  setNotice("");
  conn.start();
}

function stopPolling() {
  if (state.pollTimer) window.clearInterval(state.pollTimer);
  if (state.graceTimer) window.clearTimeout(state.graceTimer);
  if (state.directorySoon) window.clearTimeout(state.directorySoon);
  state.pollTimer = null;
  state.graceTimer = null;
  state.directorySoon = null;
}

function onClosed(code, reason) {
  if (code === 4000) {
    setNotice("This chat was opened in another tab or window of this browser.", true);
    return;
  }
  if (code === 1009) {
    // A message larger than the server allows: it would close every retry too.
    const biggest = state.outbox.reduce((a, m) => (!a || m.body.length > a.body.length ? m : a), null);
    if (biggest) markError(biggest.id, "message too big");
  }
  if (code === 1008 && reason && reason !== "slow" && reason !== "register timeout") {
    setNotice("The server refused this connection (" + reason + "); retrying.", false);
  }
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

/** A text refused with 406 (a recipient that does not exist, a group the
 * user is not in). When its conversation is one the page does not know,
 * the conversation goes away with it: a typo never becomes a contact. The
 * text goes back into the composer to be readdressed. */
function refusedRecipient(id, msg, serverTs) {
  const recs = state.mine.get(id) || [];
  const rec = recs[0];
  if (!rec || rec.acked) return;
  const conv = rec.conv;
  if (state.items.has(conv.id)) {
    markError(id, msg, serverTs);
    return;
  }
  dropFromOutbox(id);
  state.mine.delete(id);
  conv.msgs.delete(rec.key);
  conv.list = conv.list.filter((r) => r !== rec);
  if (rec.li) rec.li.remove();
  const stillUsed = conv.list.length > 0;
  if (!stillUsed) state.convs.delete(conv.id);
  // The composer takes the text back to be readdressed, unless it holds
  // another text now (the refused one was restored from the outbox).
  if (state.open === conv.id || !ui.text.value) {
    if (state.open === conv.id && !stillUsed) closeConversation({ keepComposer: true });
    if (!ui.text.value) ui.text.value = rec.body;
    ui.to.value = rec.to;
    autoGrow();
    saveDraft();
    setComposerError("Not sent: " + msg + ". Check the To field.");
    ui.to.focus();
  } else {
    announce("Not sent: " + msg);
  }
}

function onFrame(m) {
  const type = m.type;
  if (type === TYPE_SEND_STATUS) onSendStatus(m);
  else if (type === TYPE_TEXT) onText(m);
  else if (type === TYPE_RECEIVE_STATUS) onReceipt(m);
  else if (type === TYPE_PRESENCE) onPresence(m);
}

function onSendStatus(m) {
  const st = parseStatus(m.body);
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
        // Accepted: the conversation is real now.
        ensureItem(rec.conv.id);
        selectItem(state.open);
        noteActivity(rec.conv.id, { ...rec, convId: rec.conv.id });
      }
    } else if (st.code === 406) {
      refusedRecipient(m.id, st.msg || "unknown recipient", m.timestamp);
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

function onRegistered() {
  setNotice("");
  flushOutbox();
  refreshDirectory();
  refreshGroups();
  retryHistory();
  // A version 1 server sends no 3001: the dots then come from polling.
  state.graceTimer = window.setTimeout(() => {
    state.graceTimer = null;
    if (!state.presence.live && conn.registered) {
      refreshDirectory();
      state.pollTimer = window.setInterval(refreshDirectory, POLL_EVERY_MS);
    }
  }, PRESENCE_GRACE_MS);
}

function onRegisterRefused(st) {
  if (st.code === 405) {
    // The cookie belongs to another user than the one this page thinks.
    loginExpired();
    return;
  }
  if (st.code === 400) {
    setNotice("The server refused this connection: " + (st.msg || st.status) + ". Retrying.", false);
  }
}

function onPresence(m) {
  const changed = state.presence.apply(m.body);
  if (state.pollTimer) {
    window.clearInterval(state.pollTimer);
    state.pollTimer = null;
  }
  let unknown = false;
  for (const u of changed) {
    const it = state.items.get(u);
    if (it) renderDot(it);
    else if (!state.directory.has(u)) unknown = true;
  }
  // Someone the directory does not list yet (a user added since): fetch it.
  if (unknown) refreshDirectorySoon();
}

function onText(m) {
  if (typeof m.id !== "string" || typeof m.from !== "string") return;
  // Acknowledge every text, also repeats: that is what stops redelivery.
  state.acks.set(m.id, (state.acks.get(m.id) || 0) + 1);
  sendFrame(ackFrame(state.me, m));
  const convId = convOf(m, state.me);
  if (isGroupId(convId)) {
    const name = groupName(convId);
    const known = state.groups.has(name);
    // An announcement changes the members (or the title); a text from a
    // group the page does not know yet (the user was just added) brings it.
    if (!known || isSystemMessage(m)) {
      fetchGroup(name).then(() => {
        if (state.leftHere.has(name)) return;
        showLive(m);
      });
      return;
    }
  }
  showLive(m);
}

function showLive(m) {
  const convId = convOf(m, state.me);
  const openBefore = state.open;
  const atBottom = nearBottom();
  if (!state.items.has(convId) && !(isGroupId(convId) && state.leftHere.has(groupName(convId)))) {
    ensureItem(convId);
  }
  const rec = ingest(m);
  if (!rec) return;
  if (rec.kind !== "mine") {
    const reading = convId === openBefore && !document.hidden;
    if (!reading) {
      state.unread.add(convId, rec.key);
      if (convId === openBefore && !state.divider) {
        // Open but hidden: mark where the reader left off.
        state.divider = { conv: convId, key: rec.key, count: 1, keys: new Set([rec.key]) };
        syncSeparators(rec.conv);
      }
      refreshUnread(convId);
    }
    if (convId === openBefore && atBottom) scrollToBottom();
    const who = rec.kind === "system" || rec.kind === "announce" ? "System" : rec.from;
    announce(convId === openBefore ? `${who}: ${rec.body}` : `New message in ${displayName(convId)}`);
  } else if (convId === openBefore && atBottom) {
    scrollToBottom();
  }
}

function onReceipt(m) {
  if (typeof m.id !== "string" || typeof m.from !== "string") return;
  const who = state.receipts.get(m.id) || new Set();
  who.add(m.from);
  state.receipts.set(m.id, who);
  if (inOutbox(m.id)) dropFromOutbox(m.id);
  for (const rec of state.mine.get(m.id) || []) {
    if (rec.error) continue;
    rec.receivedBy.add(m.from);
    rec.acked = true;
    if (rec.pending) {
      rec.pending = false;
      rec.ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
      reposition(rec.conv, rec);
    }
    renderStatus(rec);
  }
}

ui.reconnect.addEventListener("click", () => connectNow());

window.addEventListener("online", () => {
  if (state.me && !conn.stopped && !conn.registered) connectNow();
});

// ------------------------------------------------------- login / logout

/** Shows the chat for `userId`; `users` is a directory already fetched. */
async function startSession(userId, users) {
  state.me = userId;
  store.set(KEY_USER, userId);
  session.gen += 1;
  const gen = session.gen;
  state.unread = new UnreadBook(store.getJSON(unreadKey(userId)));
  showChat();
  ensureItem(userId);
  ensureItem(SYSTEM);
  ui.emptyState.hidden = false;
  ui.emptyState.textContent = "Choose a conversation, or type recipients below to start one.";
  updateLoadOlder();
  setConnState("connecting");
  // The sidebar first (directory, groups, then the conversations, which
  // need the groups), so that "connected" finds it filled in.
  await Promise.all([users ? applyUsers(users) : refreshDirectory(), refreshGroups()]);
  if (gen !== session.gen || !state.me) return;
  await loadConversations();
  if (gen !== session.gen || !state.me) return;
  loadOutbox();
  restoreOpen();
  updateTitle();
  focusContactsOnce();
  connectNow();
}

/** The conversation open before the reload, with its draft; or the draft
 * of a new message. */
function restoreOpen() {
  const id = store.get(openKey(state.me));
  if (id && (state.items.has(id) || state.convs.has(id))) {
    openConversation(id, {});
    return;
  }
  const d = store.loadDraft(state.me, "");
  ui.to.value = d.to;
  ui.text.value = d.text;
  autoGrow();
}

/** Forget everything about the session on this page. */
function endSession() {
  session.gen += 1;
  conn.stop("logout");
  setConnState("offline");
  setNotice("");
  groupsUi.closeAll();
  state.me = null;
  state.directory = new Set();
  state.items.clear();
  state.convs.clear();
  state.groups.clear();
  state.notMember.clear();
  state.leftHere.clear();
  state.open = null;
  state.divider = null;
  state.outbox = [];
  state.mine.clear();
  state.receipts.clear();
  state.acks.clear();
  state.unread = new UnreadBook();
  ui.contacts.replaceChildren();
  ui.messages.replaceChildren();
  ui.conversation.dataset.with = "";
  ui.to.value = "";
  ui.text.value = "";
  setComposerError("");
  showSuggestion(null);
  store.remove(KEY_USER);
}

function loginExpired() {
  if (!state.me) return;
  const user = state.me;
  saveDraft();
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
  // Logging out on purpose: the next person at this browser finds no
  // drafts and no open conversation of this user.
  if (user) {
    store.dropDrafts(user);
    store.remove(openKey(user));
  }
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
  const stored = store.get(KEY_USER);
  if (!stored) {
    // Behind a single-sign-on proxy (auth.mode = "header") the server
    // already knows who this is and says so here; otherwise it is the
    // login form. This endpoint needs no login, so it never logs a 401.
    const sso = await ssoUser();
    if (sso) {
      startSession(sso);
      return;
    }
    showLogin("");
    return;
  }
  try {
    const data = await api("GET", "/api/users");
    const users = Array.isArray(data.users) ? data.users : [];
    if (!users.some((u) => u && u.userId === stored)) {
      store.remove(KEY_USER);
      showLogin("");
      return;
    }
    startSession(stored, users);
  } catch (e) {
    if (e.status === 401) {
      store.remove(KEY_USER);
      ui.loginUser.value = stored;
      showLogin("");
      return;
    }
    // The server is not reachable right now: show the chat and keep trying.
    startSession(stored);
  }
}

/** The user a trusted single-sign-on proxy names, if the server says so. */
async function ssoUser() {
  try {
    const data = await api("GET", "/api/websocket/url");
    return typeof data.user === "string" && data.user ? data.user : null;
  } catch (e) {
    return null;
  }
}

boot();
