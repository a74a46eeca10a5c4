// Presence merging (web/js/presence.js): a 3001 snapshot, then deltas.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Presence, parsePresence } from '../../web/js/presence.js';

it('takes the first frame after a register as the whole truth', () => {
  const p = new Presence();
  p.online.add('stale');
  const changed = p.apply('{"online":["alice","bob"],"offline":[]}');
  assert.deepEqual([...p.online].sort(), ['alice', 'bob']);
  assert.deepEqual([...changed].sort(), ['alice', 'bob', 'stale']);
});

it('applies later frames as deltas', () => {
  const p = new Presence();
  p.apply({ online: ['alice', 'bob'], offline: [] });
  const changed = p.apply('{"online":["carol"],"offline":["bob"]}');
  assert.deepEqual([...p.online].sort(), ['alice', 'carol']);
  assert.deepEqual([...changed].sort(), ['bob', 'carol']);
});

it('shows nobody online while disconnected, and waits for a new snapshot after', () => {
  const p = new Presence();
  p.apply({ online: ['alice', 'bob'] });
  assert.equal(p.isOnline('bob', false), false);
  assert.equal(p.isOnline('bob', true), true);
  p.reset();
  assert.equal(p.isOnline('bob', true), false);
  p.apply({ online: ['carol'] });
  assert.deepEqual([...p.online], ['carol']);
});

it('uses the directory only until a presence frame came', () => {
  const p = new Presence();
  p.fromDirectory([{ userId: 'bob', online: true }, { userId: 'carol', online: false }]);
  assert.deepEqual([...p.online], ['bob']);
  p.apply({ online: ['carol'] });
  assert.equal(p.fromDirectory([{ userId: 'bob', online: true }]).size, 0);
  assert.deepEqual([...p.online], ['carol']);
});

it('ignores malformed bodies and entries', () => {
  assert.equal(parsePresence('nope'), null);
  assert.deepEqual(parsePresence('{"online":["a",3],"offline":"x"}'), { online: ['a'], offline: [] });
  const p = new Presence();
  assert.equal(p.apply('nope').size, 0);
});
