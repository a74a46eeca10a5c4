// Message ordering and history paging (web/js/order.js).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { advanceCursor, compareMessages, historyDone, historyQuery, insertIndex } from '../../web/js/order.js';

const rec = (ts, local, extra = {}) => ({ ts, local, pending: false, seq: null, ...extra });

describe('message order', () => {
  it('is by timestamp first', () => {
    assert.ok(compareMessages(rec(1, 9), rec(2, 1)) < 0);
  });
  it('breaks a shared millisecond by the server seq when both have one', () => {
    assert.ok(compareMessages(rec(5, 1, { seq: 20 }), rec(5, 2, { seq: 10 })) > 0);
  });
  it('falls back to the order the page learned of them', () => {
    assert.ok(compareMessages(rec(5, 1, { seq: 20 }), rec(5, 2)) < 0);
  });
  it('puts pending messages last, in the order they were written', () => {
    const p1 = rec(0, 3, { pending: true });
    const p2 = rec(0, 4, { pending: true });
    assert.ok(compareMessages(p1, rec(1e15, 5)) > 0);
    assert.ok(compareMessages(p1, p2) < 0);
  });
  it('inserts where the list stays sorted', () => {
    const list = [rec(1, 1), rec(3, 2), rec(5, 3)];
    assert.equal(insertIndex(list, rec(4, 4)), 2);
    assert.equal(insertIndex(list, rec(9, 5)), 3);
    assert.equal(insertIndex(list, rec(0, 6)), 0);
    assert.equal(insertIndex(list, rec(3, 7)), 2);
  });
});

describe('history paging', () => {
  it('asks by beforeSeq once a page had seq, by before from a version 1 server', () => {
    assert.deepEqual(historyQuery('#ops', null, 50), { with: '#ops', limit: '50' });
    const c1 = advanceCursor(null, [{ seq: 9, timestamp: 100 }, { seq: 7, timestamp: 100 }]);
    assert.deepEqual(historyQuery('bob', c1, 50), { with: 'bob', limit: '50', beforeSeq: '7' });
    const v1 = advanceCursor(null, [{ timestamp: 100 }, { timestamp: 90 }]);
    assert.deepEqual(historyQuery('bob', v1, 50), { with: 'bob', limit: '50', before: '90' });
  });
  it('ends at a short exact page, and only at an empty page from a version 1 server', () => {
    assert.equal(historyDone([], 50), true);
    assert.equal(historyDone([{ seq: 1 }], 50), true);
    assert.equal(historyDone([{ timestamp: 1 }], 50), false);
    assert.equal(historyDone(Array.from({ length: 50 }, (_, i) => ({ seq: i })), 50), false);
  });
});
