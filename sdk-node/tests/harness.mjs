// Real `raftoral serve` processes and worker processes for the tests.
// Ports are picked at run time; every wait polls its condition with a deadline.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const DEADLINE_MS = 30_000;
const HERE = dirname(fileURLToPath(import.meta.url));

/** Where the workspace binaries are (RAFTORAL_BIN_DIR, set by `make test-node`). */
export function raftoralBin() {
  const dir = process.env.RAFTORAL_BIN_DIR;
  if (!dir)
    throw new Error("set RAFTORAL_BIN_DIR to the directory of the `raftoral` binary (make test-node does)");
  const path = join(dir, "raftoral");
  if (!existsSync(path))
    throw new Error(`${path} is missing: build it first (cargo build -p raftoral-sidecar)`);
  return path;
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms until it is true; fails after `timeoutMs`. */
export async function eventually(check, what, timeoutMs = DEADLINE_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(20);
  }
}

const made = [];
process.on("exit", () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix = "raftoral-node-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export const newId = (p = "wf") => `${p}-${randomUUID()}`;

/** A free loopback port, for nodes that must be named in their peers' lists before they start. */
async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One `raftoral serve` process. */
export class Node {
  constructor(dir, args) {
    this.dir = dir;
    this.args = args;
    this.url = "";
    this.sidecarAddr = "127.0.0.1:0";
    this.proc = null;
  }

  async start() {
    mkdirSync(this.dir, { recursive: true });
    const addrFile = join(this.dir, "addr.json");
    rmSync(addrFile, { force: true });
    const log = openSync(join(this.dir, "sidecar.log"), "a");
    this.proc = spawn(
      raftoralBin(),
      ["serve", "--sidecar-listen", this.sidecarAddr, "--addr-file", addrFile, ...this.args],
      { stdio: ["ignore", "ignore", log], env: { ...process.env, RUST_LOG: "info,raftoral=debug" } },
    );
    closeSync(log);
    let exited = false;
    this.proc.once("exit", () => {
      exited = true;
    });
    let addrs;
    await eventually(() => {
      if (exited) throw new Error(`raftoral serve exited:\n${this.log()}`);
      try {
        addrs = JSON.parse(readFileSync(addrFile, "utf8"));
        return true;
      } catch {
        return false;
      }
    }, "raftoral serve to write its address file");
    this.url = `http://${addrs.sidecar}`;
    // A restart keeps the app address, so apps reconnect by themselves.
    this.sidecarAddr = addrs.sidecar;
    return this;
  }

  log() {
    try {
      return readFileSync(join(this.dir, "sidecar.log"), "utf8");
    } catch {
      return "";
    }
  }

  async kill() {
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGKILL");
      await gone;
    }
  }
}

/** A single-node sidecar. */
export async function singleNode(dir, extra = []) {
  return new Node(dir, ["--listen", "127.0.0.1:0", ...extra]).start();
}

/** `n` nodes forming one cluster over loopback. */
export class Cluster {
  static async start(dir, n, extra = []) {
    const raft = {};
    for (let i = 1; i <= n; i++) raft[i] = `127.0.0.1:${await freePort()}`;
    const peers = Object.entries(raft)
      .map(([i, a]) => `${i}=${a}`)
      .join(",");
    const c = new Cluster();
    c.nodes = {};
    for (let i = 1; i <= n; i++) {
      c.nodes[i] = new Node(join(dir, `node${i}`), [
        "--node-id",
        String(i),
        "--listen",
        raft[i],
        "--peers",
        peers,
        "--tick-ms",
        "20",
        "--proposal-timeout-ms",
        "3000",
        ...extra,
      ]);
    }
    for (const node of Object.values(c.nodes)) await node.start();
    return c;
  }

  async stop() {
    for (const node of Object.values(this.nodes)) await node.kill();
  }
}

/** The side-effect file the workers append to: `<workflow id> <what> <step> <worker>` lines. */
export class Effects {
  constructor(path) {
    this.path = path;
  }

  lines() {
    try {
      return readFileSync(this.path, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" "));
    } catch {
      return [];
    }
  }

  count(id, what, step) {
    return this.lines().filter(
      (p) => p[0] === id && p[1] === what && (step === undefined || p[2] === String(step)),
    ).length;
  }

  find(id, what) {
    return this.lines().filter((p) => p[0] === id && p[1] === what);
  }
}

/** `apps/worker.mjs` in its own Node process. */
export class WorkerProcess {
  static async start(url, effects, name, env = {}) {
    const proc = spawn(process.execPath, [join(HERE, "apps", "worker.mjs")], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, RAFTORAL_SIDECAR_URL: url, EFFECTS: effects, WORKER_NAME: name, ...env },
    });
    const w = new WorkerProcess();
    w.proc = proc;
    w.lines = [];
    const rl = createInterface({ input: proc.stdout });
    rl.on("line", (l) => w.lines.push(l));
    await eventually(() => {
      if (proc.exitCode !== null) throw new Error(`the worker exited (${proc.exitCode}) before it was ready`);
      return w.lines.includes("worker ready");
    }, `worker ${name} to be ready`);
    return w;
  }

  /** SIGKILL: the app dies without any goodbye. */
  async kill() {
    const p = this.proc;
    if (p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGKILL");
      await gone;
    }
  }

  /** SIGTERM, then the exit code. */
  async terminate() {
    const p = this.proc;
    const gone = new Promise((r) => p.once("exit", (code) => r(code)));
    p.kill("SIGTERM");
    return gone;
  }
}

/** A promise and the function that resolves it. */
export function latch() {
  let open;
  const opened = new Promise((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

const latches = new Map();

/**
 * The latch `name` (`{ open, opened }`), made on first use: a test and the
 * workflows it runs share it, so a step can wait until the test opens it.
 */
export function named(name) {
  if (!latches.has(name)) latches.set(name, latch());
  return latches.get(name);
}
