"""The provider `{plugin-id}`: a model served over an OpenAI-compatible Chat Completions API
(vLLM, llama.cpp's server, Ollama, LM Studio, OpenRouter, ...), streamed."""

import json

from plugboard_provider import (
    Failure,
    FinishReason,
    ModelInfo,
    ModelPrice,
    ProviderInfo,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    export_provider,
    finish,
    post,
    setting,
    sse,
    text,
    tool_call_delta,
    tool_call_start,
    usage,
)

FINISH = {
    "stop": FinishReason.STOP,
    "tool_calls": FinishReason.TOOL_CALLS,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


def info():
    # The operator names the models: [plugins.{plugin-id}.settings]
    # models = ["llama3.1", { id = "qwen2.5-coder", context_tokens = 131072 }]
    return ProviderInfo(id="{plugin-id}", name="{plugin-id}", models=[model(m) for m in setting("models", ["default"])])


def model(entry):
    entry = {"id": entry} if isinstance(entry, str) else entry
    return ModelInfo(
        id=entry["id"],
        name=entry.get("name", entry["id"]),
        context_tokens=entry.get("context_tokens", 32768),
        output_tokens=entry.get("output_tokens", 4096),
        supports_tools=entry.get("tools", True),
        supports_reasoning=False,
        supports_images=False,
        price=ModelPrice(input=entry.get("input_price", 0.0), output=entry.get("output_price", 0.0), cache_read=0.0, cache_write=0.0),
    )


def complete(request):
    base_url = setting("base_url")
    if not base_url:
        raise Failure('no API to call: set [plugins.{plugin-id}.settings] base_url = "https://…/v1"')
    body = {"model": request.model, "messages": messages(request), "stream": True, "stream_options": {"include_usage": True}}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": json.loads(t.parameters_schema)}}
            for t in request.tools
        ]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    # The host adds the API key (plugin.toml's [credentials]); this code never sees it.
    response = post(f"{base_url.rstrip('/')}/chat/completions", json.dumps(body).encode(), headers)
    started = set()
    for _, data in sse(response):
        if data.strip() == "[DONE]":
            return
        chunk = json.loads(data)
        if chunk.get("error"):
            raise Failure(f"the API failed mid-stream: {chunk['error']}", retryable=True)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                yield text(delta["content"])
            for call in delta.get("tool_calls") or []:
                index, function = call.get("index", 0), call.get("function") or {}
                if index not in started:
                    started.add(index)
                    yield tool_call_start(index, call.get("id") or f"call_{index}", function.get("name", ""))
                if function.get("arguments"):
                    yield tool_call_delta(index, function["arguments"])
            if choice.get("finish_reason"):
                yield finish(FINISH.get(choice["finish_reason"], FinishReason.OTHER))
        if chunk.get("usage"):
            yield usage(input_tokens=chunk["usage"].get("prompt_tokens", 0), output_tokens=chunk["usage"].get("completion_tokens", 0))


def messages(request):
    """The conversation as Chat Completions messages."""
    out = [{"role": "system", "content": request.system}] if request.system else []
    for message in request.messages:
        content, calls = "", []
        for part in message.parts:
            if isinstance(part, TextPart):
                content += part.value
            elif isinstance(part, ToolCallPart):
                call = part.value
                calls.append({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
            elif isinstance(part, ToolResultPart):
                out.append({"role": "tool", "tool_call_id": part.value.call_id, "content": part.value.content})
        if message.role == Role.USER and content:
            out.append({"role": "user", "content": content})
        elif message.role == Role.ASSISTANT and (content or calls):
            out.append({"role": "assistant", "content": content or None, **({"tool_calls": calls} if calls else {})})
    return out


# The class componentize-py exports.
Provider = export_provider(info, complete)
