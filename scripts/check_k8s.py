#!/usr/bin/env python3
"""Checks the manifests in k8s/ offline (`make k8s-check`).

1. Renders every kustomization (kubectl's built-in kustomize).
2. Validates each rendered object strictly against the Kubernetes API schema
   (kubernetes-validate: unknown fields are errors).
3. Checks the raftoral sidecar container of every workload against the
   binary: each env var it is given is one `raftoral serve` accepts (as listed
   by `raftoral serve --help`), `args` start with `serve`, its container port
   is the port of RAFTORAL_LISTEN, probes use /health and /ready on that
   port, and it is a native sidecar (an init container that restarts).

Usage: check_k8s.py KUBECTL VALIDATOR RAFTORAL_BINARY
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "k8s"


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "k8s").rglob("kustomization.yaml"))


def serve_env_vars(binary: str) -> set[str]:
    help_text = subprocess.run(
        [binary, "serve", "--help"], check=True, capture_output=True, text=True
    ).stdout
    names = set(re.findall(r"\[env: ([A-Z0-9_]+)=", help_text))
    if not names:
        raise SystemExit(f"no [env: ...] entries in `{binary} serve --help`")
    return names


def sidecar_errors(where: str, spec: dict[str, Any], accepted: set[str]) -> list[str]:
    errors: list[str] = []
    init = spec.get("initContainers") or []
    sidecars = [c for c in init + (spec.get("containers") or []) if c.get("name") == "raftoral"]
    if len(sidecars) != 1:
        return [f"{where}: expected one container named raftoral, found {len(sidecars)}"]
    c = sidecars[0]
    if c not in init or c.get("restartPolicy") != "Always":
        errors.append(
            f"{where}: raftoral must be a native sidecar (an init container, restartPolicy Always)"
        )
    if (c.get("args") or [None])[0] != "serve":
        errors.append(f"{where}: raftoral args must start with 'serve'")
    env = {e["name"]: e.get("value") for e in c.get("env") or []}
    for name in sorted(set(env) - accepted):
        errors.append(f"{where}: env {name} is not a setting of `raftoral serve`")
    listen = env.get("RAFTORAL_LISTEN") or "0.0.0.0:7001"
    listen_port = int(listen.rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    if ports.get("raft") != listen_port:
        errors.append(
            f"{where}: container port 'raft' must be {listen_port} (RAFTORAL_LISTEN), found {ports}"
        )
    for probe, path in (
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("raft", listen_port):
            errors.append(f"{where}: {probe} must GET {path} on the raft port")
    return errors


def main() -> int:
    kubectl, validator, binary = sys.argv[1:4]
    accepted = serve_env_vars(binary)
    OUT.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for directory in kustomizations():
        name = str(directory.relative_to(ROOT / "k8s")).replace("/", "-")
        rendered = subprocess.run(
            [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True
        ).stdout
        path = OUT / f"{name}.yaml"
        path.write_text(rendered)
        check = subprocess.run(
            [validator, "--strict", "--quiet", str(path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            errors.append(f"{directory}: schema validation failed:\n{check.stdout}{check.stderr}")
        objects = [o for o in yaml.safe_load_all(rendered) if o]
        workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
        if not workloads:
            errors.append(f"{directory}: no Deployment or StatefulSet")
        for o in workloads:
            where = f"{directory.relative_to(ROOT)}: {o['kind']}/{o['metadata']['name']}"
            errors += sidecar_errors(where, o["spec"]["template"]["spec"], accepted)
        print(f"{directory.relative_to(ROOT)}: {len(objects)} objects rendered and checked")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
