// Builds the plugin: app.js (with what it imports) into a WebAssembly component for the
// world its plugin.toml names (`tool-plugin`, `hook-plugin`, `provider-plugin`) in wit/, with
// componentize-js. Usage: node build.mjs OUT.wasm
import { componentize } from "@bytecodealliance/componentize-js";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = process.argv[2] || "plugin.wasm";
// The newest line of WIT releases Plugboard serves (`plugboard plugin wit` writes them).
const line = readdirSync(`${here}wit`).filter((d) => d.startsWith("since_v")).sort().at(-1);
const manifest = readFileSync(`${here}plugin.toml`, "utf8");
const world = /^world\s*=\s*"([a-z-]+)"/m.exec(manifest)?.[1];
if (!world) throw new Error("plugin.toml names no world: add e.g. world = \"tool-plugin\"");
// `fetch` (over wasi:http) is built in only for a plugin that asks for the network; the
// host still lets its requests through only to the hosts the operator grants.
const network = /^network\s*=/m.test(manifest);
const { component } = await componentize({
  sourcePath: `${here}app.js`,
  witPath: `${here}wit/${line}`,
  worldName: world,
  disableFeatures: network ? ["fetch-event"] : ["http", "fetch-event"],
});
writeFileSync(`${here}${out}`, component);
console.log(`built ${out} (${component.length} bytes)`);
