// Model providers for Plugboard in JavaScript: `exportProvider({ info, complete })` makes
// the `provider` interface componentize-js exports, where `complete(request)` is an async
// generator of stream events. `post` sends a request with `fetch` (over wasi:http: the host
// adds the API key and enforces the network grant), `sse` reads the answer's server-sent
// events as they arrive, and `Failure` is an error the agent loop understands.

import { config } from "plugboard:plugin/host@0.1.1";

/** A completion that failed. `retryable` tells the agent loop a later attempt may succeed
 * (a 429, a 5xx, a cut stream); `retryAfterMs` is the wait the API asked for. */
export class Failure extends Error {
  constructor(message, { status, retryable = false, retryAfterMs } = {}) {
    super(message);
    this.status = status;
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

// Stream events, as `complete` yields them.
export const text = (delta) => ({ tag: "text-delta", val: delta });
export const reasoning = (delta) => ({ tag: "reasoning-delta", val: delta });
export const toolCallStart = (index, id, name) => ({ tag: "tool-call-start", val: { index, id, name } });
export const toolCallDelta = (index, args) => ({ tag: "tool-call-delta", val: { index, arguments: args } });
/** `finish("stop" | "tool-calls" | "length" | "content-filter" | "other")`. */
export const finish = (reason) => ({ tag: "finish", val: reason });
export const usage = ({ inputTokens = 0, outputTokens = 0, cacheReadTokens = 0, cacheWriteTokens = 0, reasoningTokens = 0 }) => ({
  tag: "usage",
  val: {
    inputTokens: BigInt(inputTokens),
    outputTokens: BigInt(outputTokens),
    cacheReadTokens: BigInt(cacheReadTokens),
    cacheWriteTokens: BigInt(cacheWriteTokens),
    reasoningTokens: BigInt(reasoningTokens),
  },
});

/** One of this plugin's settings (`[plugins.<id>.settings]` in plugboard.toml). */
export function setting(key, fallback) {
  const value = config(key);
  return value === undefined ? fallback : JSON.parse(value);
}

/** A `retry-after` of seconds, in milliseconds; undefined when absent or a date. */
function milliseconds(seconds) {
  const n = Number.parseFloat(seconds ?? "");
  return Number.isFinite(n) ? BigInt(Math.round(n * 1000)) : undefined;
}

/** POSTs `body` to `url`; the `Response`, or a `Failure` naming the URL when the request
 * could not be made or the status is not 2xx (its message carries the API's). */
export async function post(url, body, headers) {
  let response;
  try {
    response = await fetch(url, { method: "POST", headers, body });
  } catch (e) {
    throw new Failure(`${url} could not be reached: ${(e && e.message) || e}`, { retryable: true });
  }
  if (response.ok) return response;
  const detail = (await leading(response, 16 * 1024)).slice(0, 1000);
  const status = response.status;
  throw new Failure(`${url} answered HTTP ${status}: ${detail}`, {
    status,
    retryable: [408, 409, 429].includes(status) || status >= 500,
    retryAfterMs: milliseconds(response.headers.get("retry-after")),
  });
}

/** Up to `limit` bytes of `response`'s body, decoded; the rest is not read. */
async function leading(response, limit) {
  const reader = response.body.getReader();
  const chunks = [];
  let length = 0;
  while (length < limit) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
  }
  reader.cancel().catch(() => {});
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(bytes.subarray(0, limit));
}

/** The server-sent events of `response` as `{ event, data }`, each as soon as it is whole
 * (events and UTF-8 characters may be split anywhere by the network). */
export async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let event = "";
  let data = [];
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      throw new Failure(`the answer was cut off: ${(e && e.message) || e}`, { retryable: true });
    }
    pending += chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
    for (let end = pending.search(/\r\n|\r|\n/); end >= 0; end = pending.search(/\r\n|\r|\n/)) {
      // A CR at the very end may be the first half of a CRLF still in flight.
      if (!chunk.done && pending[end] === "\r" && end + 1 === pending.length) break;
      const line = pending.slice(0, end);
      pending = pending.slice(end + (pending.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (data.length) yield { event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
        continue;
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (chunk.done) break;
  }
  if (data.length) yield { event: event || "message", data: data.join("\n") };
}

/** The WIT `provider-error` of anything `complete` threw: a `Failure` as it says, any
 * other error (a bug, a chunk that is not JSON) named, not retried. */
function providerError(e) {
  if (e instanceof Failure) {
    return { message: e.message, status: e.status, retryable: e.retryable, retryAfterMs: e.retryAfterMs };
  }
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { message, status: undefined, retryable: false, retryAfterMs: undefined };
}

/** The `provider` interface componentize-js exports: `info()` returns the provider's id,
 * name and models, and `complete(request)` is an async generator of stream events (`text`,
 * `toolCallStart`, ...) that throws `Failure` when the API fails. Its first step runs when
 * the host asks for the completion, so an API that refuses the request fails `complete`
 * itself. */
export function exportProvider({ info, complete }) {
  class Completion {
    constructor(events, first) {
      this.events = events;
      this.first = first;
    }

    async next() {
      if (this.first !== undefined) {
        const first = this.first;
        this.first = undefined;
        return first;
      }
      try {
        const step = await this.events.next();
        return step.done ? undefined : step.value;
      } catch (e) {
        throw providerError(e);
      }
    }
  }
  return {
    info,
    async complete(request) {
      const events = complete(request);
      let step;
      try {
        step = await events.next();
      } catch (e) {
        throw providerError(e);
      }
      return new Completion(events, step.done ? undefined : step.value);
    },
    Completion,
  };
}
