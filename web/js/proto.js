// The wire protocol as the page speaks it (docs/PROTOCOL.md): type codes,
// recipients, status bodies and the frames the page sends. No DOM here, so
// `node --test tests/web/` checks it.

export const TYPE_REGISTER = 1000;
export const TYPE_TEXT = 2001;
export const TYPE_PRESENCE = 3001;
export const TYPE_SEND_STATUS = 9001;
export const TYPE_RECEIVE_STATUS = 9101;
export const SYSTEM = "SYSTEM";

/** The server's default largest message; a bigger frame would close the socket (1009). */
export const MAX_FRAME_BYTES = 64 * 1024;

/** A group's name (PROTOCOL §10); written `#name` wherever a recipient is named. */
export const GROUP_NAME_RE = /^[a-z0-9._-]{1,63}$/;
/** A user id (PROTOCOL §2). */
export const USER_ID_RE = /^[A-Za-z0-9._@-]{1,64}$/;

/** Recipients as the server normalises them: trimmed, no empties, no duplicates. */
export function splitTo(to) {
  const seen = [];
  for (const part of String(to || "").split(",")) {
    const t = part.trim();
    if (t && !seen.includes(t)) seen.push(t);
  }
  return seen;
}

/** `#ops` names a group; `#` is never part of a user id. */
export function isGroupId(id) {
  return typeof id === "string" && id.startsWith("#");
}

export const groupId = (name) => "#" + name;
export const groupName = (id) => (isGroupId(id) ? id.slice(1) : id);

/** A StatusBody, from a JSON string or an object, never throwing. */
export function parseStatus(body) {
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

/** A frame from the socket, or null when it is not a JSON object. */
export function parseFrame(data) {
  if (typeof data !== "string") return null;
  try {
    const m = JSON.parse(data);
    return m && typeof m === "object" && !Array.isArray(m) ? m : null;
  } catch (_) {
    return null;
  }
}

/** The register frame. It asks for presence frames (3001, PROTOCOL §11);
 * a version 1 server ignores the extra field. */
export function registerFrame(id, me, sessionId) {
  return JSON.stringify({
    id,
    type: TYPE_REGISTER,
    isSystem: false,
    from: me,
    to: SYSTEM,
    body: JSON.stringify({ sessionId, presence: true }),
  });
}

export function textFrame(me, item) {
  return JSON.stringify({
    id: item.id,
    type: TYPE_TEXT,
    isSystem: false,
    from: me,
    to: item.to,
    body: item.body,
  });
}

/** The 9101 acknowledging the text `m`: to its sender, or to SYSTEM for a
 * system message (a group's announcements included). */
export function ackFrame(me, m) {
  const isSystem = m.isSystem === true || m.from === SYSTEM;
  return JSON.stringify({
    id: m.id,
    type: TYPE_RECEIVE_STATUS,
    isSystem: false,
    from: me,
    to: isSystem ? SYSTEM : m.from,
    body: JSON.stringify({ code: 200, status: "SUCCESS", msg: "received" }),
  });
}

export function frameBytes(frame) {
  return new TextEncoder().encode(frame).length;
}
