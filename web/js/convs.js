// Which conversation a message belongs to, and the order of the sidebar.
// A conversation is named by who the page talks to: a user id, `#name` for
// a group, or SYSTEM for the server's notices.

import { SYSTEM, isGroupId, splitTo } from "./proto.js";

export function isSystemMessage(m) {
  return m.isSystem === true || m.from === SYSTEM;
}

/** The conversation of message `m` for user `me`. A group's texts and its
 * announcements (system texts to `#name`) belong to the group; other system
 * texts to SYSTEM; a text from me to the first other recipient (a text to
 * several users is shown once, in the first one's thread, with its
 * recipients in its meta line); a text to me to its sender. */
export function convOf(m, me) {
  const to = splitTo(m.to);
  if (to.length === 1 && isGroupId(to[0])) return to[0];
  if (isSystemMessage(m)) return SYSTEM;
  if (m.from === me) {
    const others = to.filter((u) => u !== me);
    return others.length ? others[0] : me;
  }
  return m.from;
}

/** mine | theirs | system (the server's notices) | announce (a group's). */
export function kindOf(m, me) {
  if (isSystemMessage(m)) return isGroupId(convOf(m, me)) ? "announce" : "system";
  return m.from === me ? "mine" : "theirs";
}

/** Sidebar order: conversations with activity first, newest first; then the
 * rest by kind (groups, people, notes to self, system) and name.
 * Items: {id, lastTs (number or null), me}. */
export function compareSidebar(a, b) {
  const la = typeof a.lastTs === "number";
  const lb = typeof b.lastTs === "number";
  if (la !== lb) return la ? -1 : 1;
  if (la && a.lastTs !== b.lastTs) return b.lastTs - a.lastTs;
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function rank(item) {
  if (isGroupId(item.id)) return 0;
  if (item.id === SYSTEM) return 3;
  if (item.id === item.me) return 2;
  return 1;
}

/** The conversations of GET /api/conversations (1.1), checked; [] from a
 * version 1 server (404) or a malformed answer. */
export function parseConversations(data) {
  const list = data && Array.isArray(data.conversations) ? data.conversations : [];
  const out = [];
  for (const c of list) {
    if (!c || typeof c.with !== "string" || !c.with) continue;
    const last = c.last && typeof c.last === "object" ? c.last : null;
    out.push({
      with: c.with,
      last,
      lastTs: last && typeof last.timestamp === "number" ? last.timestamp : null,
      unread: Number.isInteger(c.unread) && c.unread > 0 ? c.unread : 0,
    });
  }
  return out;
}

/** A group as the API gives it, checked, or null. */
export function parseGroup(g) {
  if (!g || typeof g.name !== "string" || !g.name) return null;
  const ids = (l) => (Array.isArray(l) ? l.filter((u) => typeof u === "string") : []);
  return {
    name: g.name,
    title: typeof g.title === "string" && g.title ? g.title : g.name,
    members: ids(g.members),
    owners: ids(g.owners),
    createdAt: typeof g.createdAt === "number" ? g.createdAt : null,
  };
}

/** Several users in the To field: the page suggests a group instead of
 * scattering the text over one thread per recipient. Returns the users
 * other than me when there are two or more, else null. */
export function severalRecipients(recipients, me) {
  const others = recipients.filter((u) => u !== me && !isGroupId(u));
  return others.length >= 2 ? others : null;
}

/** A group name suggested by a title: "Night shift" -> "night-shift". */
export function slug(title) {
  return String(title)
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
}
