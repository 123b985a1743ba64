// Drives Plugboard's MCP server with the official TypeScript SDK
// (`@modelcontextprotocol/sdk` from npm), for the end-to-end tests; the same steps and
// output as client.py:
//
//   node client.mjs http URL SECRET
//   node client.mjs stdio COMMAND [ARG...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const say = (fields) => console.log(JSON.stringify(fields));
const outcome = (result) => ({
  is_error: Boolean(result.isError),
  text: result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
  structured: result.structuredContent ?? null,
});

const [mode, target, ...rest] = process.argv.slice(2);
const transport =
  mode === "http"
    ? new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers: { Authorization: `Bearer ${rest[0]}` } } })
    : new StdioClientTransport({ command: target, args: rest, stderr: "inherit" });
const client = new Client({ name: "plugboard-tests", version: "0" });
let changed;
const arrived = new Promise((resolve) => (changed = resolve));
client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed());
await client.connect(transport);
say({ step: "connected", protocol: transport.protocolVersion ?? null });
const names = async () => (await client.listTools()).tools.map((t) => t.name).sort();
say({ step: "tools", names: await names() });
say({ step: "echo", ...outcome(await client.callTool({ name: "echo", arguments: { text: "from typescript" } })) });
say({ step: "read", ...outcome(await client.callTool({ name: "read", arguments: { path: "/etc/hostname" } })) });
say({ step: "shell", ...outcome(await client.callTool({ name: "shell", arguments: { command: "touch made-by-typescript" } })) });
say({ step: "waiting" });
const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 30000));
if ((await Promise.race([arrived, timeout])) === "timeout") {
  say({ step: "changed", arrived: false });
} else {
  say({ step: "changed", arrived: true, names: await names() });
}
await client.close();
process.exit(0);
