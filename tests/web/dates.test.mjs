// Day separators and times in the reader's locale (web/js/dates.js).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { dayKey, dayLabel, daysAgo } from '../../web/js/dates.js';

const at = (y, m, d, h = 12, min = 0) => new Date(y, m - 1, d, h, min).getTime();

it('counts calendar days, not 24-hour spans', () => {
  assert.equal(daysAgo(at(2026, 3, 1, 23, 59), at(2026, 3, 2, 0, 1)), 1);
  assert.equal(daysAgo(at(2026, 3, 2, 0, 1), at(2026, 3, 2, 23, 59)), 0);
  assert.equal(daysAgo(at(2025, 12, 31), at(2026, 1, 1)), 1);
  assert.equal(dayKey(at(2026, 3, 2, 0, 1)), dayKey(at(2026, 3, 2, 23, 59)));
  assert.notEqual(dayKey(at(2026, 3, 1, 23, 59)), dayKey(at(2026, 3, 2, 0, 1)));
});

it('says today and yesterday in the locale', () => {
  const now = at(2026, 12, 7, 9);
  assert.equal(dayLabel(at(2026, 12, 7, 1), now, 'en'), 'Today');
  assert.equal(dayLabel(at(2026, 12, 6, 23), now, 'en'), 'Yesterday');
  assert.equal(dayLabel(at(2026, 12, 6, 23), now, 'de'), 'Gestern');
});

it('gives the date otherwise, the weekday within a week, the year when not this one', () => {
  // Checked by their parts: the exact punctuation is the ICU version's.
  const now = at(2026, 12, 7, 9);
  const lastWeek = dayLabel(at(2026, 12, 4), now, 'en-GB');
  for (const part of ['Friday', '4', 'December']) assert.ok(lastWeek.includes(part), lastWeek);
  assert.ok(!lastWeek.includes('2026'), lastWeek);
  const lastMonth = dayLabel(at(2026, 11, 4), now, 'en-GB');
  assert.ok(lastMonth.includes('November') && !lastMonth.includes('Wednesday') && !lastMonth.includes('2026'), lastMonth);
  const lastYear = dayLabel(at(2025, 11, 4), now, 'de');
  assert.ok(lastYear.includes('November') && lastYear.includes('2025'), lastYear);
});
