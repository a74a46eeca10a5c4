// How a conversation looks: one item per message (text, meta line, the
// status of an own message), day separators ("Today", "Yesterday", the date)
// and the "new messages" divider. Text from the network only reaches the
// page through textContent. ctx: {me(): the user id, members(#group): the
// group's members or null}.

import { el, LOCALE } from "./dom.js";
import { dayKey, dayLabel, fullLabel, timeLabel } from "./dates.js";
import { isGroupId, splitTo } from "./proto.js";
import { receivers, recipientCount, statusLabel } from "./receipts.js";

/** The one "new messages" divider; it moves to the conversation on screen. */
export const dividerLi = el("li", "new-divider");
dividerLi.dataset.sep = "new";
dividerLi.setAttribute("role", "separator");
dividerLi.append(el("span", "", "New messages"));

/** The item of message record `rec`, made once. */
export function liOf(rec, ctx) {
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
  renderMeta(rec, ctx);
  renderStatus(rec, ctx);
  return li;
}

/** Who wrote it (in a group, or the server), to whom when several, and when. */
export function renderMeta(rec, ctx) {
  if (!rec.li) return;
  const me = ctx.me();
  const meta = rec.li.querySelector(".meta");
  const recipients = splitTo(rec.to);
  const parts = [];
  if (rec.kind === "theirs") parts.push(rec.from);
  if (rec.kind === "system") parts.push("System");
  if (recipients.length > 1) {
    parts.push("to " + recipients.map((u) => (u === me ? "you" : u)).join(", "));
  }
  parts.push(timeLabel(rec.pending ? Date.now() : rec.ts, LOCALE));
  meta.textContent = parts.join(" \u00b7 ");
  meta.title = rec.pending ? "not sent yet" : fullLabel(rec.ts, LOCALE);
}

/** An own message's status: sending, ✓, ✓✓ or "✓✓ n/m", or the error. */
export function renderStatus(rec, ctx) {
  if (!rec.li || rec.kind !== "mine") return;
  const me = ctx.me();
  const status = rec.li.querySelector(".status");
  const to = splitTo(rec.to);
  const group = to.length === 1 && isGroupId(to[0]);
  const selfNote = to.length === 1 && to[0] === me;
  const label = statusLabel({
    error: rec.error,
    acked: rec.acked,
    received: receivers(rec.receivedBy, me, selfNote).size,
    total: recipientCount(to, me, group ? ctx.members(to[0]) : null),
    many: group || to.filter((u) => u !== me).length > 1,
  });
  status.textContent = label.text;
  status.title = label.title;
  status.classList.toggle("counted", /\d/.test(label.text) && !rec.error);
  status.classList.toggle("error", Boolean(rec.error));
  status.classList.toggle("pending", !label.text);
  rec.li.classList.toggle("failed", Boolean(rec.error));
}

/** Day separators and the divider (before the record keyed `dividerKey`)
 * between the items of `conv.list` in `listEl`, added and removed around
 * the message items without moving those (a reader's text selection
 * survives a new message). `conv.days` keeps one separator per day. */
export function syncSeparators(listEl, conv, dividerKey, ctx) {
  const now = Date.now();
  const expected = [];
  let lastDay = null;
  for (const rec of conv.list) {
    const at = rec.pending ? now : rec.ts;
    const day = dayKey(at);
    if (day !== lastDay) {
      let sep = conv.days.get(day);
      if (!sep) {
        sep = el("li", "day-sep");
        sep.dataset.sep = "day";
        sep.setAttribute("role", "separator");
        conv.days.set(day, sep);
      }
      const label = dayLabel(at, now, LOCALE);
      if (sep.textContent !== label) sep.textContent = label;
      expected.push(sep);
      lastDay = day;
    }
    if (rec.key === dividerKey) expected.push(dividerLi);
    expected.push(liOf(rec, ctx));
  }
  const want = new Set(expected);
  let k = 0;
  for (const node of expected) {
    for (;;) {
      const cur = listEl.children[k];
      if (cur === node) break;
      if (cur && cur.dataset.sep && !want.has(cur)) {
        cur.remove();
        continue;
      }
      listEl.insertBefore(node, cur || null);
      break;
    }
    k++;
  }
  while (listEl.children.length > k) listEl.lastElementChild.remove();
}
