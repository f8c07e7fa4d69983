// Talking to the hub: JSON calls and Server-Sent Events read with fetch().
//
// EventSource cannot send an Authorization header, and the hub takes only a run's read
// token in `?token=`, so the admin token could not open a stream through it. fetch()
// with a streaming reader sends `Authorization: Bearer` for every kind of token: one
// code path for all of them. `subscribe` adds what EventSource would have given:
// reconnecting with backoff, resuming after the last `id:` with `Last-Event-ID`.

/** An error answer of the hub: its status, code and message (docs/http-api.md#errors). */
export class HubError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** A client mistake that asking again will not mend (a bad token, a gone run). */
  get fatal() {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

/** The hub's error body as a `HubError`, whatever the body turned out to be. */
export async function hubError(response) {
  let code = 'http_error';
  let message = `the hub answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's page, say): keep the status line.
  }
  return new HubError(response.status, code, message);
}

function headersFor(token, extra) {
  const headers = { ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** A JSON call; resolves to the body, rejects with a `HubError`. */
export async function call(method, path, token, body) {
  const init = { method, headers: headersFor(token, { Accept: 'application/json' }), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await hubError(response);
  return response.status === 204 ? null : response.json();
}

/**
 * Reads a `text/event-stream` body, calling `onMessage({event, data, id})` for each
 * message as the blank line that ends it arrives. Lines end in LF, CRLF or CR; a CR
 * at the end of a chunk waits for the next one, in case an LF follows.
 */
export async function readEvents(body, onMessage) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  let id;
  const line = (text) => {
    if (text === '') {
      if (data.length > 0) onMessage({ event: event || 'message', data: data.join('\n'), id });
      event = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r' && i + 1 === buffer.length) break;
      line(buffer.slice(start, i));
      if (c === '\r' && buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    buffer = buffer.slice(start);
  }
}

/** Waits `ms`, or less if `signal` aborts. */
function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Backoff before reconnect attempt `n` (from 0): 0.5 s doubling to 10 s, with jitter. */
function backoff(n) {
  const ceiling = Math.min(10000, 500 * 2 ** n);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Follows the stream at `path` until closed, reconnecting with backoff when the
 * connection drops or the hub restarts.
 *
 * - `onMessage(message)` for each message;
 * - `onStatus('connecting' | 'live' | 'reconnecting' | 'ended')`;
 * - `onFatal(hubError)` when the hub refuses for good (bad token, no such run): no
 *   more attempts;
 * - `finished()` tells, when the hub ends a stream, whether that was the last of it
 *   (a finished run) or a hub going away that should be reconnected to;
 * - `resume`: send the last `id:` as `Last-Event-ID` on reconnecting.
 *
 * Returns `{close()}`.
 */
export function subscribe({ path, token, onMessage, onStatus, onFatal, finished, resume }) {
  const controller = new AbortController();
  const { signal } = controller;
  let lastId;
  let attempt = 0;
  (async () => {
    onStatus('connecting');
    while (!signal.aborted) {
      try {
        const extra = { Accept: 'text/event-stream' };
        if (resume && lastId !== undefined) extra['Last-Event-ID'] = lastId;
        const target = typeof path === 'function' ? path() : path;
        const response = await fetch(target, { headers: headersFor(token, extra), signal, cache: 'no-store' });
        if (response.status === 204) {
          onStatus('ended');
          return;
        }
        if (!response.ok) {
          const error = await hubError(response);
          if (error.fatal) {
            onStatus('ended');
            onFatal(error);
            return;
          }
          throw error;
        }
        onStatus('live');
        attempt = 0;
        await readEvents(response.body, (message) => {
          if (message.id !== undefined) lastId = message.id;
          onMessage(message);
        });
        if (finished && finished()) {
          onStatus('ended');
          return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (!(error instanceof HubError) && !(error instanceof TypeError)) {
          console.warn('herald: stream failed', error);
        }
      }
      if (signal.aborted) return;
      onStatus('reconnecting');
      await pause(backoff(attempt), signal);
      attempt += 1;
    }
  })();
  return { close: () => controller.abort() };
}
