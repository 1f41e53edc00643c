// One version for every package Raftoral ships: the crates (the workspace's
// version), the Python wheel (maturin reads the same), and the npm packages
// checked here, so the three SDKs always release together.
import { readFileSync } from "node:fs";

const cargo = readFileSync("Cargo.toml", "utf8");
const version = cargo.match(/\[workspace\.package\][^[]*?\nversion = "([^"]+)"/)?.[1];
if (!version) {
  console.error("Cargo.toml: no [workspace.package] version");
  process.exit(1);
}
const problems = [];
for (const file of ["sdk-node/package.json", "sdk-node/npm/linux-x64-gnu/package.json"]) {
  const pkg = JSON.parse(readFileSync(file, "utf8"));
  if (pkg.version !== version) problems.push(`${file}: version ${pkg.version}`);
  for (const [name, wanted] of Object.entries(pkg.optionalDependencies ?? {})) {
    if (name.startsWith("@raftoral/") && wanted !== version)
      problems.push(`${file}: ${name} ${wanted}`);
  }
}
const loader = readFileSync("sdk-node/native/index.js", "utf8");
const expected = new Set([...loader.matchAll(/bindingPackageVersion !== '([^']+)'/g)].map((m) => m[1]));
for (const found of expected) {
  if (found !== version) problems.push(`sdk-node/native/index.js: expects ${found}`);
}
if (problems.length > 0) {
  console.error(`the workspace version is ${version}, but:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`one version everywhere: ${version}`);
