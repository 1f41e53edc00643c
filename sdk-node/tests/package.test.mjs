// The installed package: CommonJS and ESM entry points, and its types.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";

import * as esm from "@raftoral/client";

const require = createRequire(import.meta.url);

test("require and import give the same module", () => {
  const cjs = require("@raftoral/client");
  const names = Object.keys(cjs)
    .filter((k) => k !== "__esModule")
    .sort();
  assert.deepEqual(
    Object.keys(esm)
      .filter((k) => k !== "default")
      .sort(),
    names,
  );
  assert.equal(esm.Client, cjs.Client, "one instance: instanceof works across both");
  assert.equal(typeof esm.workflow, "function");
});

test("the native addon comes from the platform package", () => {
  const resolved = require.resolve("@raftoral/client-linux-x64-gnu");
  assert.match(resolved, /raftoral\.linux-x64-gnu\.node$/);
});

test("tsc --noEmit --strict passes on an example using the package", {
  skip: !process.env.TSC && "TSC not set",
}, () => {
  execFileSync(
    process.execPath,
    [
      process.env.TSC,
      "--noEmit",
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "--types",
      "node",
      "tests/example.ts",
    ],
    { stdio: "inherit" },
  );
});
