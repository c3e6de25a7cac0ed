// Bad input: channel and event names, JSON, UTF-8, body size, query values.
// Every error is JSON {"error":{"code","message"}}, nothing is stored, and the
// server keeps answering.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  publish,
  publishOk,
  request,
  storedEvents,
  assertJsonError,
  assertHealthy,
  rawExchange,
  rawJsonError,
  T,
} from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';

const TO = { timeout: T(30000) };
let srv;
let url;
before(async () => {
  srv = await startServer({});
  url = srv.url;
});
after(async () => {
  await srv?.stop();
});

/** The raw (still encoded) path segments that must be rejected as channel names. */
// [what, raw segment, expected error code (undefined: any code)]
const BAD_CHANNELS = [
  ['a space', 'bad%20name'],
  ['129 characters', 'c'.repeat(129)],
  ['an encoded slash', 'bad%2Fname'],
  ['a non-ASCII letter', 'caf%C3%A9'],
  // %00 is refused while the target is decoded, before any name is read
  ['a NUL byte', 'nul%00byte', null],
  ['a star', 'star*'],
  ['a plus', 'a+b'],
  ['an at sign', 'a@b'],
  // a malformed escape may be refused as a bad request target rather than a bad name
  ['a bad percent escape', 'bad%zzname', null],
  ['a truncated percent escape', 'bad%2', null],
  ['invalid UTF-8 escapes', 'x%FF%FE'],
];

describe('channel names', () => {
  for (const [what, seg, code = 'bad_channel'] of BAD_CHANNELS) {
    test(`publish to a name with ${what} is 400 ${code || ''}`, TO, async () => {
      const r = await request(`${url}/api/v1/channels/${seg}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      assertJsonError(r, 400, code ?? undefined);
    });
  }

  for (const [what, seg] of BAD_CHANNELS.slice(0, 4)) {
    test(`subscribe, history and delete on a name with ${what} are 400 bad_channel`, TO, async () => {
      const s = await openSSE(`${url}/api/v1/channels/${seg}/sse`);
      s.close();
      assertJsonError(s, 400, 'bad_channel');
      assertJsonError(await request(`${url}/api/v1/channels/${seg}/events`), 400, 'bad_channel');
      assertJsonError(await request(`${url}/api/v1/channels/${seg}`, { method: 'DELETE' }), 400, 'bad_channel');
    });
  }

  test('no bad name shows up in the channel list', TO, async () => {
    const r = await request(`${url}/api/v1/channels`);
    assert.equal(r.status, 200);
    for (const c of r.json.channels) assert.match(c.name, /^[A-Za-z0-9._:-]{1,128}$/, `listed: ${c.name}`);
  });

  test('every allowed character, and exactly 128 characters, are accepted', TO, async () => {
    for (const name of ['Az09._:-', 'c'.repeat(128), 'a', '...', '-', ':']) {
      const r = await publish(url, name, { ok: true });
      assert.equal(r.status, 201, `${name}: ${r.text}`);
      assert.equal(r.json.channel, name);
      const h = await storedEvents(url, name);
      assert.equal(h.length, 1, name);
    }
  });

  test('path segments are percent-decoded: a%2Eb is channel a.b', TO, async () => {
    const r = await request(`${url}/api/v1/channels/pct%2Edot%3Ax/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"pct":1}',
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.channel, 'pct.dot:x');
    const h = await storedEvents(url, 'pct.dot:x');
    assert.deepEqual(
      h.map((e) => [e.channel, e.data]),
      [['pct.dot:x', { pct: 1 }]],
    );
    const enc = await request(`${url}/api/v1/channels/%70ct%2edot%3ax/events`);
    assert.equal(enc.status, 200);
    assert.equal(enc.json.length, 1);
    const list = await request(`${url}/api/v1/channels`);
    assert.ok(list.json.channels.some((c) => c.name === 'pct.dot:x'));
    assert.ok(!list.json.channels.some((c) => c.name.includes('%')));
  });

  test('the multi-channel endpoint decodes query values', TO, async () => {
    const s = await openSSE(`${url}/api/v1/sse?channel=pct%2Edot%3Ax&replay=1`);
    try {
      assert.equal(s.status, 200);
      const [e] = await s.waitEvents(1);
      assert.equal(e.data, '{"pct":1}');
    } finally {
      s.close();
    }
  });
});

describe('payloads', () => {
  const BAD_JSON = [
    ['a truncated object', '{"a":'],
    ['unquoted keys', '{a:1}'],
    ['a bare word', 'undefined'],
    ['a truncated array', '[1,2'],
    ['trailing garbage', '{"a":1} x'],
    ['two values', '{"a":1}{"b":2}'],
    ['single quotes', "{'a':1}"],
    ['an empty body', ''],
    ['only spaces', '   '],
    ['a trailing comma', '[1,2,]'],
    ['NaN', 'NaN'],
  ];
  for (const [what, body] of BAD_JSON) {
    test(`invalid JSON (${what}) is 400, nothing stored`, TO, async () => {
      const ch = 'bad.json';
      const r = await publish(url, ch, body);
      assertJsonError(r, 400);
      assert.deepEqual(await storedEvents(url, ch), []);
      await assertHealthy(url);
    });
  }

  test('deeply nested JSON is refused or stored, never a crash', TO, async () => {
    const r = await publish(url, 'bad.deep', '['.repeat(100000) + ']'.repeat(100000));
    assert.ok([201, 400, 413].includes(r.status), `status ${r.status}`);
    if (r.status !== 201) assertJsonError(r, r.status);
    await assertHealthy(url);
  });

  const BAD_UTF8 = [
    ['0xff 0xfe', Buffer.from([0xff, 0xfe])],
    ['an overlong slash', Buffer.from([0x61, 0xc0, 0xaf])],
    ['a UTF-16 surrogate', Buffer.from([0xed, 0xa0, 0x80])],
    ['a truncated sequence', Buffer.from([0x61, 0x62, 0xe2, 0x82])],
    ['a lone continuation byte', Buffer.from([0x80, 0x61])],
    ['a code point past U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
  ];
  for (const [what, bytes] of BAD_UTF8) {
    test(`invalid UTF-8 in a text/plain body (${what}) is 400, nothing stored`, TO, async () => {
      const r = await publish(url, 'bad.utf8', bytes, { contentType: 'text/plain' });
      assertJsonError(r, 400);
      assert.deepEqual(await storedEvents(url, 'bad.utf8'), []);
    });
  }

  test('invalid UTF-8 inside a JSON string is 400', TO, async () => {
    const body = Buffer.concat([Buffer.from('{"s":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    assertJsonError(await publish(url, 'bad.utf8json', body), 400);
    assert.deepEqual(await storedEvents(url, 'bad.utf8json'), []);
  });

  test('valid 4-byte UTF-8 is accepted in text and JSON', TO, async () => {
    const s = '𝄞 and 😀';
    await publishOk(url, 'ok.utf8', s, { contentType: 'text/plain' });
    await publishOk(url, 'ok.utf8', { s });
    const h = await storedEvents(url, 'ok.utf8');
    assert.deepEqual(
      h.map((e) => e.data),
      [s, { s }],
    );
  });

  test('a body over the default 1 MiB is 413, nothing stored', TO, async () => {
    const body = `"${'m'.repeat(1024 * 1024)}"`;
    const req =
      'POST /api/v1/channels/bad.big/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
    const { responses } = await rawExchange(srv.port, req);
    rawJsonError(responses[0], 413);
    assert.deepEqual(await storedEvents(url, 'bad.big'), []);
    await assertHealthy(url);
  });

  test('a body just under 1 MiB is accepted', TO, async () => {
    const body = `"${'m'.repeat(1024 * 1024 - 2)}"`;
    const r = await publish(url, 'ok.big', body);
    assert.equal(r.status, 201, r.text.slice(0, 200));
    const h = await storedEvents(url, 'ok.big');
    assert.equal(h[0].data.length, 1024 * 1024 - 2);
  });
});

describe('names and query values', () => {
  for (const [what, q] of [
    ['a space', 'has%20space'],
    ['129 characters', 'e'.repeat(129)],
    ['a slash', 'a%2Fb'],
    ['a newline', 'a%0Ab'],
  ]) {
    test(`?event= with ${what} is 400`, TO, async () => {
      const r = await request(`${url}/api/v1/channels/bad.event/events?event=${q}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      assertJsonError(r, 400);
      assert.deepEqual(await storedEvents(url, 'bad.event'), []);
    });
  }

  test('an event name with a newline can never inject SSE fields', TO, async () => {
    const s = await openSSE(`${url}/api/v1/channels/bad.inject/sse`);
    try {
      await request(`${url}/api/v1/channels/bad.inject/events?event=x%0Adata:%20injected`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      await publishOk(url, 'bad.inject', { b: 2 });
      await s.waitEvents(1);
      assert.ok(!s.raw.includes('injected'), JSON.stringify(s.raw));
      assert.equal(s.events[0].data, '{"b":2}');
    } finally {
      s.close();
    }
  });

  test('a %00 in a query value is never cut short into a valid value', TO, async () => {
    // ?event=ok%00x must not become event "ok"; ?channel=ok%00x must not become channel "ok"
    const r = await request(`${url}/api/v1/channels/bad.nulq/events?event=ok%00x`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    assertJsonError(r, 400);
    assert.deepEqual(await storedEvents(url, 'bad.nulq'), []);
    const s = await openSSE(`${url}/api/v1/sse?channel=bad.nulq%00x`);
    s.close();
    assertJsonError(s, 400);
    const l = await openSSE(`${url}/api/v1/channels/bad.nulq/sse?lastEventId=1%00x`);
    l.close();
    assertJsonError(l, 400);
    assertJsonError(await request(`${url}/api/v1/channels/bad.nulq/events?after=1%00x`), 400);
  });

  test('history with a malformed after or limit is 400', TO, async () => {
    await publishOk(url, 'bad.hist', 1);
    for (const q of ['?after=abc', '?after=-1', '?after=1.5', '?limit=abc', '?limit=-1']) {
      assertJsonError(await request(`${url}/api/v1/channels/bad.hist/events${q}`), 400);
    }
  });
});

describe('afterwards', () => {
  test('the server is healthy and still publishes', TO, async () => {
    await assertHealthy(url);
    const r = await publishOk(url, 'bad.final', { fine: true });
    assert.match(r.id, /^\d+$/);
  });
});
