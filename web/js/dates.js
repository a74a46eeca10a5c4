// Dates and times in the reader's locale (Intl), for the day separators in
// a conversation ("Today", "Yesterday", or the date) and the message times.

/** A local calendar day, as a key that sorts and compares. */
export function dayKey(ms) {
  const d = new Date(ms);
  return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
}

/** Whole calendar days from `ms`'s day to `now`'s (0 today, 1 yesterday). */
export function daysAgo(ms, now) {
  const a = new Date(ms);
  const b = new Date(now);
  // Noon avoids the hour a daylight-saving change adds or removes.
  const da = Date.UTC(a.getFullYear(), a.getMonth(), a.getDate(), 12);
  const db = Date.UTC(b.getFullYear(), b.getMonth(), b.getDate(), 12);
  return Math.round((db - da) / 86400000);
}

function capitalise(s, locale) {
  return s ? s.charAt(0).toLocaleUpperCase(locale) + s.slice(1) : s;
}

/** "Today", "Yesterday" (in the locale's words), or the date: with the
 * weekday within the last week, with the year only when it is not this one. */
export function dayLabel(ms, now, locale) {
  const ago = daysAgo(ms, now);
  if (ago === 0 || ago === 1) {
    const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
    return capitalise(rtf.format(-ago, "day"), locale);
  }
  const opts = { day: "numeric", month: "long" };
  if (ago > 1 && ago < 7) opts.weekday = "long";
  if (new Date(ms).getFullYear() !== new Date(now).getFullYear()) opts.year = "numeric";
  return new Intl.DateTimeFormat(locale, opts).format(new Date(ms));
}

/** A message's time, hours and minutes. */
export function timeLabel(ms, locale) {
  return new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
}

/** The full date and time, for a tooltip. */
export function fullLabel(ms, locale) {
  return new Intl.DateTimeFormat(locale, { dateStyle: "full", timeStyle: "medium" }).format(new Date(ms));
}
