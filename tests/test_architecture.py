"""The layout holds: no import cycles in `core` (lazy imports included), core never names an app page,
no test imports another test, and no module grows past 400 lines without saying why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "core"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the `core` modules it imports anywhere in its body (functions too)."""
    modules = {module_name(path): path for path in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from core.x import y`: y may be a module or a name in x
                    candidate = f"{node.module}.{alias.name}"
                    targets.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_core_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_never_names_an_app_page():
    offenders = [
        str(path.relative_to(REPO))
        for path in CORE.rglob("*.py")
        if re.search(r"pages/\w+\.py|st\.page_link|import streamlit", path.read_text())
    ]
    assert offenders == []


def test_no_test_imports_another_test():
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in (REPO / "tests").glob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) tests\.test_", line)
    ]
    assert offenders == []


def test_long_modules_say_why():
    """A module over 400 lines keeps the reason in its docstring (a line that starts "Length:")."""
    offenders = []
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Length:" not in (ast.get_docstring(ast.parse(text)) or ""):
            offenders.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert offenders == []
