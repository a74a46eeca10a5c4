// Unread counts that survive a reload.
//
// The page acknowledges (9101) every text the moment it arrives: that is
// what stops the server redelivering it, and what gives the sender ✓✓. The
// server's `unread` (GET /api/conversations) counts texts that none of the
// user's clients acknowledged, so it only ever sees texts that came while
// every client was away. "Read" is therefore the page's own notion: a text
// is unread when it arrived while its conversation was not open in front of
// the reader, until the reader opens that conversation. The page keeps the
// keys of those texts per user in localStorage, so a reload (and a
// redelivery of the same text) neither loses nor double-counts them, and
// seeds each conversation with the server's count at load: a conversation
// shows the larger of the two, since the texts the server counts arrive
// again (redelivered) and are then among the page's own keys.

/** At most this many keys are kept per conversation (the count shown
 * saturates there; the storage stays small). */
export const MAX_KEYS = 500;

export class UnreadBook {
  /** `saved`: what toJSON gave, or anything else (ignored). */
  constructor(saved) {
    /** conv -> {keys: Set, server: n} */
    this.convs = new Map();
    if (saved && typeof saved === "object" && !Array.isArray(saved)) {
      for (const [conv, v] of Object.entries(saved)) {
        if (!v || typeof v !== "object") continue;
        const keys = Array.isArray(v.keys) ? v.keys.filter((k) => typeof k === "string") : [];
        const server = Number.isInteger(v.server) && v.server > 0 ? v.server : 0;
        if (keys.length || server) this.convs.set(conv, { keys: new Set(keys.slice(-MAX_KEYS)), server });
      }
    }
  }

  entry(conv) {
    let e = this.convs.get(conv);
    if (!e) {
      e = { keys: new Set(), server: 0 };
      this.convs.set(conv, e);
    }
    return e;
  }

  /** The server's count at load (texts no client acknowledged). */
  seed(conv, serverCount) {
    if (!(serverCount > 0)) return;
    this.entry(conv).server = serverCount;
  }

  /** A text arrived while its conversation was not being read. Returns
   * whether it was new (a redelivery of a counted text is not). */
  add(conv, key) {
    const e = this.entry(conv);
    if (e.keys.has(key)) return false;
    e.keys.add(key);
    if (e.keys.size > MAX_KEYS) e.keys.delete(e.keys.values().next().value);
    return true;
  }

  /** The reader opened the conversation. */
  clear(conv) {
    this.convs.delete(conv);
  }

  count(conv) {
    const e = this.convs.get(conv);
    return e ? Math.max(e.keys.size, e.server) : 0;
  }

  /** Whether the text `key` of `conv` is among the unread ones. */
  has(conv, key) {
    const e = this.convs.get(conv);
    return Boolean(e && e.keys.has(key));
  }

  /** The keys of the texts counted unread in `conv`. */
  keys(conv) {
    const e = this.convs.get(conv);
    return e ? Array.from(e.keys) : [];
  }

  total() {
    let n = 0;
    for (const conv of this.convs.keys()) n += this.count(conv);
    return n;
  }

  toJSON() {
    const out = {};
    for (const [conv, e] of this.convs) {
      if (e.keys.size || e.server) out[conv] = { keys: Array.from(e.keys), server: e.server };
    }
    return out;
  }
}

/** Where the "new messages" divider goes in `list` (records in display
 * order, each {key, kind}): before the first text counted unread, or, when
 * the page holds none of their keys (only the server's count), before the
 * last `count` texts from others. -1: no divider. */
export function dividerIndex(list, isUnread, count) {
  if (count <= 0) return -1;
  const i = list.findIndex((r) => r.kind !== "mine" && isUnread(r.key));
  if (i >= 0) return i;
  let left = count;
  for (let j = list.length - 1; j >= 0; j--) {
    if (list[j].kind === "mine") continue;
    left -= 1;
    if (left === 0) return j;
  }
  return list.length ? 0 : -1;
}
