// examples/ping-pong-node: compiled with tsc --strict, run against a real
// sidecar, same POST /workflow contract as the Rust example.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { eventually, singleNode, tempDir } from "./harness.mjs";

const EXAMPLE = "example/main.ts";

test("the ping-pong example answers POST /workflow ping with pong", {
  skip: (!process.env.TSC || !existsSync(EXAMPLE)) && "TSC or the example missing",
}, async () => {
  execFileSync(
    process.execPath,
    [
      process.env.TSC,
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "--types",
      "node",
      "--outDir",
      "example/dist",
      EXAMPLE,
    ],
    { stdio: "inherit" },
  );
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const addrFile = join(dir, "http.addr");
  const app = spawn(process.execPath, ["example/dist/main.js"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      PING_PONG_HTTP_LISTEN: "127.0.0.1:0",
      PING_PONG_ADDR_FILE: addrFile,
    },
  });
  const exited = new Promise((r) => app.once("exit", (code) => r(code)));
  try {
    await eventually(() => existsSync(addrFile), "the app to listen");
    const base = `http://${readFileSync(addrFile, "utf8")}`;
    const ping = await fetch(`${base}/workflow`, { method: "POST", body: "ping" });
    assert.equal(ping.status, 200);
    assert.equal(await ping.text(), "pong\n");
    const json = await fetch(`${base}/workflow`, { method: "POST", body: '"pong"' });
    assert.equal(await json.text(), "ping\n");
    app.kill("SIGTERM");
    assert.equal(await exited, 0, "SIGTERM stops the app cleanly");
  } finally {
    app.kill("SIGKILL");
    await sidecar.kill();
  }
});
