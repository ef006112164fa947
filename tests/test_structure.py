"""The package's shape: one job per module, imports that flow one way, a lazy public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hubspot_connect

PACKAGE = Path(hubspot_connect.__file__).resolve().parent
ROOT = PACKAGE.parent
MODULES = sorted(
    path for path in PACKAGE.rglob("*.py") if "migrations" not in path.relative_to(PACKAGE).parts
)

#: Lower layers never import higher ones (views, admin, commands -> services -> models).
LAYERS = {
    "models": 1,
    "fields": 0,
    "conf": 0,
    "exceptions": 0,
    "sensitive": 0,
    "signals": 0,
    "compat": 0,
    "transport": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_level_imports(path: Path) -> set[str]:
    """Package modules imported at import time (not under TYPE_CHECKING, not in functions)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("hubspot_connect"):
                names = [f"{target}.{alias.name}" for alias in node.names]
                found.update(name if name in NAMES else target for name in names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hubspot_connect"))
    return found - {module_name(path)}


NAMES = {module_name(path) for path in MODULES}


def test_no_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_imports_have_no_circles() -> None:
    graph = {module_name(path): top_level_imports(path) & NAMES for path in MODULES}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, "import circle: " + " -> ".join([*visiting, name])
        if name in done:
            return
        visiting.append(name)
        for target in graph.get(name, ()):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


@pytest.mark.parametrize("lower", sorted(LAYERS))
def test_lower_layers_import_no_services(lower: str) -> None:
    path = PACKAGE / f"{lower}.py"
    imported = {name.split(".")[1] for name in top_level_imports(path) if name.count(".") >= 1}
    allowed = {name for name, layer in LAYERS.items() if layer <= LAYERS[lower]}
    assert imported <= allowed | {"__version__"}, f"{lower} imports {imported - allowed}"
    # ...and hides none inside functions either.
    hidden = [
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level and node.col_offset > 0
    ]
    assert not [ast.unparse(node) for node in hidden if "TYPE_CHECKING" not in ast.unparse(node)]


def test_importing_the_package_needs_no_app_registry() -> None:
    code = (
        "import hubspot_connect, sys; "
        "loaded = [m for m in sys.modules if m.startswith('hubspot_connect.')]; "
        "assert not loaded, loaded; "
        "print(hubspot_connect.__version__, len(hubspot_connect.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == hubspot_connect.__version__


def test_every_public_name_resolves_lazily() -> None:
    for name in hubspot_connect.__all__:
        value = getattr(hubspot_connect, name)
        assert value is not None
        if name != "__version__":
            assert getattr(value, "__name__", name) == name
    assert set(hubspot_connect.__all__) <= set(dir(hubspot_connect))
    with pytest.raises(AttributeError):
        _ = hubspot_connect.no_such_name  # type: ignore[attr-defined]


def test_the_documented_import_paths_work() -> None:
    from hubspot_connect.exceptions import HubSpotConnectError
    from hubspot_connect.models import HubSpotConnection
    from hubspot_connect.signals import hubspot_connected
    from hubspot_connect.tokens import aget_access_token, api_session, get_access_token

    assert get_access_token is hubspot_connect.get_access_token
    assert aget_access_token is hubspot_connect.aget_access_token
    assert api_session is hubspot_connect.api_session
    assert HubSpotConnection is hubspot_connect.HubSpotConnection
    assert HubSpotConnectError is hubspot_connect.HubSpotConnectError
    assert hubspot_connected is not None


def test_the_pytest_plugin_loads_without_platform_modules() -> None:
    """pytest loads the plugin in every project that installs the package, Windows too."""
    code = (
        "import sys; sys.modules['fcntl'] = None; sys.modules['msvcrt'] = None; "
        "import hubspot_connect.testing.pytest_plugin as plugin; print(plugin.fake_hubspot)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
