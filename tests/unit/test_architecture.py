"""The layers as docs/architecture.md draws them: checked on the imports themselves, not on good intentions."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "privsynth"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path], *, lazy: bool) -> set[str]:
    """privsynth modules ``path`` imports (module level only, or anywhere with ``lazy``), TYPE_CHECKING aside."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("privsynth"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("privsynth"))
            nested = lazy or isinstance(node, ast.If | ast.Try | ast.With)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if nested and isinstance(children, list):
                    visit(children)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_package_has_no_import_cycle_even_through_lazy_imports() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules, lazy=True) - {m} for m, p in modules.items()}
    assert _cycles(graph) == []


def test_generators_and_the_audit_never_import_each_other() -> None:
    # The auditor grades any corpus (ours or another tool's); generators never depend on audit code. PII
    # detection, placeholders and surrogates live below both, in privsynth.pii.
    modules = _modules()
    for name, path in modules.items():
        imported = _imports(path, modules, lazy=True)
        if name.startswith("privsynth.audit"):
            assert not {m for m in imported if m.startswith("privsynth.generators")}, name
        if name.startswith("privsynth.generators"):
            assert not {m for m in imported if m.startswith("privsynth.audit")}, name
        if name.startswith("privsynth.pii"):
            assert not {m for m in imported if m.startswith(("privsynth.audit", "privsynth.generators"))}, name


def test_audit_release_and_gate_load_without_torch_or_the_synthesizer() -> None:
    modules = sorted(m for m in _modules() if m.startswith(("privsynth.audit", "privsynth.release", "privsynth.gate")))
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k == 'torch' or k.startswith(("
        "'privsynth.synthesizer', 'privsynth.generators', 'privsynth.sampling')))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_command_line_starts_without_torch_presidio_or_the_generators() -> None:
    """`privsynth --help`, validate, audit and release need none of them (measured: 3 of the 6 seconds and 640 of
    the 900 MB that `privsynth --help` took)."""
    code = (
        "import json, sys\n"
        "import privsynth.cli.app\n"
        "print(json.dumps(sorted(k for k in sys.modules if k in ('torch', 'presidio_analyzer', 'transformers') or "
        "k.startswith(('privsynth.synthesizer', 'privsynth.generators', 'privsynth.sampling')))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
