"""The layer rules of DESIGN.md, read from the code's own imports (static and importlib's).

    server → ui → store → cluster → core      (each may import only what is to its right)

``core`` imports neither ipyparallel nor Jupyter; only ``nbtasks/__init__.py`` ties the
layers together.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nbtasks"
ORDER = ["core", "cluster", "store", "ui", "server"]  # lowest first
JUPYTER = ("ipyparallel", "ipywidgets", "ipykernel", "IPython", "jupyter_server", "jupyter_client",
           "tornado", "zmq", "traitlets")
# third-party packages each layer may use; everything else is stdlib or a declared dependency
FORBIDDEN = {
    "core": JUPYTER,
    "cluster": ("ipywidgets", "jupyter_server", "tornado"),
    "store": JUPYTER,
    "ui": ("jupyter_server", "tornado"),
    "server": ("ipyparallel", "ipywidgets", "ipykernel", "IPython"),
}


def _package_of(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).parts[:-1])


def _imports(path: pathlib.Path, package: str | None = None) -> list[tuple[int, str]]:
    """Absolute names of every module ``path`` (of ``package``) imports, with their lines."""
    tree = ast.parse(path.read_text(), str(path))
    package = package or _package_of(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if node.module is None or node.level:  # "from . import x": x may be a module
                found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def _layer_modules() -> list[tuple[str, pathlib.Path]]:
    return [(layer, path) for layer in ORDER for path in sorted((PACKAGE / layer).rglob("*.py"))]


@pytest.mark.parametrize("layer,path", _layer_modules(), ids=lambda v: getattr(v, "name", v))
def test_each_module_imports_only_layers_below_it(layer, path):
    allowed = set(ORDER[: ORDER.index(layer) + 1])
    wrong = []
    for line, name in _imports(path):
        parts = name.split(".")
        if parts[0] == "nbtasks" and len(parts) > 1 and parts[1] in ORDER and parts[1] not in allowed:
            wrong.append(f"line {line}: {name}")
        if parts[0] in FORBIDDEN[layer]:
            wrong.append(f"line {line}: {name} (not for {layer})")
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} breaks the layer rules: {wrong}"


def test_the_check_sees_a_violation(tmp_path):
    """The rule above reads relative, absolute and importlib imports alike."""
    fake = tmp_path / "probe.py"
    fake.write_text("from ..cluster import dispatcher\nimport ipyparallel\n"
                    "import importlib\nimportlib.import_module('nbtasks.ui.text')\n")
    names = [name for _, name in _imports(fake, "nbtasks.core")]
    assert "nbtasks.cluster" in names and "ipyparallel" in names and "nbtasks.ui.text" in names


def test_only_the_package_root_reexports_public_names():
    """Users import ``nbtasks``; the layers' own __init__ files stay free of cross-layer re-exports."""
    for layer in ORDER:
        for _, name in _imports(PACKAGE / layer / "__init__.py"):
            parts = name.split(".")
            assert not (parts[0] == "nbtasks" and len(parts) > 1 and parts[1] in ORDER and parts[1] != layer), name
