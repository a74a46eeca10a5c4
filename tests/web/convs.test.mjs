// Conversations, the sidebar's order and the API's shapes (web/js/convs.js).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compareSidebar, convOf, kindOf, parseConversations, parseGroup, severalRecipients, slug } from '../../web/js/convs.js';
import { GROUP_NAME_RE } from '../../web/js/proto.js';

describe('a message belongs', () => {
  const me = 'alice';
  it('to its group, announcements included', () => {
    assert.equal(convOf({ from: 'bob', to: '#ops' }, me), '#ops');
    assert.equal(convOf({ from: 'alice', to: '#ops' }, me), '#ops');
    const ann = { from: 'SYSTEM', to: '#ops', isSystem: true };
    assert.equal(convOf(ann, me), '#ops');
    assert.equal(kindOf(ann, me), 'announce');
  });
  it('to SYSTEM when the server sent it to me', () => {
    const m = { from: 'SYSTEM', to: 'alice', isSystem: true };
    assert.equal(convOf(m, me), 'SYSTEM');
    assert.equal(kindOf(m, me), 'system');
  });
  it('to the sender, or to my first other recipient', () => {
    assert.equal(convOf({ from: 'bob', to: 'alice,carol' }, me), 'bob');
    assert.equal(convOf({ from: 'alice', to: 'alice, carol,bob' }, me), 'carol');
    assert.equal(convOf({ from: 'alice', to: 'alice' }, me), 'alice');
    assert.equal(kindOf({ from: 'alice', to: 'bob' }, me), 'mine');
    assert.equal(kindOf({ from: 'bob', to: 'alice' }, me), 'theirs');
  });
});

describe('the sidebar', () => {
  it('lists recent conversations first, then groups, people, notes to self, system', () => {
    const me = 'alice';
    const items = [
      { id: 'SYSTEM', lastTs: null, me },
      { id: 'alice', lastTs: null, me },
      { id: 'zed', lastTs: null, me },
      { id: 'bob', lastTs: null, me },
      { id: '#ops', lastTs: null, me },
      { id: 'carol', lastTs: 5, me },
      { id: '#dev', lastTs: 9, me },
    ];
    assert.deepEqual(items.sort(compareSidebar).map((i) => i.id), ['#dev', 'carol', '#ops', 'bob', 'zed', 'alice', 'SYSTEM']);
  });
});

describe('API answers', () => {
  it('conversations are checked, and a version 1 answer is no list', () => {
    const c = parseConversations({
      conversations: [
        { with: '#ops', last: { id: 'x', timestamp: 7 }, unread: 2 },
        { with: '', unread: 1 },
        { with: 'bob', last: null, unread: -1 },
      ],
    });
    assert.deepEqual(c.map((x) => [x.with, x.lastTs, x.unread]), [['#ops', 7, 2], ['bob', null, 0]]);
    assert.deepEqual(parseConversations({ code: 404, msg: 'no such endpoint' }), []);
  });
  it('a group gets its name as title when it has none', () => {
    assert.deepEqual(parseGroup({ name: 'ops', members: ['a', 1], owners: ['a'] }), {
      name: 'ops', title: 'ops', members: ['a'], owners: ['a'], createdAt: null,
    });
    assert.equal(parseGroup({ title: 'x' }), null);
  });
  it('several users in To suggest a group', () => {
    assert.deepEqual(severalRecipients(['bob', 'carol', 'alice'], 'alice'), ['bob', 'carol']);
    assert.equal(severalRecipients(['bob', 'alice'], 'alice'), null);
  });
});

describe('a new group', () => {
  it('gets a valid name suggested by its title', () => {
    assert.equal(slug('Night shift'), 'night-shift');
    assert.equal(slug('  Équipe  Süd / 2 '), 'equipe-sud-2');
    assert.equal(slug('x'.repeat(80)).length, 63);
    for (const t of ['Night shift', 'Équipe Süd', 'ops.eu_1']) assert.match(slug(t), GROUP_NAME_RE);
  });
});
