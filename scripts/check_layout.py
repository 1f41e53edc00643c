"""Checks the import graph of the Rust crates against docs/ARCHITECTURE.md.

Two rules, run by `make lint`:

1. No circles between files: when file A imports an item of file B, B must
   not import (directly or through other files) anything of A. A `use` of a
   re-exported name counts against the file that defines it, so a parent
   module's `pub use child::Item` does not hide a child importing its parent.
   A file may use its own folder's `mod.rs` (one module split into files).
2. Layers: a file may not import from the layers above it (table `LAYERS`),
   and a crate may not depend on the crates above it (table `CRATE_DEPS`).

Only `use` paths and inline paths count (`crate::`, `super::`, `self::`);
`mod` declarations and test modules (`#[cfg(test)] mod ... {`, files named
`tests.rs` or `*_tests.rs`) do not. Exits 1 and prints every violation.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent

# Crate source folders to check.
CRATES = ["engine/src", "local/src", "sidecar/src"]

# (crate folder, file prefix, forbidden prefixes, exceptions): files whose
# path (relative to the crate folder) starts with the prefix may not import
# files starting with any forbidden prefix, unless listed as exceptions.
LAYERS: list[tuple[str, str, list[str], list[str]]] = [
    # The replicated state is the bottom of the engine: pure apply.
    (
        "engine/src",
        "workflows/state_machine/",
        [
            "consensus/",
            "api/",
            "node.rs",
            "workflows/failover.rs",
            "workflows/timer_service.rs",
            "workflows/operations.rs",
            "workflows/worker_session/",
        ],
        [],
    ),
    # Consensus knows the state machine it applies to and the leader's
    # workflow services it runs, never the node facade or the APIs; the two
    # files of the node's consensus operations (`impl Node`) are the
    # exceptions that sit above `node.rs`.
    (
        "engine/src",
        "consensus/",
        ["api/", "node.rs", "workflows/operations.rs", "workflows/worker_session/"],
        ["consensus/membership.rs", "consensus/read_index.rs"],
    ),
    # Workflow code below the APIs.
    ("engine/src", "workflows/", ["api/"], []),
    ("engine/src", "node.rs", ["api/", "workflows/operations.rs", "workflows/worker_session/"], []),
    ("engine/src", "error.rs", ["api/", "consensus/", "workflows/", "node.rs", "config.rs"], []),
    ("engine/src", "config.rs", ["api/", "workflows/", "node.rs"], []),
]

# Crates that may not depend on others (normal or build dependencies; tests
# may): the SDK compiles no engine, the engine does not know its client,
# the protocol knows neither.
CRATE_DEPS: dict[str, list[str]] = {
    "proto": ["raftoral", "raftoral-client", "raftoral-embedded"],
    "sdk-rust": ["raftoral", "raftoral-embedded"],
    "engine": ["raftoral-client", "raftoral-embedded"],
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+" + IDENT + r"\s*\{")
INLINE_PATH = re.compile(r"\b(?:crate|super|self)(?:::" + IDENT + r")+")
USE_STATEMENT = re.compile(r"\b(pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);")
COMMENT = re.compile(r"//[^\n]*")


class Crate:
    """The module tree of one crate: module path <-> file."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.files: dict[tuple[str, ...], Path] = {}
        for path in sorted(src.rglob("*.rs")):
            rel = path.relative_to(src)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            self.files[tuple(parts)] = path
        self.texts = {m: code_of(p.read_text()) for m, p in self.files.items()}
        self.reexports = {m: reexports(self, m) for m in self.files}

    def rel(self, module: tuple[str, ...]) -> str:
        return str(self.files[module].relative_to(self.src))

    def absolute(self, module: tuple[str, ...], path: list[str]) -> list[str] | None:
        """The path from the crate root, or None for an external crate."""
        head, rest = path[0], path[1:]
        if head == "crate":
            return rest
        base = list(module)
        if head == "self":
            return base + rest
        if head == "super":
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
            return base[:-1] + rest
        return None

    def resolve(self, segments: list[str], seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """The file that defines what an absolute path names."""
        module: tuple[str, ...] = ()
        for i, seg in enumerate(segments):
            child = (*module, seg)
            if child in self.files:
                module = child
                continue
            target = self.reexports.get(module, {}).get(seg)
            key = "::".join((*module, seg))
            if target is not None and key not in seen:
                return self.resolve(target + segments[i + 1 :], seen | {key})
            return module
        return module


def code_of(text: str) -> str:
    """The text without comments and test modules."""
    text = COMMENT.sub("", text)
    found = TEST_MODULE.search(text)
    if found:
        text = text[: found.start()]
    return text


def expand(tree: str) -> list[list[str]]:
    """The paths of a use tree: `a::{b, c::{d, e}}` -> a::b, a::c::d, a::c::e."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas" + IDENT, "", tree)

    def parse(s: str, i: int, prefix: list[str]) -> tuple[list[list[str]], int]:
        out: list[list[str]] = []
        current = list(prefix)
        token = ""
        while i < len(s):
            ch = s[i]
            if ch == "{":
                inner, i = parse(s, i + 1, current)
                out.extend(inner)
                current = list(prefix)
                token = ""
                continue
            if ch == "}":
                if token:
                    out.append([*current, token])
                return out, i + 1
            if ch == ",":
                if token:
                    out.append([*current, token])
                current, token = list(prefix), ""
                i += 1
                continue
            if s.startswith("::", i):
                if token:
                    current = [*current, token]
                token = ""
                i += 2
                continue
            token += ch
            i += 1
        if token:
            out.append([*current, token])
        return out, i

    paths, _ = parse(tree, 0, [])
    return [[p for p in path if p and p != "*"] for path in paths if path]


def local_paths(crate: Crate, module: tuple[str, ...], tree: str) -> list[list[str]]:
    """The paths of a use tree, `child::Item` written as `self::child::Item`."""
    out: list[list[str]] = []
    for path in expand(tree):
        if path and path[0] not in ("crate", "self", "super") and (*module, path[0]) in crate.files:
            path = ["self", *path]
        out.append(path)
    return out


def reexports(crate: Crate, module: tuple[str, ...]) -> dict[str, list[str]]:
    """`pub use` names of a module file -> the absolute path they stand for."""
    names: dict[str, list[str]] = {}
    for m in USE_STATEMENT.finditer(crate.texts[module]):
        if not m.group(1):
            continue
        for path in local_paths(crate, module, m.group(2)):
            absolute = crate.absolute(module, path)
            if absolute:
                names[absolute[-1]] = absolute
    # Renames (`pub use a::B as C`) are rare here; they resolve to the module.
    return names


def imports(crate: Crate, module: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Files whose items this module's file uses."""
    text = crate.texts[module]
    paths: list[list[str]] = []
    for m in USE_STATEMENT.finditer(text):
        paths.extend(local_paths(crate, module, m.group(2)))
    stripped = USE_STATEMENT.sub("", text)
    paths.extend(p.group(0).split("::") for p in INLINE_PATH.finditer(stripped))
    out: set[tuple[str, ...]] = set()
    for path in paths:
        absolute = crate.absolute(module, path)
        if absolute is None:
            continue
        target = crate.resolve(absolute)
        if target != module:
            out.add(target)
    return out


def is_test_file(rel: str) -> bool:
    name = Path(rel).name
    return name == "tests.rs" or name.endswith("_tests.rs")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def crate_problems() -> list[str]:
    problems = []
    for folder, forbidden in CRATE_DEPS.items():
        manifest = tomllib.loads((ROOT / folder / "Cargo.toml").read_text())
        for table in ("dependencies", "build-dependencies"):
            for dep in sorted(manifest.get(table, {})):
                if dep in forbidden:
                    problems.append(
                        f"{folder}/Cargo.toml: {table} has {dep}, which {folder} may not use"
                    )
    return problems


def main() -> int:
    problems = crate_problems()
    for folder in CRATES:
        src = ROOT / folder
        if not src.is_dir():
            continue
        crate = Crate(src)
        graph: dict[str, set[str]] = {}
        for module in crate.files:
            rel = crate.rel(module)
            if is_test_file(rel) or rel in ("lib.rs", "main.rs"):
                continue
            # A file may use its own folder's mod.rs: a module split into
            # files is one unit, and the parent re-exports the children.
            parent = str(Path(rel).parent / "mod.rs")
            graph[rel] = {crate.rel(t) for t in imports(crate, module)} - {
                "lib.rs",
                "main.rs",
                parent,
            }
        for component in cycles(graph):
            edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
            problems.append(f"{folder}: files import each other: " + "; ".join(edges))
        for crate_folder, prefix, forbidden, exceptions in LAYERS:
            if crate_folder != folder:
                continue
            for rel, targets in sorted(graph.items()):
                if not rel.startswith(prefix) or rel in exceptions:
                    continue
                for target in sorted(targets):
                    if any(target.startswith(f) for f in forbidden):
                        problems.append(
                            f"{folder}/{rel} imports {target}: {prefix} may not import {forbidden}"
                        )
    for problem in problems:
        print(problem)
    if problems:
        print(f"layout: {len(problems)} problem(s); see docs/ARCHITECTURE.md")
        return 1
    print("layout: no circles between files, layers respected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
