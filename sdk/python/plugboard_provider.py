"""Model providers for Plugboard in Python: `export_provider(info, complete)` makes the class
componentize-py exports as `provider`, where `complete(request)` is a generator of stream
events. `post` sends a request through wasi:http (the host adds the API key and enforces the
network grant), `sse` reads the answer's server-sent events as they arrive, and `Failure`
is an error the agent loop understands (retryable or not)."""

import json
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import provider as wit
from wit_world.imports import host, outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

# The records of the WIT `provider` interface, for `info()` and for reading requests.
ModelInfo, ModelPrice, ProviderInfo = wit.ModelInfo, wit.ModelPrice, wit.ProviderInfo
Role, FinishReason, Usage = wit.Role, wit.FinishReason, wit.Usage
TextPart, ReasoningPart = wit.ContentPart_Text, wit.ContentPart_Reasoning
ToolCallPart, ToolResultPart = wit.ContentPart_ToolCall, wit.ContentPart_ToolResult

# Status codes a later attempt may get past.
_RETRYABLE_STATUS = (408, 409, 429)
# How much of an error answer is kept in the message.
_ERROR_BODY_LIMIT = 16 * 1024


class Failure(Exception):
    """A completion that failed. `retryable` tells the agent loop a later attempt may
    succeed (a 429, a 5xx, a cut stream); `retry_after_ms` is the wait the API asked for."""

    def __init__(self, message, status=None, retryable=False, retry_after_ms=None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after_ms = status, retryable, retry_after_ms

    def to_wit(self):
        return wit.ProviderError(str(self), self.status, self.retryable, self.retry_after_ms)


def _provider_error(e):
    """The WIT `provider-error` of anything `complete` raised: a `Failure` as it says, any
    other exception (a bug, a chunk that is not JSON) named, not retried."""
    if isinstance(e, Failure):
        return e.to_wit()
    return wit.ProviderError(f"{type(e).__name__}: {e}", None, False, None)


# Stream events, as `complete` yields them.
def text(delta):
    return wit.StreamEvent_TextDelta(delta)


def reasoning(delta):
    return wit.StreamEvent_ReasoningDelta(delta)


def tool_call_start(index, call_id, name):
    return wit.StreamEvent_ToolCallStart(wit.ToolCallStart(index, call_id, name))


def tool_call_delta(index, arguments):
    return wit.StreamEvent_ToolCallDelta(wit.ToolCallDelta(index, arguments))


def usage(input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0):
    return wit.StreamEvent_Usage(wit.Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens))


def finish(reason):
    return wit.StreamEvent_Finish(reason)


def setting(key, default=None):
    """One of this plugin's settings (`[plugins.<id>.settings]` in plugboard.toml)."""
    value = host.config(key)
    return default if value is None else json.loads(value)


class Response:
    """An answer whose body is read as it arrives."""

    def __init__(self, response):
        self.status = response.status()
        self.headers = {k: v.decode("latin-1") for k, v in response.headers().entries()}
        body = response.consume()
        # wasi:http resources are dropped children first (a parent dropped before its child
        # traps): the stream, then the body, then the response.
        self._held = [body.stream(), body, response]

    def close(self):
        """Drops the body's resources; the connection is released."""
        while self._held:
            self._held.pop(0).__exit__(None, None, None)

    def chunks(self):
        """The body, piece by piece, as the server sends it."""
        try:
            while self._held:
                try:
                    chunk = self._held[0].blocking_read(64 * 1024)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        return
                    raise Failure(f"the answer was cut off: {e.value}", retryable=True)
                if chunk:
                    yield chunk
        finally:
            self.close()

    def text(self, limit):
        """Up to `limit` bytes of the body, decoded."""
        data = b""
        for chunk in self.chunks():
            data += chunk
            if len(data) >= limit:
                break
        self.close()
        return data[:limit].decode("utf-8", "replace")


def post(url, body, headers):
    """POSTs `body` (bytes) to `url`; the answer, or a `Failure` naming the URL when the
    request could not be made or the status is not 2xx (its message carries the API's)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Failure(f"`{url}` is not an http(s) URL")
    entries = [(k.lower(), v.encode()) for k, v in headers.items()] + [("content-length", str(len(body)).encode())]
    fields = http.Fields.from_list(entries)
    request = http.OutgoingRequest(fields)
    request.set_method(http.Method_Post())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    outgoing = request.body()
    with outgoing.write() as stream:
        for start in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[start : start + 4096])
    http.OutgoingBody.finish(outgoing, None)
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        raise _unreachable(url, parts.netloc, e.value)
    with future.subscribe() as ready:
        ready.block()
    answer = future.get().value  # Ok(Ok(response) | Err(error-code)) once ready
    if isinstance(answer, Err):
        raise _unreachable(url, parts.netloc, answer.value)
    response = Response(answer.value)
    if 200 <= response.status < 300:
        return response
    raise Failure(
        f"{url} answered HTTP {response.status}: {response.text(_ERROR_BODY_LIMIT)[:1000]}",
        status=response.status,
        retryable=response.status in _RETRYABLE_STATUS or response.status >= 500,
        retry_after_ms=_milliseconds(response.headers.get("retry-after")),
    )


def _milliseconds(seconds):
    """A `retry-after` of seconds, in milliseconds; None when absent or a date."""
    try:
        return int(float(seconds) * 1000)
    except (TypeError, ValueError):
        return None


def _unreachable(url, authority, code):
    if isinstance(code, http.ErrorCode_HttpRequestDenied):
        return Failure(f"{authority} was denied network access: the host is not in this plugin's network grant")
    return Failure(f"{url} could not be reached: {type(code).__name__.removeprefix('ErrorCode_')}", retryable=True)


def sse(response):
    """The server-sent events of `response` as `(event, data)`, each as soon as it is whole
    (events and UTF-8 characters may be split anywhere by the network)."""
    pending, event, data = b"", "", []
    for chunk in response.chunks():
        pending += chunk
        while True:
            end = min((i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0), default=-1)
            if end < 0:
                break
            if pending[end : end + 1] == b"\r" and end + 1 == len(pending):
                break  # a CR at the end may be the first half of CRLF
            line = pending[:end].decode("utf-8", "replace")
            pending = pending[end + (2 if pending[end : end + 2] == b"\r\n" else 1) :]
            if not line:
                if data:
                    yield event or "message", "\n".join(data)
                event, data = "", []
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event or "message", "\n".join(data)


class _Completion(wit.Completion):
    def __init__(self, events):
        self._events = events

    def next(self):
        try:
            return next(self._events)
        except StopIteration:
            return None
        except Exception as e:
            raise Err(_provider_error(e))


def export_provider(info, complete):
    """The `provider` class componentize-py exports: `info()` returns a `ProviderInfo`, and
    `complete(request)` is a generator of stream events (`text`, `tool_call_start`, ...)
    that raises `Failure` when the API fails (any other exception fails the completion too,
    named). Its first step runs when the host asks for the completion, so an API that refuses
    the request fails `complete` itself."""

    class Provider(exports.Provider):
        def info(self):
            return info()

        def complete(self, request):
            events = complete(request)
            try:
                first = next(events)
            except StopIteration:
                return _Completion(iter(()))
            except Exception as e:
                raise Err(_provider_error(e))

            def replay():
                yield first
                yield from events

            return _Completion(replay())

    return Provider
