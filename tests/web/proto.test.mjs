// The page's protocol helpers (web/js/proto.js): recipients, status bodies, frames.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ackFrame, frameBytes, groupId, groupName, isGroupId, parseFrame, parseStatus,
  registerFrame, splitTo, textFrame, SYSTEM, TYPE_RECEIVE_STATUS, TYPE_REGISTER,
} from '../../web/js/proto.js';

describe('recipients', () => {
  it('are split as the server normalises them: trimmed, no empties, no duplicates', () => {
    assert.deepEqual(splitTo(' bob , carol,bob,,'), ['bob', 'carol']);
    assert.deepEqual(splitTo(''), []);
    assert.deepEqual(splitTo(undefined), []);
  });
  it('name a group with #, a user without', () => {
    assert.equal(isGroupId('#ops'), true);
    assert.equal(isGroupId('ops'), false);
    assert.equal(groupId('ops'), '#ops');
    assert.equal(groupName('#ops'), 'ops');
  });
});

describe('status bodies', () => {
  it('are read from a JSON string or an object', () => {
    assert.deepEqual(parseStatus('{"code":200,"status":"SUCCESS","msg":"ok"}'), { code: 200, status: 'SUCCESS', msg: 'ok' });
    assert.deepEqual(parseStatus({ code: 406, status: 'TO_ERROR', msg: 'unknown user bobb' }).code, 406);
  });
  it('that are malformed give code 0 and never throw', () => {
    assert.deepEqual(parseStatus('not json'), { code: 0, status: '', msg: '' });
    assert.deepEqual(parseStatus(null), { code: 0, status: '', msg: '' });
    assert.deepEqual(parseStatus('{"code":"200","msg":5}'), { code: 0, status: '', msg: '' });
  });
});

describe('frames', () => {
  it('that are not JSON objects are dropped', () => {
    assert.equal(parseFrame('[1]'), null);
    assert.equal(parseFrame('nope'), null);
    assert.equal(parseFrame(new ArrayBuffer(2)), null);
    assert.deepEqual(parseFrame('{"type":2001}'), { type: 2001 });
  });
  it('register asks for presence', () => {
    const f = JSON.parse(registerFrame('r1', 'alice', 's1'));
    assert.equal(f.type, TYPE_REGISTER);
    assert.equal(f.to, SYSTEM);
    assert.deepEqual(JSON.parse(f.body), { sessionId: 's1', presence: true });
  });
  it('acknowledge a text to its sender, a system text (a group announcement too) to SYSTEM', () => {
    const a = JSON.parse(ackFrame('bob', { id: 'x', from: 'alice', to: '#ops', isSystem: false }));
    assert.equal(a.type, TYPE_RECEIVE_STATUS);
    assert.equal(a.to, 'alice');
    assert.equal(a.from, 'bob');
    const s = JSON.parse(ackFrame('bob', { id: 'y', from: 'SYSTEM', to: '#ops', isSystem: true }));
    assert.equal(s.to, SYSTEM);
    assert.equal(JSON.parse(s.body).msg, 'received');
  });
  it('count UTF-8 bytes', () => {
    assert.equal(frameBytes('é'), 2);
    assert.equal(JSON.parse(textFrame('alice', { id: 'i', to: '#ops', body: 'hi' })).to, '#ops');
  });
});
