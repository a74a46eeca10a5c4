// Reconnect backoff (web/js/backoff.js).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { BACKOFF_CAP_MS, BACKOFF_FIRST_MS, backoffDelay } from '../../web/js/backoff.js';

it('doubles from the first wait up to the cap', () => {
  const none = () => 0;
  assert.equal(backoffDelay(0, none), BACKOFF_FIRST_MS);
  assert.equal(backoffDelay(1, none), 2 * BACKOFF_FIRST_MS);
  assert.equal(backoffDelay(3, none), 8 * BACKOFF_FIRST_MS);
  assert.equal(backoffDelay(50, none), BACKOFF_CAP_MS);
});

it('adds at most 30% jitter', () => {
  assert.ok(backoffDelay(0, () => 0.999) < BACKOFF_FIRST_MS * 1.3);
  assert.ok(backoffDelay(99, () => 0.999) < BACKOFF_CAP_MS * 1.3);
});
