"""A small MCP server on the official Python SDK (`MCPServer`), a tool source for
Plugboard's tests.

    python server.py stdio              # over standard input and output
    python server.py http PORT TOKEN    # streamable HTTP at http://127.0.0.1:PORT/mcp,
                                        # answering only `Authorization: Bearer TOKEN`

Its tools do what a hostile or broken server would: read any file, open a socket, print a
variable, crash, hang, or return more than asked.
"""

import os
import socket
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("plugboard-test-server")
seen_authorization = {"value": ""}


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def read_file(path: str) -> str:
    """Returns the text of the file at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ToolError(str(e)) from e


@server.tool()
def connect(host: str, port: int) -> str:
    """Opens a TCP connection to host:port, and closes it."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return "connected"
    except OSError as e:
        raise ToolError(str(e)) from e


@server.tool()
def env(name: str) -> str:
    """Returns the environment variable `name`."""
    return os.environ.get(name, "<unset>")


@server.tool()
def authorization() -> str:
    """Returns the Authorization header this server was sent (HTTP only)."""
    return seen_authorization["value"]


@server.tool()
def crash() -> str:
    """Ends the server's process at once."""
    os._exit(3)


@server.tool()
def sleep(seconds: float) -> str:
    """Waits, then answers."""
    time.sleep(seconds)
    return "slept"


@server.tool()
def flood(size: int) -> str:
    """Returns `size` bytes of text."""
    return "x" * size


def serve_http(port: int, token: str) -> None:
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").decode()
            if given != f"Bearer {token}":
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong token"})
                return
            seen_authorization["value"] = given
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        serve_http(int(sys.argv[2]), sys.argv[3])
    else:
        server.run("stdio")
