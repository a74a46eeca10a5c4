// Unread bookkeeping and the "new messages" divider (web/js/unread.js), and
// what the page keeps in storage (web/js/store.js).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_KEYS, UnreadBook, dividerIndex } from '../../web/js/unread.js';
import { draftKey, makeStore } from '../../web/js/store.js';

describe('unread counts', () => {
  it('count each text once, redeliveries not again', () => {
    const b = new UnreadBook();
    assert.equal(b.add('bob', 'bob\u0000m1'), true);
    assert.equal(b.add('bob', 'bob\u0000m1'), false);
    b.add('bob', 'bob\u0000m2');
    assert.equal(b.count('bob'), 2);
    assert.equal(b.total(), 2);
  });
  it('survive a reload through toJSON', () => {
    const b = new UnreadBook();
    b.add('#ops', 'k1');
    b.seed('carol', 3);
    const again = new UnreadBook(JSON.parse(JSON.stringify(b)));
    assert.equal(again.count('#ops'), 1);
    assert.equal(again.count('carol'), 3);
    assert.equal(again.has('#ops', 'k1'), true);
  });
  it('show the larger of the server count and the page own count', () => {
    const b = new UnreadBook();
    b.seed('bob', 2);
    b.add('bob', 'k1');
    assert.equal(b.count('bob'), 2);
    b.add('bob', 'k2');
    b.add('bob', 'k3');
    assert.equal(b.count('bob'), 3);
  });
  it('are cleared when the conversation is opened', () => {
    const b = new UnreadBook();
    b.seed('bob', 2);
    b.add('bob', 'k1');
    b.clear('bob');
    assert.equal(b.count('bob'), 0);
    assert.deepEqual(b.toJSON(), {});
  });
  it('keep a bounded number of keys, and ignore garbage from storage', () => {
    const b = new UnreadBook();
    for (let i = 0; i < MAX_KEYS + 10; i++) b.add('bob', `k${i}`);
    assert.equal(b.count('bob'), MAX_KEYS);
    assert.equal(new UnreadBook('nope').total(), 0);
    assert.equal(new UnreadBook({ bob: { keys: [1, 'a'], server: 'x' } }).count('bob'), 1);
  });
});

describe('the new-messages divider', () => {
  const list = [
    { key: 'a', kind: 'theirs' },
    { key: 'b', kind: 'mine' },
    { key: 'c', kind: 'theirs' },
    { key: 'd', kind: 'theirs' },
  ];
  it('goes before the first unread text', () => {
    assert.equal(dividerIndex(list, (k) => k === 'c' || k === 'd', 2), 2);
  });
  it('goes before the last n texts from others when only the server counted them', () => {
    assert.equal(dividerIndex(list, () => false, 2), 2);
    assert.equal(dividerIndex(list, () => false, 3), 0);
    assert.equal(dividerIndex(list, () => false, 0), -1);
  });
});

describe('storage', () => {
  function fake() {
    const m = new Map();
    return {
      get length() { return m.size; },
      key: (i) => [...m.keys()][i] ?? null,
      getItem: (k) => (m.has(k) ? m.get(k) : null),
      setItem: (k, v) => m.set(k, String(v)),
      removeItem: (k) => m.delete(k),
      map: m,
    };
  }
  it('keeps a draft per user and conversation, and the To field of a new message', () => {
    const be = fake();
    const s = makeStore(be);
    s.saveDraft('alice', '#ops', { text: 'half a thought' });
    s.saveDraft('alice', '', { to: 'bob', text: '' });
    assert.deepEqual(s.loadDraft('alice', '#ops'), { to: '', text: 'half a thought' });
    assert.deepEqual(s.loadDraft('alice', ''), { to: 'bob', text: '' });
    assert.deepEqual(s.loadDraft('bob', '#ops'), { to: '', text: '' });
    s.saveDraft('alice', '#ops', { text: '' });
    assert.equal(be.map.has(draftKey('alice', '#ops')), false);
  });
  it('drops a user drafts at logout and no one else', () => {
    const be = fake();
    const s = makeStore(be);
    s.saveDraft('alice', 'bob', { text: 'x' });
    s.saveDraft('alice', '#ops', { text: 'y' });
    s.saveDraft('al', 'bob', { text: 'z' });
    s.dropDrafts('alice');
    assert.deepEqual([...be.map.keys()], [draftKey('al', 'bob')]);
  });
  it('never throws when storage does', () => {
    const broken = { getItem() { throw new Error('x'); }, setItem() { throw new Error('x'); }, removeItem() { throw new Error('x'); } };
    const s = makeStore(broken);
    s.set('k', 'v');
    assert.equal(s.get('k'), null);
    assert.deepEqual(s.loadDraft('a', 'b'), { to: '', text: '' });
    assert.equal(makeStore(null).getJSON('k'), null);
  });
});
