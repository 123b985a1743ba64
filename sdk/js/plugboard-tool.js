// Typed tools for Plugboard in JavaScript: each tool declares the JSON Schema of its
// arguments, and each call's arguments are checked against it before the tool runs (a
// wrong type, a missing or an unknown field is named). `exportTools` makes the `tool`
// interface that componentize-js exports.

import { run } from "plugboard:plugin/process@0.1.1";

/** A failure, in words the model can act on. */
export class ToolFailure extends Error {}

/** A tool: `run(args, context)` returns a string or `{ text, title?, metadata? }`. */
export function defineTool({ name, description, parameters, run }) {
  if (!/^[a-z0-9_-]+$/.test(name)) throw new Error(`tool name \`${name}\` must use lowercase letters, digits, _ and -`);
  return { name, description, parameters, run };
}

const TYPES = {
  string: (v) => typeof v === "string",
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === "number",
  boolean: (v) => typeof v === "boolean",
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
};

/** The problem with `value` against `schema` (types, required, additionalProperties,
 * enum, items, nested objects), or null. */
function problem(value, schema, path) {
  const at = path ? `field \`${path}\`: ` : "";
  if (schema.type && TYPES[schema.type] && !TYPES[schema.type](value)) {
    return `${at}expected ${schema.type}, got ${JSON.stringify(value)}`;
  }
  if (schema.enum && !schema.enum.includes(value)) return `${at}expected one of ${JSON.stringify(schema.enum)}`;
  if (schema.type === "array" && schema.items) {
    for (const [i, item] of value.entries()) {
      const p = problem(item, schema.items, `${path}[${i}]`);
      if (p) return p;
    }
  }
  if (schema.type === "object") {
    const properties = schema.properties || {};
    for (const key of schema.required || []) {
      if (!(key in value)) return `missing field \`${path ? `${path}.` : ""}${key}\``;
    }
    for (const [key, v] of Object.entries(value)) {
      const sub = properties[key];
      if (!sub) {
        if (schema.additionalProperties === false) return `unknown field \`${key}\`, expected one of ${JSON.stringify(Object.keys(properties))}`;
        continue;
      }
      const p = problem(v, sub, path ? `${path}.${key}` : key);
      if (p) return p;
    }
  }
  return null;
}

/** A command the process grant refused. */
export class CommandDenied extends Error {
  constructor(commandLine, reason) {
    super(`\`${commandLine}\` was denied: ${reason}`);
    this.commandLine = commandLine;
    this.reason = reason;
  }
}

/** Runs `commandLine` under the plugin's process grant: `{ exitCode, stdout, stderr,
 * truncated, timedOut }`. A command the grant refuses throws `CommandDenied`, which the
 * host reports with the configuration line that would grant it. */
export function runCommand(commandLine, { workingDirectory = "", timeoutMs } = {}) {
  try {
    return run({ commandLine, workingDirectory, timeoutMs });
  } catch (e) {
    const payload = e && e.payload;
    if (payload && payload.tag === "denied") throw new CommandDenied(commandLine, String(payload.val));
    if (payload && payload.tag === "failed") throw new ToolFailure(`\`${commandLine}\` could not start: ${payload.val}`);
    throw e;
  }
}

/** The `tool` interface of the `tool-plugin` world, serving `tools`. */
export function exportTools(...tools) {
  const byName = new Map(tools.map((t) => [t.name, t]));
  return {
    tools() {
      return tools.map((t) => ({ name: t.name, description: t.description, parametersSchema: JSON.stringify(t.parameters) }));
    },
    call(name, argumentsJson, context) {
      const t = byName.get(name);
      if (!t) throw { tag: "unknown-tool", val: name };
      let args;
      try {
        args = JSON.parse(argumentsJson || "{}");
      } catch (e) {
        throw { tag: "invalid-arguments", val: `the arguments are not JSON: ${e.message}` };
      }
      const p = problem(args, t.parameters, "");
      if (p) throw { tag: "invalid-arguments", val: p };
      let out;
      try {
        out = t.run(args, context);
      } catch (e) {
        if (e instanceof ToolFailure) throw { tag: "failed", val: e.message };
        if (e instanceof CommandDenied) throw { tag: "denied", val: { kind: "process", target: e.commandLine, reason: e.reason } };
        throw { tag: "failed", val: String((e && e.message) || e) };
      }
      if (typeof out === "string") return { text: out };
      return { text: String(out.text), title: out.title, metadata: out.metadata === undefined ? undefined : JSON.stringify(out.metadata) };
    },
  };
}
