"""The layout's rules, checked on the import graph: no import cycle anywhere in the three packages.

grimp reads every import statement, lazy ones inside functions included (a cycle hidden in a function
still ties two modules together); imports under ``TYPE_CHECKING`` are left out because they never run.
"""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGES = ("classify_client", "classify_server", "classify_train")


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that import each other, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(groups, key=len, reverse=True)


def test_strongly_connected_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_any_package() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = set(graph.modules)
    assert len(modules) > 50, "the graph should cover all three packages"
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    assert strongly_connected(edges) == []


MAX_MODULE_LINES = 400
REPO_ROOT = Path(__file__).resolve().parent.parent
# Generated code, installed environments and build output are not the repository's modules.
NOT_OURS = {".venv", ".git", "build", "node_modules"}
GENERATED = "wire/proto/"


def test_no_module_exceeds_the_size_rule() -> None:
    modules = [
        path
        for path in REPO_ROOT.rglob("*.py")
        if not NOT_OURS & set(path.relative_to(REPO_ROOT).parts)
        and GENERATED not in path.relative_to(REPO_ROOT).as_posix()
    ]
    assert len(modules) > 100, "the walk found too few modules to be the repository"
    too_long = {
        path.relative_to(REPO_ROOT).as_posix(): lines
        for path in modules
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {too_long}"
