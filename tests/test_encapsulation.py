"""Nothing outside a class touches its underscored members (read from the code with ``ast``).

An access ``x._name`` (``x`` not ``self`` or ``cls``) is allowed only in the module that
defines ``_name`` as a member of a class (a method, or ``self._name = ...``): a class
reaching into another instance of its own family. Objects talk to each other through
public, documented names; that is what lets one of them change without the others.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nbtasks"


def _private(name: str) -> bool:
    # dunders are Python's, a trailing underscore marks a protocol (IPython's _repr_*_)
    return name.startswith("_") and not name.endswith("_")


def _defined_members(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) \
                        and item.value.id in ("self", "cls"):
                    names.add(item.attr)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def reaches(source: str) -> list[str]:
    """``x._name`` accesses of a module's source that reach into another object."""
    tree = ast.parse(source)
    own = _defined_members(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr in own:
                continue
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_no_module_reaches_into_another_objects_underscored_members():
    wrong = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = reaches(path.read_text())
        if found:
            wrong[str(path.relative_to(PACKAGE.parent))] = found
    assert wrong == {}


def test_the_check_sees_a_reach():
    source = ("class A:\n    def _own(self):\n        return other._own()\n"
              "def f(run):\n    run._fail(1)\n    return run.result()\n")
    assert reaches(source) == ["line 5: ._fail"]
