// A Server-Sent Events reader over fetch that keeps the raw text and the parsed
// events (per the WHATWG parsing rules), for tests that look at the wire format.
import { T, waitOn } from './server.mjs';

/** An incremental SSE parser (WHATWG "event stream interpretation"). */
export class SSEParser {
  constructor() {
    this.pending = ''; // text not yet ending in a line break
    this.sawCR = false; // the last chunk ended in CR: a following LF belongs to it
    this.events = [];
    this.comments = [];
    this.retry = undefined;
    this.lastEventId = '';
    this.reset();
  }
  reset() {
    this.data = '';
    this.type = '';
    this.idInEvent = undefined;
    this.hasData = false;
  }
  feed(text) {
    if (this.sawCR && text.startsWith('\n')) text = text.slice(1);
    this.sawCR = false;
    let s = this.pending + text;
    let i = 0;
    for (;;) {
      const m = /\r\n|\r|\n/g;
      m.lastIndex = i;
      const r = m.exec(s);
      if (!r) break;
      if (r[0] === '\r' && r.index === s.length - 1) {
        // CR at the end: the line ends here, but an LF may follow in the next chunk
        this.sawCR = true;
      }
      this.line(s.slice(i, r.index));
      i = r.index + r[0].length;
    }
    this.pending = s.slice(i);
  }
  line(l) {
    if (l === '') {
      this.dispatch();
      return;
    }
    if (l.startsWith(':')) {
      this.comments.push(l.slice(1));
      return;
    }
    const c = l.indexOf(':');
    let field = l;
    let value = '';
    if (c >= 0) {
      field = l.slice(0, c);
      value = l.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data += `${value}\n`;
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
          this.idInEvent = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }
  dispatch() {
    if (!this.hasData) {
      // per spec an event without data is not dispatched
      this.reset();
      return;
    }
    this.events.push({
      id: this.idInEvent,
      event: this.type || undefined,
      data: this.data.endsWith('\n') ? this.data.slice(0, -1) : this.data,
      lastEventId: this.lastEventId,
      at: Date.now(),
    });
    this.reset();
  }
}

/** An open SSE response being read in the background. */
export class SSEStream {
  constructor(res, controller, rawLimit = 4 * 1024 * 1024) {
    this.res = res;
    this.rawLimit = rawLimit; // raw text kept for assertions, at most this many characters
    this.bytes = 0;
    this.status = res.status;
    this.headers = res.headers;
    this.controller = controller;
    this.raw = '';
    this.parser = new SSEParser();
    this.done = false;
    this.error = null;
    this.waiters = new Set();
    this.ended = this.pump();
  }
  get events() {
    return this.parser.events;
  }
  get comments() {
    return this.parser.comments;
  }
  get retry() {
    return this.parser.retry;
  }
  async pump() {
    const reader = this.res.body.getReader();
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const text = dec.decode(value, { stream: true });
        this.bytes += value.length;
        if (this.raw.length < this.rawLimit) this.raw += text;
        this.parser.feed(text);
        this.notify();
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.done = true;
      this.doneAt = Date.now();
      this.notify();
    }
  }
  notify() {
    for (const w of [...this.waiters]) w();
  }
  /** Resolves when pred(this) holds; rejects on timeout or when the stream ends first. */
  waitFor(pred, ms = T(5000), what = 'condition') {
    const poll = () => {
      if (pred(this)) return { value: this };
      if (this.done) return { error: new Error(`SSE stream ended while waiting for ${what}${this.describe()}`) };
    };
    return waitOn(this.waiters, poll, ms, () => ({
      error: new Error(`timed out after ${ms} ms waiting for ${what}${this.describe()}`),
    }));
  }
  /** Waits for at least `n` events; returns the first `n`. */
  async waitEvents(n, ms = T(5000)) {
    await this.waitFor((s) => s.events.length >= n, ms, `${n} events`);
    return this.events.slice(0, n);
  }
  /** Resolves when the stream ended (server closed), false on timeout. */
  waitEnd(ms = T(5000)) {
    return Promise.race([
      this.ended.then(() => true),
      new Promise((r) => setTimeout(() => r(false), ms)),
    ]);
  }
  describe() {
    const tail = this.raw.length > 1500 ? `…${this.raw.slice(-1500)}` : this.raw;
    return ` (status ${this.status}, ${this.events.length} events, done=${this.done}; raw: ${JSON.stringify(tail)})`;
  }
  close() {
    try {
      this.controller.abort();
    } catch {
      // already closed
    }
  }
}

/**
 * Opens an SSE stream with fetch. Resolves once the response headers arrived.
 * For a non-200 answer, `body` holds the text and nothing is streamed.
 */
export async function openSSE(url, { headers = {}, timeout = T(10000), rawLimit } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  let res;
  try {
    res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
  if (res.status !== 200) {
    const body = await res.text();
    let json;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text: body, json, close() {}, events: [] };
  }
  return new SSEStream(res, controller, rawLimit);
}

/** Opens a stream and waits until the server has sent its first bytes (`retry:`), so it is subscribed. */
export async function subscribe(url, opts = {}) {
  const s = await openSSE(url, opts);
  if (s.status !== 200) throw new Error(`SSE ${url} answered ${s.status}: ${s.text}`);
  await s.waitFor((x) => x.raw.length > 0, T(5000), 'the first bytes of the stream');
  return s;
}
