"""Checks compose.yaml offline, in `make test` (`make compose-check`).

1. The Compose specification: `compose-check` (scripts/compose-check, on
   compose-go, the loader `docker compose` uses) validates the file against
   the specification's schema, resolves anchors and merges, and prints the
   model as JSON.
2. What the schema cannot know, on that model: every `RAFTORAL_*` variable
   of a sidecar is one `raftoral serve --help` lists; node ids are unique and
   the peer list names exactly the sidecars, each at the address it
   advertises; the app API stays on loopback; the storage path is on a
   volume; each app shares a sidecar's network namespace and reaches it on
   loopback; every build's Dockerfile exists.

Usage: check_compose.py COMPOSE_CHECK RAFTORAL_BINARY [compose.yaml]
Exits 1 and prints every problem. First checks itself: each rule must
report a copy of the model broken for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from check_k8s import serve_env_vars

ROOT = Path(__file__).resolve().parent.parent
SIDECAR_IMAGE = "raftoral/raftoral:"


def load(tool: str, compose: Path) -> dict[str, Any]:
    done = subprocess.run([tool, str(compose)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compose.yaml fails the Compose specification:\n{done.stderr}")
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def check(model: dict[str, Any], known: set[str]) -> list[str]:
    problems: list[str] = []
    services: dict[str, Any] = model.get("services", {})
    sidecars = {
        name: s for name, s in services.items() if str(s.get("image", "")).startswith(SIDECAR_IMAGE)
    }
    if len(sidecars) < 3:
        problems.append(f"expected 3 sidecars, found {sorted(sidecars)}")
    ids: dict[str, str] = {}
    advertised: dict[str, str] = {}
    peer_lists: set[str] = set()
    for name, s in sidecars.items():
        env: dict[str, str] = s.get("environment") or {}
        for var in env:
            if var.startswith("RAFTORAL_") and var not in known:
                problems.append(f"{name}: {var} is no setting of raftoral serve")
        node_id = env.get("RAFTORAL_NODE_ID", "")
        if node_id in ids.values():
            problems.append(f"{name}: node id {node_id} is used twice")
        ids[name] = node_id
        advertised[node_id] = env.get("RAFTORAL_ADVERTISE", "")
        host = advertised[node_id].rsplit(":", 1)[0]
        if host not in (name, s.get("hostname")):
            problems.append(f"{name}: advertises {host}, which is not its name")
        peer_lists.add(env.get("RAFTORAL_PEERS", ""))
        listen = env.get("RAFTORAL_SIDECAR_LISTEN", "")
        if not listen.startswith("127.0.0.1:"):
            problems.append(f"{name}: the app API listens on {listen!r}, not loopback")
        storage = env.get("RAFTORAL_STORAGE_PATH", "")
        mounts = [v.get("target", "") for v in s.get("volumes") or []]
        if not storage or not any(storage.startswith(m + "/") for m in mounts):
            problems.append(f"{name}: storage {storage!r} is on no volume ({mounts})")
    if len(peer_lists) != 1:
        problems.append(f"the sidecars have different peer lists: {peer_lists}")
    else:
        peers = dict(p.split("=", 1) for p in next(iter(peer_lists)).split(","))
        if peers != advertised:
            problems.append(f"peers {peers} differ from the advertised {advertised}")
    for name, s in services.items():
        if name in sidecars:
            continue
        mode = str(s.get("network_mode", ""))
        owner = mode.removeprefix("service:")
        if owner not in sidecars:
            problems.append(f"{name}: shares no sidecar's network ({mode!r})")
            continue
        url = (s.get("environment") or {}).get("RAFTORAL_SIDECAR_URL", "")
        listen = (sidecars[owner].get("environment") or {}).get("RAFTORAL_SIDECAR_LISTEN", "")
        if url != f"http://{listen}":
            problems.append(f"{name}: RAFTORAL_SIDECAR_URL {url!r} is not {owner}'s app API")
    for name, s in services.items():
        build = s.get("build") or {}
        dockerfile = Path(build.get("context", ROOT)) / build.get("dockerfile", "Dockerfile")
        if build and not dockerfile.is_file():
            problems.append(f"{name}: {dockerfile} does not exist")
    return problems


def self_test(model: dict[str, Any], known: set[str]) -> None:
    """Each rule must fire on a model broken for it: a check that cannot
    fail proves nothing."""
    services = model["services"]
    first, second = sorted(n for n in services if n.startswith("raftoral-"))[:2]
    app = next(n for n in services if not n.startswith("raftoral-"))
    breakages: list[tuple[str, str, str, str]] = [
        (first, "RAFTORAL_LOG_FORMT", "json", "no setting"),
        (
            second,
            "RAFTORAL_NODE_ID",
            services[first]["environment"]["RAFTORAL_NODE_ID"],
            "used twice",
        ),
        (first, "RAFTORAL_SIDECAR_LISTEN", "0.0.0.0:9001", "not loopback"),
        (first, "RAFTORAL_STORAGE_PATH", "/elsewhere/raft", "on no volume"),
        (app, "RAFTORAL_SIDECAR_URL", "http://127.0.0.1:1", "is not"),
    ]
    for service, var, value, expected in breakages:
        broken = json.loads(json.dumps(model))
        broken["services"][service]["environment"][var] = value
        found = check(broken, known)
        if not any(expected in p for p in found):
            sys.exit(f"self-test: setting {var}={value} on {service} went unnoticed ({found})")


def main() -> None:
    tool, binary = sys.argv[1:3]
    compose = Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT / "compose.yaml"
    model, known = load(tool, compose), serve_env_vars(binary)
    self_test(model, known)
    problems = check(model, known)
    for problem in problems:
        print(f"compose.yaml: {problem}")
    if problems:
        sys.exit(1)
    print(f"{compose.name}: valid, 3 nodes consistent with raftoral serve")


if __name__ == "__main__":
    main()
