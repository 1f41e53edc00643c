#!/usr/bin/env python3
"""Runs the worker-centred conformance scenarios once per worker and prints a
scenario x worker table (also written to target/conformance/matrix.md).

Settings (environment):
  RAFTORAL_CONFORMANCE_WORKERS  comma list of workers (default: every worker
                                of WORKERS whose code is in this tree)
  RAFTORAL_CONFORMANCE_FILES    space or comma list of conformance/tests files
                                (default: DEFAULT_FILES)
  CARGO                         cargo command (default: cargo)

Each (file, worker) pair is one `cargo test -p raftoral-conformance --test
FILE` with CONFORMANCE_WORKER set to the worker's command; its output goes to
target/conformance/logs/. Exits non-zero when any cell fails. Standard
library only: it runs before any venv exists. See docs/TESTING.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "conformance"
DEFAULT_FILES = [
    "single_node",
    "cluster_workflows",
    "app_stream",
    "cluster",
    "mixed",
    "mixed_messages",
    "errors",
    "helpers",
    "timers",
    "cancel",
    "events",
    "status",
    "awakeables",
    "races",
    "children",
    "calls",
]
# Run once with every worker at a time (one per node, CONFORMANCE_MIXED, and
# their clients in CONFORMANCE_MIXED_CLIENTS), not once per worker.
MIXED_FILES = ("mixed", "mixed_messages")

# Scenarios that start no worker process (they drive the client API or the
# app stream by hand): the same for every worker, so they run in the rust
# column only and say so in the others.
WORKERLESS = {
    "single_node::client_api_errors_have_precise_codes": "client API only",
    "app_stream::refusals_name_their_subject_and_a_result_after_a_cancellation_is_not_running": (
        "drives the app stream by hand"
    ),
    "app_stream::step_proposals_are_checked_and_fenced": "drives the app stream by hand",
    "cluster::three_nodes_form_one_cluster_a_fourth_joins_and_one_is_removed": "membership only",
    "cluster::restarted_follower_catches_up_by_log_then_by_snapshot": "starts workflows, runs none",
    "cluster::whole_cluster_killed_and_restarted_keeps_all_committed_state": (
        "starts workflows, runs none"
    ),
    "cluster::a_torn_log_tail_is_repaired_at_restart": "starts workflows, runs none",
    "cluster::a_minority_partition_cannot_commit_and_converges_after_healing": (
        "starts workflows, runs none"
    ),
}


@dataclass
class Worker:
    name: str
    # CONFORMANCE_WORKER value; None runs the harness default (the Rust one).
    command: Optional[str]
    # Why the worker cannot run at all (None: it can); `absent` means its
    # SDK is not in this tree, which makes its column "n/a", not "fail".
    problem: Optional[str] = None
    absent: bool = False
    # The command line in CONFORMANCE_MIXED (the Rust worker has no
    # CONFORMANCE_WORKER value, being the default, but needs one there).
    line: str = ""
    # The command line of its language's client mode, in
    # CONFORMANCE_MIXED_CLIENTS (conformance/WORKERS.md, "Client mode").
    client_line: str = ""


def workers() -> dict[str, Worker]:
    """Every known worker, with what it needs checked."""
    found: dict[str, Worker] = {}
    rust = ROOT / "target" / "debug" / "conformance-worker-rust"
    found["rust"] = Worker(
        "rust", None, None if rust.exists() else f"{rust} missing: run `make build`"
    )
    found["rust"].line = str(rust)
    found["rust"].client_line = str(ROOT / "target" / "debug" / "conformance-client-rust")
    py = ROOT / "sdk-python" / ".venv-test" / "bin" / "python"
    found["python"] = Worker(
        "python",
        f"{py} {ROOT / 'sdk-python' / 'conformance' / 'worker.py'}",
        None if py.exists() else "the wheel's venv is missing: run `make conformance`",
        client_line=f"{py} {ROOT / 'sdk-python' / 'conformance' / 'client.py'}",
    )
    raw = ROOT / "conformance" / "raw-python"
    raw_py = raw / ".venv" / "bin" / "python"
    ok = raw_py.exists() and (raw / "gen").is_dir()
    found["raw"] = Worker(
        "raw",
        f"{raw_py} {raw / 'worker.py'}",
        None if ok else "venv or generated stubs missing: run `make raw-worker`",
        client_line=f"{raw_py} {raw / 'client.py'}",
    )
    # The Node worker runs from the fresh project `make test-node` installs
    # the npm tarballs into: what `npm install` gives a user.
    node_dir = ROOT / "sdk-node"
    node_worker = ROOT / "target" / "node-test" / "conformance" / "worker.mjs"
    if not node_dir.is_dir():
        found["node"] = Worker("node", None, "the Node SDK is not in this tree", absent=True)
    else:
        found["node"] = Worker(
            "node",
            f"node {node_worker}",
            None if node_worker.exists() else f"{node_worker} missing: run `make test-node`",
            client_line=f"node {node_worker.with_name('client.mjs')}",
        )
    return found


def list_tests(cargo: str, file: str) -> list[str]:
    out = subprocess.run(
        [cargo, "test", "-q", "-p", "raftoral-conformance", "--test", file, "--", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line[: -len(": test")] for line in out.splitlines() if line.endswith(": test"))


# (file, worker, seconds) of every cargo test run, for the time table.
TIMES: list[tuple[str, str, float]] = []


def run_file(
    cargo: str, file: str, worker: Worker, skip: list[str], mixed: str = "", clients: str = ""
) -> dict[str, str]:
    """Runs one test file with one worker; returns test name -> ok/FAILED."""
    env = dict(os.environ)
    env.pop("CONFORMANCE_WORKER", None)
    env["CONFORMANCE_MIXED"] = mixed
    env["CONFORMANCE_MIXED_CLIENTS"] = clients
    if worker.command is not None:
        env["CONFORMANCE_WORKER"] = worker.command
    args = [cargo, "test", "-p", "raftoral-conformance", "--test", file, "--", "--exact"]
    for name in skip:
        args += ["--skip", name]
    print(f"== {file} with the {worker.name} worker", flush=True)
    started = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    TIMES.append((file, worker.name, time.monotonic() - started))
    log = OUT / "logs" / f"{file}-{worker.name}.log"
    log.write_text(done.stdout + done.stderr)
    results = dict(re.findall(r"^test (\S+) \.\.\. (ok|FAILED)$", done.stdout, re.M))
    if done.returncode != 0 and not any(v == "FAILED" for v in results.values()):
        # The binary did not build or crashed: every test not reported fails.
        print(done.stderr[-4000:], file=sys.stderr)
    return results


def run_mixed(
    cargo: str,
    file: str,
    chosen: list[Worker],
    tests: list[str],
    cells: dict[tuple[str, str], str],
) -> None:
    """One run of `file` with the runnable workers (and their clients) on the
    nodes of one cluster."""
    able = [w for w in chosen if w.problem is None]
    for w in able:
        w.line = w.line or (w.command or "")
    if len(able) < 2:
        for w in chosen:
            for t in tests:
                cells[(f"{file}::{t}", w.name)] = "n/a: needs two runnable workers"
        return
    together = Worker("+".join(w.name for w in able), None)
    workers_line = ";".join(w.line for w in able)
    clients_line = ";".join(w.client_line for w in able)
    results = run_file(cargo, file, together, [], workers_line, clients_line)
    for w in chosen:
        for t in tests:
            if w.problem is not None:
                verdict = ("n/a: " if w.absent else "fail: ") + w.problem
            elif results.get(t) == "ok":
                verdict = f"pass (with {together.name})"
            else:
                verdict = f"fail (target/conformance/logs/{file}-{together.name}.log)"
            cells[(f"{file}::{t}", w.name)] = verdict


def main() -> int:
    cargo = os.environ.get("CARGO", "cargo")
    known = workers()
    asked = os.environ.get("RAFTORAL_CONFORMANCE_WORKERS", "")
    names = [n.strip() for n in asked.split(",") if n.strip()] or list(known)
    for name in names:
        if name not in known:
            print(f"unknown worker '{name}'; known: {', '.join(known)}", file=sys.stderr)
            return 2
    files = re.split(r"[\s,]+", os.environ.get("RAFTORAL_CONFORMANCE_FILES", "").strip())
    files = [f for f in files if f] or DEFAULT_FILES
    (OUT / "logs").mkdir(parents=True, exist_ok=True)

    scenarios = {f: list_tests(cargo, f) for f in files}
    every = {f"{f}::{t}" for f, ts in scenarios.items() for t in ts}
    stale = sorted(k for k in WORKERLESS if k.split("::")[0] in files and k not in every)
    if stale:
        print(f"WORKERLESS names scenarios that do not exist: {stale}", file=sys.stderr)
        return 2

    cells: dict[tuple[str, str], str] = {}
    for file in MIXED_FILES:
        if file in scenarios:
            run_mixed(cargo, file, [known[n] for n in names], scenarios.pop(file), cells)
    for name in names:
        worker = known[name]
        for file, tests in scenarios.items():
            if worker.problem is not None:
                verdict = ("n/a: " if worker.absent else "fail: ") + worker.problem
                for t in tests:
                    cells[(f"{file}::{t}", name)] = verdict
                continue
            skip = [t for t in tests if name != "rust" and f"{file}::{t}" in WORKERLESS]
            results = run_file(cargo, file, worker, skip)
            for t in tests:
                key = f"{file}::{t}"
                if t in skip:
                    cells[(key, name)] = f"n/a: {WORKERLESS[key]}, no worker (see rust)"
                elif results.get(t) == "ok":
                    cells[(key, name)] = "pass"
                else:
                    cells[(key, name)] = f"fail (target/conformance/logs/{file}-{name}.log)"

    rows = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in sorted(every):
        rows.append(f"| `{key}` | " + " | ".join(cells[(key, n)] for n in names) + " |")
    counts = {
        word: sum(1 for v in cells.values() if v.startswith(word))
        for word in ("pass", "fail", "n/a")
    }
    summary = f"matrix: {counts['pass']} passed, {counts['fail']} failed, {counts['n/a']} skipped"
    table = "\n".join(rows) + "\n"
    times = "| file | worker | seconds |\n|---|---|---|\n" + "".join(
        f"| {f} | {w} | {s:.0f} |\n" for f, w, s in TIMES
    )
    (OUT / "matrix.md").write_text(
        f"# Conformance matrix\n\npass, fail, or n/a (not applicable) with the reason.\n\n"
        f"{table}\n{summary}\n\n## Time per run\n\n{times}"
    )
    print(table)
    print(f"written to {OUT / 'matrix.md'}")
    print(summary)
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
