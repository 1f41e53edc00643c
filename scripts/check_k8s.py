#!/usr/bin/env python3
"""Checks the manifests in k8s/ offline (`make k8s-check`).

1. Renders every kustomization (kubectl's built-in kustomize).
2. Validates each rendered object strictly against the Kubernetes API schema
   (kubernetes-validate: unknown fields are errors).
3. Checks the raftoral sidecar container of every workload against the
   binary: each env var it is given is one `raftoral serve` accepts (as listed
   by `raftoral serve --help`), `args` start with `serve`, its container port
   is the port of RAFTORAL_LISTEN, probes use /health and /ready on that
   port (or, with mutual TLS, on the plain probe port), the TLS files are in
   mounted volumes, and it is a native sidecar (an init container that
   restarts).
4. Checks cert-manager's resources (custom, so not in the schema) against
   the fields of cert-manager.io/v1 the manifests use.

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
    # With mutual TLS the node-to-node port serves only TLS clients: the
    # probes move to the plain probe port (RAFTORAL_PROBE_LISTEN).
    tls = [n for n in ("RAFTORAL_TLS_CERT", "RAFTORAL_TLS_KEY", "RAFTORAL_TLS_CA") if n in env]
    if tls and len(tls) != 3:
        errors.append(f"{where}: node-to-node TLS needs all of RAFTORAL_TLS_CERT, _KEY, _CA")
    probe_listen = env.get("RAFTORAL_PROBE_LISTEN")
    if tls and not probe_listen:
        errors.append(f"{where}: with TLS the probes need RAFTORAL_PROBE_LISTEN")
    if probe_listen:
        probe_port = int(probe_listen.rsplit(":", 1)[1])
        if ports.get("probe") != probe_port:
            errors.append(
                f"{where}: container port 'probe' must be {probe_port} (RAFTORAL_PROBE_LISTEN)"
            )
        probe_ports: tuple[object, ...] = ("probe", probe_port)
    else:
        probe_ports = ("raft", listen_port)
    mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
    for name in tls:
        path = env.get(name) or ""
        if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
            errors.append(f"{where}: {name}={path} is not in a mounted volume")
    for probe, path in (
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in probe_ports:
            errors.append(f"{where}: {probe} must GET {path} on port {probe_ports[0]}")
    return errors


# cert-manager's resources are custom (not in the Kubernetes schema the
# validator holds): their fields are checked against the part of
# cert-manager.io/v1 the manifests use.
CERT_MANAGER_SPEC = {
    "Issuer": {"selfSigned", "ca"},
    "Certificate": {
        "isCA",
        "commonName",
        "secretName",
        "duration",
        "renewBefore",
        "dnsNames",
        "ipAddresses",
        "usages",
        "privateKey",
        "issuerRef",
    },
}


def cert_manager_errors(where: str, obj: dict[str, Any], secrets: set[str]) -> list[str]:
    kind = obj["kind"]
    if kind not in CERT_MANAGER_SPEC:
        return [f"{where}: cert-manager kind {kind} is not one these checks know"]
    spec = obj.get("spec") or {}
    errors = [
        f"{where}: unknown field spec.{key}" for key in sorted(set(spec) - CERT_MANAGER_SPEC[kind])
    ]
    if kind == "Certificate":
        if "secretName" not in spec or "issuerRef" not in spec:
            errors.append(f"{where}: a Certificate needs secretName and issuerRef")
        secrets.add(spec.get("secretName", ""))
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
        issued: set[str] = set()
        for o in objects:
            if o["apiVersion"].startswith("cert-manager.io/"):
                where = f"{directory.relative_to(ROOT)}: {o['kind']}/{o['metadata']['name']}"
                errors += cert_manager_errors(where, o, issued)
        workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
        if not workloads:
            errors.append(f"{directory}: no Deployment or StatefulSet")
        for o in workloads:
            where = f"{directory.relative_to(ROOT)}: {o['kind']}/{o['metadata']['name']}"
            spec = o["spec"]["template"]["spec"]
            errors += sidecar_errors(where, spec, accepted)
            # A Secret the pods mount that a Certificate here issues must be
            # the one it names.
            for volume in spec.get("volumes") or []:
                secret = (volume.get("secret") or {}).get("secretName")
                if secret and issued and secret not in issued:
                    errors.append(
                        f"{where}: volume {volume['name']} mounts Secret {secret}, "
                        "which no Certificate here issues"
                    )
        print(f"{directory.relative_to(ROOT)}: {len(objects)} objects rendered and checked")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
