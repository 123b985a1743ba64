#!/usr/bin/env python3
"""Plugboard side by side with OpenCode, over one scripted model.

    python3 tests/side-by-side/opencode.py [--prompts 30] [--concurrent 200]
                                           [--opencode-version 1.18.33] [--scratch DIR]

Builds `plugboard` and the scripted model (`tests/src/bin/scripted-model.rs`, an
OpenAI-compatible server in a process of its own), installs `opencode-ai` from npm into a
scratch directory, and runs both servers, one after the other, on the same workspace over
the same model: every prompt is two provider turns, three parallel `read` calls of the
workspace's files and then an answer, which the model checks ("read 3 of 3" only when
every read returned its file). Both are driven over their HTTP APIs: Plugboard's
`POST /sessions` with its event stream, OpenCode's `POST /session/{id}/message`.

Prints, for each server and as ratios: the latency of a prompt at a time (median), the
time for `--concurrent` sessions prompted at once (sessions/s), the server's CPU per
prompt (its whole process tree, from /proc), and its resident memory (idle, and peak
under the concurrent load). Wrong answers and errors are counted, never hidden.

Needs Node.js and npm (for OpenCode), cargo, and Linux (/proc). Not part of CI: it
downloads OpenCode and takes a few minutes.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPECTED = "read 3 of 3"
PROMPT = "Read a.txt, b.txt and c.txt."
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=30, help="prompts one at a time (default 30)")
    parser.add_argument("--concurrent", type=int, default=200, help="sessions prompted at once (default 200)")
    parser.add_argument("--opencode-version", default="1.18.33")
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="the model's pause between chunks (default 0: the servers' own cost dominates)")
    parser.add_argument("--only", choices=("plugboard", "opencode"), help="measure one server (no ratios)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/plugboard-side-by-side"))
    args = parser.parse_args()
    for tool in ("cargo",) if args.only == "plugboard" else ("cargo", "node", "npm"):
        if shutil.which(tool) is None:
            sys.exit(f"error: `{tool}` is not installed; this script needs cargo, Node.js and npm")

    print("building plugboard and scripted-model (cargo build --release) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "plugboard", "--bin", "scripted-model"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    opencode = None if args.only == "plugboard" else install_opencode(args.scratch / "opencode", args.opencode_version)

    workspace = args.scratch / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (workspace / name).write_text(f"content of {name}\n")

    model = subprocess.Popen(
        [str(target / "scripted-model"), "--delay-ms", str(args.delay_ms), "--root", str(workspace)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        model_url = "http://" + model.stdout.readline().strip().removeprefix("listening on ")
        results = {}
        servers = [Plugboard(target / "plugboard", workspace, args.scratch, model_url),
                   OpenCode(opencode, workspace, args.scratch, model_url)]
        for server in [s for s in servers if args.only in (None, s.name)]:
            print(f"\n{server.name}: starting", flush=True)
            try:
                server.start()  # a first start fills the caches (OpenCode also installs from npm)
                server.stop()
                ready = server.start()
                print(f"  ready in {ready:.2f} s (a second start: caches warm)", flush=True)
                results[server.name] = measure(server, args.prompts, args.concurrent)
                results[server.name]["ready"] = ready
            finally:
                server.stop()
    finally:
        model.stdin.close()
        model.wait(timeout=10)
    report(results, args)


def install_opencode(directory, version):
    binary = directory / "node_modules" / ".bin" / "opencode"
    if binary.exists():
        installed = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
        if installed == version:
            return binary
    print(f"installing opencode-ai@{version} from npm into {directory} ...", flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(directory), f"opencode-ai@{version}"], check=True)
    return binary


class Server:
    name = ""
    port = 0

    def __init__(self, binary, workspace, scratch, model_url):
        self.binary, self.workspace, self.scratch, self.model_url = binary, workspace, scratch, model_url
        self.log = scratch / f"{self.name}.log"
        self.process = None
        self.started = 0.0

    def launch(self, command, **popen):
        """Starts the server in a process group of its own, on a port nothing else holds."""
        try:
            request("GET", self.port, "/", timeout=5)
            sys.exit(f"error: port {self.port} is taken (a server left from an earlier run?); stop it first")
        except OSError:
            pass
        self.started = time.time()
        self.process = subprocess.Popen(command, start_new_session=True, stdout=open(self.log, "w"),
                                        stderr=subprocess.STDOUT, **popen)

    def wait_until(self, path, within=600):
        """Waits for `path` to answer 200; returns the seconds it took since the start."""
        deadline = time.time() + within
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"error: {self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                status, _ = request("GET", self.port, path, timeout=5)  # a probe answered late is retried
                if status == 200:
                    return time.time() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit(f"error: {self.name} was not ready within {within} s; see {self.log}")

    def stop(self):
        """Stops the server and every process it started."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class Plugboard(Server):
    name = "plugboard"
    port = 4101

    def start(self):
        data = self.scratch / "plugboard-data"
        shutil.rmtree(data, ignore_errors=True)
        config = self.scratch / "plugboard.toml"
        config.write_text(
            'default_model = "openai/test-model"\n'
            "[sessions]\nmax_concurrent = 1000\n"
            '[agents.build]\npermissions = [{ tool = "read", action = "allow" }]\n'
            f'[plugins.openai]\nnetwork = ["{self.model_url}"]\napi_key = "sk-bench"\n'
            f'settings = {{ base_url = "{self.model_url}/v1", models = [{{ id = "test-model" }}] }}\n'
        )
        env = dict(os.environ, PLUGBOARD_DATA_DIR=str(data))
        self.launch([str(self.binary), "serve", "--port", str(self.port), "--workspace", str(self.workspace),
                     "--config", str(config)], env=env)
        return self.wait_until("/ready")

    def prompt(self):
        status, body = request("POST", self.port, "/sessions", {"prompt": PROMPT})
        if status != 201:
            raise RuntimeError(f"POST /sessions: {status} {body[:200]}")
        session = json.loads(body)["session_id"]
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        connection.request("GET", f"/sessions/{session}/stream?types=complete")
        response = connection.getresponse()
        try:
            for line in response:
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    return event["data"].get("text") or event["data"].get("error") or json.dumps(event["data"])
        finally:
            connection.close()
        raise RuntimeError("the event stream ended before `complete`")


class OpenCode(Server):
    name = "opencode"
    port = 4102

    def start(self):
        home = self.scratch / "opencode-home"
        shutil.rmtree(home / ".local", ignore_errors=True)
        (self.workspace / "opencode.json").write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "model": "scripted/test-model",
            "small_model": "scripted/test-model",
            "provider": {"scripted": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": f"{self.model_url}/v1", "apiKey": "sk-bench"},
                "models": {"test-model": {"name": "test-model"}},
            }},
        }))
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_DATA_HOME=str(home / ".local/share"), XDG_STATE_HOME=str(home / ".local/state"),
                   XDG_CACHE_HOME=str(home / ".cache"))
        self.launch([str(self.binary), "serve", "--port", str(self.port)], cwd=self.workspace, env=env)
        # Its first start in a new home installs its plugin package from npm (minutes).
        return self.wait_until("/session")

    def prompt(self):
        status, body = request("POST", self.port, "/session", {})
        if status != 200:
            raise RuntimeError(f"POST /session: {status} {body[:200]}")
        session = json.loads(body)["id"]
        message = {"parts": [{"type": "text", "text": PROMPT}], "model": {"providerID": "scripted", "modelID": "test-model"}}
        status, body = request("POST", self.port, f"/session/{session}/message", message)
        if status != 200:
            raise RuntimeError(f"POST /session/{{id}}/message: {status} {body[:200]}")
        parts = json.loads(body).get("parts", [])
        return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


def request(method, port, path, body=None, timeout=300):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def process_tree(root):
    """The pids of `root` and its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root):
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mib(root):
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure(server, prompts, concurrent):
    pid = server.process.pid
    outcome = {"wrong": 0, "errors": 0, "first_failure": None}

    def check(answer_or_error):
        if isinstance(answer_or_error, Exception):
            outcome["errors"] += 1
            outcome["first_failure"] = outcome["first_failure"] or repr(answer_or_error)
        elif answer_or_error.strip() != EXPECTED:
            outcome["wrong"] += 1
            outcome["first_failure"] = outcome["first_failure"] or f"answered {answer_or_error!r}"

    def attempt():
        try:
            return server.prompt()
        except Exception as e:  # counted and reported, never hidden
            return e

    for _ in range(3):  # warm-up: first requests, caches, lazy installs
        check(attempt())
    outcome["rss_idle"] = rss_mib(pid)

    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(prompts):
        started = time.perf_counter()
        check(attempt())
        latencies.append(time.perf_counter() - started)
    outcome["cpu_sequential"] = (cpu_seconds(pid) - cpu_before) / prompts
    outcome["latency"] = statistics.median(latencies)
    print(f"  {prompts} prompts one at a time: median {outcome['latency'] * 1e3:.1f} ms", flush=True)

    peak = [outcome["rss_idle"]]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrent) as pool:
        for answer in pool.map(lambda _: attempt(), range(concurrent)):
            check(answer)
    outcome["concurrent_seconds"] = time.perf_counter() - started
    outcome["cpu_concurrent"] = (cpu_seconds(pid) - cpu_before) / concurrent
    sampling.set()
    sampler.join()
    outcome["rss_peak"] = peak[0]
    print(f"  {concurrent} sessions at once: {outcome['concurrent_seconds']:.2f} s", flush=True)
    return outcome


def report(results, args):
    absent = {k: float("nan") for k in ("ready", "latency", "concurrent_seconds", "cpu_sequential", "cpu_concurrent",
                                         "rss_idle", "rss_peak")}
    p, o = results.get("plugboard", absent), results.get("opencode", absent)
    rows = [  # (what, plugboard, opencode, unit, whether more is better, what the ratio says)
        ("start to ready (caches warm)", p["ready"], o["ready"], "s", False, "faster"),
        ("prompt latency, one at a time (median)", p["latency"] * 1e3, o["latency"] * 1e3, "ms", False, "faster"),
        (f"{args.concurrent} sessions at once", args.concurrent / p["concurrent_seconds"],
         args.concurrent / o["concurrent_seconds"], "sessions/s", True, "faster"),
        ("CPU per prompt, one at a time", p["cpu_sequential"] * 1e3, o["cpu_sequential"] * 1e3, "ms", False, "less CPU"),
        ("CPU per prompt, concurrent", p["cpu_concurrent"] * 1e3, o["cpu_concurrent"] * 1e3, "ms", False, "less CPU"),
        ("RSS idle (after warm-up)", p["rss_idle"], o["rss_idle"], "MiB", False, "less memory"),
        ("RSS peak, concurrent", p["rss_peak"], o["rss_peak"], "MiB", False, "less memory"),
    ]
    print(f"\nPlugboard and OpenCode {args.opencode_version}, same scripted model (a chunk every {args.delay_ms} ms), "
          f"each prompt 2 turns and 3 parallel reads\n")
    print(f"{'what':<42}{'plugboard':>12}{'opencode':>12}  unit        Plugboard")
    for what, mine, theirs, unit, more_is_better, says in rows:
        ratio = (mine / theirs if more_is_better else theirs / mine) if mine and theirs else float("nan")
        digits = 2 if unit == "s" else 1
        shown = "" if ratio != ratio else f"{ratio:.1f}x {says}"  # NaN: a server was not measured
        print(f"{what:<42}{mine:>12.{digits}f}{theirs:>12.{digits}f}  {unit:<12}{shown}")
    for name, r in results.items():
        print(f"{name}: {r['wrong']} wrong answers, {r['errors']} errors" +
              (f"; the first: {r['first_failure']}" if r["first_failure"] else ""))


if __name__ == "__main__":
    main()
