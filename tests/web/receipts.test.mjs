// What an own message's status shows (web/js/receipts.js).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { receivers, recipientCount, statusLabel } from '../../web/js/receipts.js';

it('goes from nothing (sending) to ✓ to ✓✓ for a direct text', () => {
  assert.equal(statusLabel({ acked: false, received: 0, many: false, total: 1 }).text, '');
  assert.equal(statusLabel({ acked: true, received: 0, many: false, total: 1 }).text, '✓');
  assert.equal(statusLabel({ acked: true, received: 1, many: false, total: 1 }).text, '✓✓');
});

it('counts the recipients of a group text, the sender not counted', () => {
  const total = recipientCount(['#ops'], 'carol', ['alice', 'bob', 'carol']);
  assert.equal(total, 2);
  const n = receivers(['alice', 'bob', 'carol'], 'carol', false).size;
  assert.equal(statusLabel({ acked: true, received: n, many: true, total }).text, '✓✓ 2/2');
  assert.equal(statusLabel({ acked: true, received: 1, many: true, total: 4 }).text, '✓✓ 1/4');
  assert.equal(statusLabel({ acked: true, received: 0, many: true, total: 4 }).text, '✓');
});

it('shows the count alone while the group members are unknown', () => {
  assert.equal(recipientCount(['#ops'], 'carol', null), null);
  assert.equal(statusLabel({ acked: true, received: 3, many: true, total: null }).text, '✓✓ 3');
});

it('counts a note to self as one recipient, me', () => {
  assert.equal(recipientCount(['alice'], 'alice', null), 1);
  assert.equal(receivers(['alice'], 'alice', true).size, 1);
  assert.equal(recipientCount(['bob', 'carol'], 'alice', null), 2);
});

it('shows an error instead of ticks', () => {
  assert.deepEqual(statusLabel({ error: 'unknown user bobb', received: 1 }), { text: 'unknown user bobb', title: 'Not sent' });
});
