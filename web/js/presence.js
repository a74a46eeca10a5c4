// Who is online, from the server's presence frames (type 3001, PROTOCOL §11):
// the first frame after a register is a snapshot, later ones are deltas.
// A version 1 server sends none; the page then falls back to the online
// flags of GET /api/users (`fromDirectory`).

/** A 3001 body (a JSON string, or an object) as {online, offline}, or null. */
export function parsePresence(body) {
  let b = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch (_) {
      return null;
    }
  }
  if (!b || typeof b !== "object") return null;
  const ids = (list) => (Array.isArray(list) ? list.filter((u) => typeof u === "string") : []);
  return { online: ids(b.online), offline: ids(b.offline) };
}

export class Presence {
  constructor() {
    this.online = new Set();
    /** true once a 3001 arrived on this connection: polling is not needed */
    this.live = false;
    this.awaitingSnapshot = true;
  }

  /** The connection is gone: nobody is known to be online until the next
   * snapshot, so every dot turns grey. */
  reset() {
    this.online.clear();
    this.live = false;
    this.awaitingSnapshot = true;
  }

  /** Applies one 3001 body; returns the users whose state changed. */
  apply(body) {
    const p = parsePresence(body);
    if (!p) return new Set();
    const before = new Set(this.online);
    if (this.awaitingSnapshot) {
      this.online = new Set(p.online);
      this.awaitingSnapshot = false;
    } else {
      for (const u of p.offline) this.online.delete(u);
      for (const u of p.online) this.online.add(u);
    }
    this.live = true;
    return symmetricDifference(before, this.online);
  }

  /** The online flags of GET /api/users, used only while no 3001 came. */
  fromDirectory(users) {
    if (this.live || !Array.isArray(users)) return new Set();
    const before = new Set(this.online);
    this.online = new Set(
      users.filter((u) => u && typeof u.userId === "string" && u.online === true).map((u) => u.userId)
    );
    return symmetricDifference(before, this.online);
  }

  /** What a dot shows: nobody is online while the page is disconnected. */
  isOnline(userId, connected) {
    return connected && this.online.has(userId);
  }
}

function symmetricDifference(a, b) {
  const out = new Set();
  for (const x of a) if (!b.has(x)) out.add(x);
  for (const x of b) if (!a.has(x)) out.add(x);
  return out;
}
