// The provider `{plugin-id}`: a model served over an OpenAI-compatible Chat Completions API
// (vLLM, llama.cpp's server, Ollama, LM Studio, OpenRouter, ...), streamed.

import { Failure, exportProvider, finish, post, setting, sse, text, toolCallDelta, toolCallStart, usage } from "./plugboard-provider.js";

const FINISH = { stop: "stop", tool_calls: "tool-calls", length: "length", content_filter: "content-filter" };

function info() {
  // The operator names the models: [plugins.{plugin-id}.settings]
  // models = ["llama3.1", { id = "qwen2.5-coder", context_tokens = 131072 }]
  return { id: "{plugin-id}", name: "{plugin-id}", models: setting("models", ["default"]).map(model) };
}

function model(entry) {
  const m = typeof entry === "string" ? { id: entry } : entry;
  return {
    id: m.id,
    name: m.name ?? m.id,
    contextTokens: m.context_tokens ?? 32768,
    outputTokens: m.output_tokens ?? 4096,
    supportsTools: m.tools ?? true,
    supportsReasoning: false,
    supportsImages: false,
    price: { input: m.input_price ?? 0, output: m.output_price ?? 0, cacheRead: 0, cacheWrite: 0 },
  };
}

async function* complete(request) {
  const baseUrl = setting("base_url");
  if (!baseUrl) throw new Failure('no API to call: set [plugins.{plugin-id}.settings] base_url = "https://…/v1"');
  const body = { model: request.model, messages: messages(request), stream: true, stream_options: { include_usage: true } };
  if (request.tools.length) {
    body.tools = request.tools.map((t) => ({
      type: "function",
      function: { name: t.name, description: t.description, parameters: JSON.parse(t.parametersSchema) },
    }));
  }
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.maxOutputTokens !== undefined) body.max_tokens = request.maxOutputTokens;
  // The host adds the API key (plugin.toml's [credentials]); this code never sees it.
  const response = await post(`${baseUrl.replace(/\/+$/, "")}/chat/completions`, JSON.stringify(body), {
    "content-type": "application/json",
    accept: "text/event-stream",
  });
  const started = new Set();
  for await (const { data } of sse(response)) {
    if (data.trim() === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Failure(`the API failed mid-stream: ${JSON.stringify(chunk.error)}`, { retryable: true });
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if (delta.content) yield text(delta.content);
      for (const call of delta.tool_calls || []) {
        const index = call.index ?? 0;
        const fn = call.function || {};
        if (!started.has(index)) {
          started.add(index);
          yield toolCallStart(index, call.id || `call_${index}`, fn.name || "");
        }
        if (fn.arguments) yield toolCallDelta(index, fn.arguments);
      }
      if (choice.finish_reason) yield finish(FINISH[choice.finish_reason] || "other");
    }
    if (chunk.usage) yield usage({ inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens });
  }
}

/** The conversation as Chat Completions messages. */
function messages(request) {
  const out = request.system ? [{ role: "system", content: request.system }] : [];
  for (const message of request.messages) {
    let content = "";
    const calls = [];
    for (const part of message.parts) {
      if (part.tag === "text") content += part.val;
      else if (part.tag === "tool-call") calls.push({ id: part.val.id, type: "function", function: { name: part.val.name, arguments: part.val.arguments } });
      else if (part.tag === "tool-result") out.push({ role: "tool", tool_call_id: part.val.callId, content: part.val.content });
    }
    if (message.role === "user" && content) out.push({ role: "user", content });
    else if (message.role === "assistant" && (content || calls.length)) {
      out.push({ role: "assistant", content: content || null, ...(calls.length ? { tool_calls: calls } : {}) });
    }
  }
  return out;
}

// The interface componentize-js exports.
export const provider = exportProvider({ info, complete });
