// WebSocket helpers for the end-to-end tests: a message-recording wrapper
// around the `ws` client, and a raw RFC 6455 client over a TCP socket that
// builds frames by hand (masked or not, any opcode, fragments) and parses
// what the server sends back, for protocol-level tests.
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { rawConnect, parseResponses, T, waitOn } from './server.mjs';

export const WS_PATH = '/api/v1/ws';
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The ws:// URL of a server handle (or an http:// base URL). */
export function wsURL(h, query = '') {
  const base = typeof h === 'string' ? h : h.url;
  return `${base.replace(/^http/, 'ws')}${WS_PATH}${query}`;
}

/** The Sec-WebSocket-Accept value for a key. */
export function acceptFor(key) {
  return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

let refSeq = 0;
/** A fresh ref string. */
export const newRef = (p = 'r') => `${p}${++refSeq}-${crypto.randomBytes(3).toString('hex')}`;

// ---------------------------------------------------------------------------
// A `ws` client that records every message

/**
 * A connected `ws` client. Every text message is JSON-parsed into `msgs`
 * (each gets `_at`, the arrival time); non-JSON text goes in `bad`.
 */
export class WSClient {
  constructor(ws) {
    this.ws = ws;
    this.msgs = [];
    this.bad = [];
    this.binary = [];
    this.pings = 0;
    this.closeInfo = null; // {code, reason, at}
    this.error = null;
    this.waiters = new Set();
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.binary.push(data);
      } else {
        const text = data.toString('utf8');
        try {
          const m = JSON.parse(text);
          if (m && typeof m === 'object') Object.defineProperty(m, '_at', { value: Date.now(), enumerable: false });
          this.msgs.push(m);
        } catch {
          this.bad.push(text);
        }
      }
      this.notify();
    });
    ws.on('ping', () => {
      this.pings++;
      this.notify();
    });
    ws.on('error', (e) => {
      this.error = e;
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8'), at: Date.now() };
        this.notify();
        resolve(this.closeInfo);
      });
    });
  }

  get conn() {
    return this.welcome?.conn;
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  /** Sends an object as JSON text (or a string as is). */
  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /**
   * Resolves with the first recorded message (from index `from`) for which
   * pred(msg) holds; rejects on timeout or when the connection closes first.
   */
  waitMsg(pred, { ms = T(5000), from = 0, what = 'a message' } = {}) {
    const poll = () => {
      for (let i = from; i < this.msgs.length; i++) if (pred(this.msgs[i])) return { value: this.msgs[i] };
      if (this.closeInfo) {
        const { code, reason } = this.closeInfo;
        return { error: new Error(`connection closed (${code} ${reason}) while waiting for ${what}${this.describe()}`) };
      }
    };
    return waitOn(this.waiters, poll, ms, () => ({
      error: new Error(`timed out after ${ms} ms waiting for ${what}${this.describe()}`),
    }));
  }

  /** Resolves true when pred(this) holds, false on timeout (never rejects). */
  waitUntil(pred, ms = T(5000)) {
    return waitOn(this.waiters, () => (pred(this) ? { value: true } : undefined), ms, () => ({
      value: Boolean(pred(this)),
    }));
  }

  /** Messages of a type (optionally of a channel). */
  ofType(type, channel) {
    return this.msgs.filter((m) => m.type === type && (channel === undefined || m.channel === channel));
  }

  /** The events received on `channel`, in order. */
  events(channel) {
    return this.ofType('event', channel);
  }

  /** Sends `op` with a fresh ref (unless it has one) and waits for the answer carrying that ref. */
  async call(op, { ms = T(5000) } = {}) {
    const msg = { ...op };
    if (msg.ref === undefined) msg.ref = newRef(op.op || 'x');
    const from = this.msgs.length;
    this.send(msg);
    return this.waitMsg((m) => m.ref === msg.ref, { ms, from, what: `the answer to ${JSON.stringify(msg).slice(0, 200)}` });
  }

  /** Subscribes and asserts the `subscribed` answer; returns it. */
  async subscribe(channel, extra = {}) {
    const r = await this.call({ op: 'subscribe', channel, ...extra });
    assert.equal(r.type, 'subscribed', `subscribe ${channel}: ${JSON.stringify(r)}`);
    assert.equal(r.channel, channel);
    return r;
  }

  /** Publishes and asserts the ack; returns it. */
  async publish(channel, data, extra = {}) {
    const r = await this.call({ op: 'publish', channel, data, ...extra });
    assert.equal(r.type, 'ack', `publish to ${channel}: ${JSON.stringify(r)}`);
    assert.equal(typeof r.id, 'string', `ack without an id: ${JSON.stringify(r)}`);
    return r;
  }

  /** A round trip (op ping -> pong): everything the server sent before is in `msgs` afterwards. */
  async roundTrip(ms = T(5000)) {
    const from = this.msgs.length;
    this.send({ op: 'ping' });
    return this.waitMsg((m) => m.type === 'pong', { ms, from, what: 'pong' });
  }

  /** Waits for the close event; resolves {code, reason, at} or null on timeout. */
  waitClose(ms = T(5000)) {
    return Promise.race([this.closed, new Promise((r) => setTimeout(() => r(null), ms))]);
  }

  describe() {
    const tail = this.msgs.slice(-8).map((m) => JSON.stringify(m).slice(0, 300));
    return ` (${this.msgs.length} messages, closed=${JSON.stringify(this.closeInfo)}, error=${this.error?.message}; last: ${tail.join(' | ')})`;
  }

  /** Closes (1000) and waits a little for the close to finish; never throws. */
  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    try {
      this.ws.close(1000);
    } catch {
      // not open yet
    }
    const r = await this.waitClose(T(2000));
    if (!r) this.ws.terminate();
  }

  terminate() {
    this.ws.terminate();
  }
}

/**
 * Opens a `ws` connection and waits for the welcome message.
 * opts: query ('?a=b'), headers, wsOptions (passed to `ws`), t (a test context:
 * the client is closed after the test), welcome (false: don't wait for it).
 * Rejects with err.status / err.body when the handshake is refused.
 */
export async function connectWS(h, { query = '', headers = {}, wsOptions = {}, t, welcome = true, ms = T(5000) } = {}) {
  const ws = new WebSocket(wsURL(h, query), { headers, handshakeTimeout: ms, ...wsOptions });
  const c = new WSClient(ws);
  if (t) t.after(() => c.close());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => {
        const e = new Error(`WebSocket handshake refused: ${res.statusCode} ${body}`);
        e.status = res.statusCode;
        e.headers = res.headers;
        e.body = body;
        reject(e);
        req.destroy();
      });
    });
    ws.once('error', reject);
  });
  if (welcome) {
    const w = await c.waitMsg((m) => m.type === 'welcome', { ms, what: 'welcome' });
    c.welcome = w;
  }
  return c;
}

// ---------------------------------------------------------------------------
// Raw frames

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

/**
 * Builds one frame. payload: Buffer or string (utf8). mask: true (client frames
 * must be masked) or false. rsv: bits 0..7 for RSV1..3 (as 0x40/0x20/0x10).
 */
export function buildFrame({ fin = true, opcode = OP.TEXT, payload = Buffer.alloc(0), mask = true, rsv = 0, maskKey } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const len = data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0f);
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = maskKey || crypto.randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

/** A close frame payload: 2-byte code + reason. */
export function closePayload(code, reason = '') {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2, 'utf8');
  return b;
}

/**
 * Parses server frames from `buf`. Returns {frames, rest, error}: each frame
 * {fin, rsv, opcode, masked, payload}; `error` describes a malformed frame.
 */
export function parseFrames(buf) {
  const frames = [];
  let p = 0;
  let error = null;
  while (p + 2 <= buf.length) {
    const b0 = buf[p];
    const b1 = buf[p + 1];
    let len = b1 & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (q + 2 > buf.length) break;
      len = buf.readUInt16BE(q);
      q += 2;
    } else if (len === 127) {
      if (q + 8 > buf.length) break;
      const big = buf.readBigUInt64BE(q);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
        error = `absurd frame length ${big}`;
        break;
      }
      len = Number(big);
      q += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key = null;
    if (masked) {
      if (q + 4 > buf.length) break;
      key = buf.subarray(q, q + 4);
      q += 4;
    }
    if (q + len > buf.length) break;
    let payload = Buffer.from(buf.subarray(q, q + len));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: b0 & 0x70, opcode: b0 & 0x0f, masked, payload });
    p = q + len;
  }
  return { frames, rest: buf.subarray(p), error };
}

/**
 * A raw WebSocket client over RawConn: it did the handshake itself and
 * answers nothing on its own (no pongs, no close replies) unless told to.
 */
export class RawWS {
  constructor(conn, headerEnd, response) {
    this.conn = conn;
    this.headerEnd = headerEnd; // offset of the first frame byte in conn.buffer()
    this.response = response;
  }

  /** Every frame the server sent so far. */
  frames() {
    return parseFrames(this.conn.buffer().subarray(this.headerEnd)).frames;
  }

  /** The data messages (text frames reassembled), each {opcode, payload, text, json}. */
  messages() {
    const out = [];
    let cur = null;
    for (const f of this.frames()) {
      if (f.opcode >= 0x8) continue;
      if (f.opcode !== OP.CONT) cur = { opcode: f.opcode, parts: [f.payload] };
      else if (cur) cur.parts.push(f.payload);
      if (cur && f.fin) {
        const payload = Buffer.concat(cur.parts);
        const text = payload.toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        out.push({ opcode: cur.opcode, payload, text, json });
        cur = null;
      }
    }
    return out;
  }

  /** The JSON messages. */
  json() {
    return this.messages()
      .map((m) => m.json)
      .filter((j) => j !== undefined);
  }

  /** The first close frame: {code, reason} (code null when it had no payload), or null. */
  closeFrame() {
    const f = this.frames().find((x) => x.opcode === OP.CLOSE);
    if (!f) return null;
    if (f.payload.length < 2) return { code: null, reason: '' };
    return { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString('utf8') };
  }

  get closed() {
    return this.conn.closed || this.conn.ended;
  }

  /** Resolves true when pred(this) holds, false on timeout or close. */
  waitFor(pred, ms = T(5000)) {
    return this.conn.waitFor(() => pred(this), ms);
  }

  /** Waits for a JSON message matching pred; returns it or undefined. */
  async waitJson(pred, ms = T(5000)) {
    let found;
    await this.waitFor(() => {
      found = this.json().find(pred);
      return found !== undefined;
    }, ms);
    return found;
  }

  /** Waits for the server's close frame; returns {code, reason} or null. */
  async waitCloseFrame(ms = T(5000)) {
    await this.waitFor((r) => r.closeFrame() !== null, ms);
    return this.closeFrame();
  }

  /** Waits for the TCP connection to end; true when it did. */
  waitTcpClose(ms = T(5000)) {
    return this.conn.waitClose(ms);
  }

  /** Writes bytes as they are. */
  write(bytes) {
    return this.conn.write(bytes);
  }

  /** Sends one frame (see buildFrame). */
  sendFrame(opts) {
    return this.write(buildFrame(opts));
  }

  /** Sends a masked text frame with the JSON of `obj` (or a string as is). */
  sendText(obj) {
    return this.sendFrame({ opcode: OP.TEXT, payload: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }

  /** Sends a masked close frame. */
  sendClose(code = 1000, reason = '') {
    return this.sendFrame({ opcode: OP.CLOSE, payload: code === null ? Buffer.alloc(0) : closePayload(code, reason) });
  }

  describe() {
    const fr = this.frames().map((f) => {
      const p = f.opcode === OP.CLOSE && f.payload.length >= 2 ? `code=${f.payload.readUInt16BE(0)}` : JSON.stringify(f.payload.toString('utf8').slice(0, 120));
      return `[op=${f.opcode} fin=${f.fin} ${p}]`;
    });
    return ` (tcp closed=${this.closed}; frames: ${fr.join(' ').slice(-2000)})`;
  }

  destroy() {
    this.conn.destroy();
  }
}

/** The head of an upgrade request; `headers` adds or (with a null value) removes headers. */
export function upgradeRequest({ path = WS_PATH, key, version = '13', headers = {}, host = '127.0.0.1' } = {}) {
  const base = {
    Host: host,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': version,
  };
  const all = { ...base, ...headers };
  let s = `GET ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== null && v !== undefined) s += `${k}: ${v}\r\n`;
  return `${s}\r\n`;
}

/**
 * Opens a raw TCP connection, sends an upgrade request, and waits for the
 * response head. Resolves {conn, response, raw?}: with `expect101` (default)
 * it asserts the 101 (status, Upgrade, Connection, Sec-WebSocket-Accept) and
 * returns a RawWS as `raw`.
 */
export async function rawUpgrade(port, { path, headers, version, key, expect101 = true, ms = T(5000) } = {}) {
  const k = key ?? crypto.randomBytes(16).toString('base64');
  const conn = await rawConnect(port);
  await conn.write(upgradeRequest({ path, key: k, version, headers }));
  await conn.waitFor((c) => {
    const b = c.buffer();
    const end = b.indexOf('\r\n\r\n');
    if (end < 0) return false;
    // a non-101 answer: wait for its body too
    if (!/^HTTP\/1\.1 101/.test(b.subarray(0, 12).toString('latin1'))) {
      return c.responses().some((r) => r.complete);
    }
    return true;
  }, ms);
  const buf = conn.buffer();
  const end = buf.indexOf('\r\n\r\n');
  const head = end >= 0 ? buf.subarray(0, end).toString('latin1') : buf.toString('latin1');
  const status = Number((/^HTTP\/1\.[01] (\d{3})/.exec(head) || [])[1]);
  const response = status === 101 ? { status, rawHeaders: head, headers: headersOf(head) } : conn.responses()[0] || { status, rawHeaders: head, headers: headersOf(head), body: '' };
  if (!expect101) return { conn, response };
  if (status !== 101) {
    conn.destroy();
    assert.fail(`expected 101 Switching Protocols, got: ${JSON.stringify(buf.toString('utf8').slice(0, 600))}`);
  }
  assert.match(response.headers.upgrade || '', /^websocket$/i, head);
  assert.match(response.headers.connection || '', /upgrade/i, head);
  assert.equal(response.headers['sec-websocket-accept'], acceptFor(k), head);
  const raw = new RawWS(conn, end + 4, response);
  return { conn, response, raw };
}

function headersOf(head) {
  return parseResponses(Buffer.from(`${head}\r\ncontent-length: 0\r\n\r\n`, 'latin1'))[0]?.headers || {};
}

/** A raw client past the handshake and the welcome; `t` (optional) destroys it after the test. */
export async function rawWS(port, { t, path, headers } = {}) {
  const { raw } = await rawUpgrade(port, { path, headers });
  if (t) t.after(() => raw.destroy());
  const w = await raw.waitJson((m) => m.type === 'welcome');
  assert.ok(w, `no welcome on a raw connection${raw.describe()}`);
  raw.welcome = w;
  return raw;
}
