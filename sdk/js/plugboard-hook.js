// Hooks for Plugboard in JavaScript: one plain function per hook point. `exportHooks` makes
// the `hooks` interface that componentize-js exports: the points you give are declared
// (only those are called), the others keep what they are given.
//
// - toolBefore(context, call): `call.args` is the parsed arguments; return nothing (allow),
//   `{ deny: reason }` or `{ rewrite: arguments }`;
// - toolAfter(context, call, result): return nothing or `{ text?, title? }` to replace;
// - promptBefore(context, prompt): return nothing, `{ rewrite: prompt }` or `{ reject: reason }`;
// - chatParams(context, params): return the params, changed;
// - sessionCreated(context, session), onEvent(context, event): observe (a thrown error is
//   reported as `hook.failed`).

const POINTS = {
  sessionCreated: "session-created",
  promptBefore: "prompt-before",
  toolBefore: "tool-before",
  toolAfter: "tool-after",
  chatParams: "chat-params",
  onEvent: "event",
};

export function exportHooks(points, { eventTypes = [] } = {}) {
  for (const name of Object.keys(points)) {
    if (!(name in POINTS)) throw new Error(`unknown hook point \`${name}\`: use ${Object.keys(POINTS).join(", ")}`);
  }
  const observe = (name, ...args) => {
    if (!points[name]) return;
    try {
      points[name](...args);
    } catch (e) {
      throw String((e && e.message) || e);
    }
  };
  const withArgs = (call) => ({ ...call, args: JSON.parse(call.arguments || "{}") });
  return {
    describe() {
      return { points: Object.keys(points).map((name) => POINTS[name]), eventTypes };
    },
    sessionCreated(context, session) {
      observe("sessionCreated", context, session);
    },
    promptBefore(context, prompt) {
      const verdict = points.promptBefore ? points.promptBefore(context, prompt) : undefined;
      if (verdict && verdict.reject !== undefined) return { tag: "reject", val: String(verdict.reject) };
      if (verdict && verdict.rewrite !== undefined) return { tag: "rewrite", val: String(verdict.rewrite) };
      return { tag: "keep" };
    },
    toolBefore(context, call) {
      const verdict = points.toolBefore ? points.toolBefore(context, withArgs(call)) : undefined;
      if (verdict && verdict.deny !== undefined) return { tag: "deny", val: String(verdict.deny) };
      if (verdict && verdict.rewrite !== undefined) return { tag: "rewrite", val: JSON.stringify(verdict.rewrite) };
      return { tag: "allow" };
    },
    toolAfter(context, call, result) {
      const change = points.toolAfter ? points.toolAfter(context, withArgs(call), result) : undefined;
      if (!change) return undefined;
      return { text: change.text ?? result.text, title: change.title ?? result.title };
    },
    chatParams(context, params) {
      return points.chatParams ? points.chatParams(context, { ...params }) ?? params : params;
    },
    onEvent(context, event) {
      observe("onEvent", context, { ...event, data: JSON.parse(event.data || "null") });
    },
  };
}
