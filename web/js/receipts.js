// What the status of an own message shows. ✓: the server has it. ✓✓: a
// recipient's device has it. For a group (or a text to several users)
// "✓✓ 3/5": how many of the recipients, the sender not counted, have it.

/** Who counts as having received a message sent by `me`: everyone in
 * `receivedBy` but me, except in a note to self, where only I can. */
export function receivers(receivedBy, me, selfNote) {
  const out = new Set();
  for (const u of receivedBy) if (selfNote || u !== me) out.add(u);
  return out;
}

/** The number of recipients of a text `to` (split) from `me`, given the
 * group's members when it went to a group (null when they are unknown). */
export function recipientCount(to, me, groupMembers) {
  if (to.length === 1 && to[0].startsWith("#")) {
    return groupMembers ? groupMembers.filter((u) => u !== me).length : null;
  }
  const others = to.filter((u) => u !== me);
  return others.length === 0 ? 1 : others.length;
}

/** {text, title} for a message's status.
 * s = {error, pending, acked, received (count), total (number or null), many (bool)} */
export function statusLabel(s) {
  if (s.error) return { text: s.error, title: "Not sent" };
  if (s.received > 0) {
    if (!s.many) return { text: "\u2713\u2713", title: "Delivered" };
    const total = s.total === null ? null : Math.max(s.total, s.received);
    const text = total === null ? `\u2713\u2713 ${s.received}` : `\u2713\u2713 ${s.received}/${total}`;
    const title = total === null ? `Delivered to ${s.received}` : `Delivered to ${s.received} of ${total}`;
    return { text, title };
  }
  if (s.acked) return { text: "\u2713", title: "Sent" };
  return { text: "", title: "Sending\u2026" };
}
