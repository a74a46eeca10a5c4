// Where a message goes in a conversation, and which page of history to ask
// for next. Live frames carry the server's timestamp but no `seq`; history
// (1.1) carries both. Messages are ordered by timestamp, then by the server's
// acceptance number when both have one (many texts share a millisecond), then
// in the order this page learned of them. A message not yet accepted
// (pending) sorts last.

/** A record's place: {ts, pending, seq (server's, or null), local (page's counter)}. */
export function compareMessages(a, b) {
  const ta = a.pending ? Infinity : a.ts;
  const tb = b.pending ? Infinity : b.ts;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (typeof a.seq === "number" && typeof b.seq === "number" && a.seq !== b.seq) {
    return a.seq - b.seq;
  }
  return a.local - b.local;
}

/** The index at which `rec` keeps `list` (already sorted) sorted. New
 * messages belong at the end almost always, so the search starts there. */
export function insertIndex(list, rec) {
  let i = list.length;
  while (i > 0 && compareMessages(list[i - 1], rec) > 0) i--;
  return i;
}

/** Default and largest history page (PROTOCOL §9). */
export const HISTORY_PAGE = 50;

/** The query for the page older than what `cursor` has seen:
 * cursor = {oldestSeq, oldestTs}. A 1.1 server pages by `beforeSeq` (exact,
 * even across texts that share a millisecond); a version 1 one by `before`. */
export function historyQuery(withId, cursor, limit = HISTORY_PAGE) {
  const q = { with: withId, limit: String(limit) };
  if (cursor && typeof cursor.oldestSeq === "number") q.beforeSeq = String(cursor.oldestSeq);
  else if (cursor && typeof cursor.oldestTs === "number") q.before = String(cursor.oldestTs);
  return q;
}

/** Folds one page (newest first) into the cursor. */
export function advanceCursor(cursor, page) {
  const next = { oldestSeq: cursor ? cursor.oldestSeq : null, oldestTs: cursor ? cursor.oldestTs : null };
  for (const m of page) {
    if (!m) continue;
    if (typeof m.seq === "number") next.oldestSeq = next.oldestSeq === null ? m.seq : Math.min(next.oldestSeq, m.seq);
    if (typeof m.timestamp === "number") {
      next.oldestTs = next.oldestTs === null ? m.timestamp : Math.min(next.oldestTs, m.timestamp);
    }
  }
  return next;
}

/** Whether `page` was the last one. A 1.1 server's pages are exact, so a
 * short page is the end; a version 1 server's could end early, so only an
 * empty page is the end there. */
export function historyDone(page, limit = HISTORY_PAGE) {
  if (page.length === 0) return true;
  const exact = page.some((m) => m && typeof m.seq === "number");
  return exact && page.length < limit;
}
