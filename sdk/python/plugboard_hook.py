"""Hooks for Plugboard in Python: one plain function per hook point. `export_hooks` makes
the class componentize-py exports as `hooks`: the points you give are declared (only those
are called), the others keep what they are given."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import hooks

_POINTS = {
    "session_created": hooks.HookPoint.SESSION_CREATED,
    "prompt_before": hooks.HookPoint.PROMPT_BEFORE,
    "tool_before": hooks.HookPoint.TOOL_BEFORE,
    "tool_after": hooks.HookPoint.TOOL_AFTER,
    "chat_params": hooks.HookPoint.CHAT_PARAMS,
    "on_event": hooks.HookPoint.EVENT,
}


class Deny:
    """`tool_before`: refuse the call (or, from `prompt_before`, reject the prompt)."""

    def __init__(self, reason):
        self.reason = reason


class Rewrite:
    """`tool_before`: run the call with these arguments (a dict); `prompt_before`: this prompt."""

    def __init__(self, value):
        self.value = value


def export_hooks(event_types=(), **points):
    """The `hooks` interface serving `points` (`tool_before=fn, tool_after=fn, ...`):

    - `tool_before(context, tool, arguments)` returns None (allow), `Deny(reason)` or
      `Rewrite(arguments)`;
    - `tool_after(context, tool, arguments, result)` returns None or a dict with `text` and/or
      `title` to replace;
    - `prompt_before(context, prompt)` returns None, `Rewrite(prompt)` or `Deny(reason)`;
    - `chat_params(context, params)` changes `params` in place;
    - `session_created(context, session)` and `on_event(context, event)` observe (an
      exception is reported as `hook.failed`)."""
    for name in points:
        if name not in _POINTS:
            raise ValueError(f"unknown hook point `{name}`: use {', '.join(_POINTS)}")

    def observe(name, *args):
        if name in points:
            try:
                points[name](*args)
            except Exception as e:
                raise Err(str(e))

    class Hooks(exports.Hooks):
        def describe(self):
            return hooks.HookInfo(points=[_POINTS[name] for name in points], event_types=list(event_types))

        def session_created(self, context, session):
            observe("session_created", context, session)

        def prompt_before(self, context, prompt):
            verdict = points["prompt_before"](context, prompt) if "prompt_before" in points else None
            if isinstance(verdict, Deny):
                return hooks.PromptVerdict_Reject(verdict.reason)
            if isinstance(verdict, Rewrite):
                return hooks.PromptVerdict_Rewrite(verdict.value)
            return hooks.PromptVerdict_Keep()

        def tool_before(self, context, call):
            if "tool_before" not in points:
                return hooks.ToolVerdict_Allow()
            verdict = points["tool_before"](context, call.tool, json.loads(call.arguments or "{}"))
            if isinstance(verdict, Deny):
                return hooks.ToolVerdict_Deny(verdict.reason)
            if isinstance(verdict, Rewrite):
                return hooks.ToolVerdict_Rewrite(json.dumps(verdict.value))
            return hooks.ToolVerdict_Allow()

        def tool_after(self, context, call, outcome):
            if "tool_after" not in points:
                return None
            change = points["tool_after"](context, call.tool, json.loads(call.arguments or "{}"), outcome)
            if not change:
                return None
            return hooks.ResultRewrite(text=change.get("text", outcome.text), title=change.get("title", outcome.title))

        def chat_params(self, context, params):
            if "chat_params" in points:
                points["chat_params"](context, params)
            return params

        def on_event(self, context, event):
            observe("on_event", context, event)

    return Hooks
