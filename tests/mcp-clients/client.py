"""Drives Plugboard's MCP server with the official Python SDK (`mcp` from PyPI), for the
end-to-end tests (tests/tests/e2e/mcp.rs and host/tests/cli/mcp.rs).

    client.py http URL SECRET
    client.py stdio COMMAND [ARG...]

It lists the tools, calls `echo` (expected to be allowed), `read` outside every grant and
`shell` (expected to be refused), printing one JSON object per step on stdout. Then it
prints {"step": "waiting"} and waits up to 30 s for notifications/tools/list_changed, lists
the tools again and prints them.
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def say(**fields):
    print(json.dumps(fields), flush=True)


def outcome(result):
    text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    return {"is_error": bool(result.is_error), "text": text, "structured": result.structured_content}


async def main():
    changed = asyncio.Event()

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    if sys.argv[1] == "http":
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {sys.argv[3]}"})
        server = streamable_http_client(sys.argv[2], http_client=http)
    else:
        server = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
    async with Client(server, message_handler=on_message) as client:
        say(step="connected", protocol=str(client.session.protocol_version) if hasattr(client.session, "protocol_version") else None)
        tools = await client.list_tools()
        say(step="tools", names=sorted(t.name for t in tools.tools))
        say(step="echo", **outcome(await client.call_tool("echo", {"text": "from python"})))
        say(step="read", **outcome(await client.call_tool("read", {"path": "/etc/hostname"})))
        say(step="shell", **outcome(await client.call_tool("shell", {"command": "touch made-by-python"})))
        say(step="waiting")
        try:
            await asyncio.wait_for(changed.wait(), 30)
        except asyncio.TimeoutError:
            say(step="changed", arrived=False)
            return
        tools = await client.list_tools()
        say(step="changed", arrived=True, names=sorted(t.name for t in tools.tools))


asyncio.run(main())
