"""Guards of the house layout: the domain stays pure and our packages are the ones imported."""

from __future__ import annotations

import ast
import importlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOWED_IN_DOMAIN = set(sys.stdlib_module_names) | {"attrs", "attr", "domain", "__future__"}
FORBIDDEN_IN_DOMAIN = {"logging"}  # the domain returns outcomes; the shell logs them


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "domain"))  # a relative import stays inside the package
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def test_domain_imports_only_stdlib_attrs_and_itself() -> None:
    """Every module under domain/ imports the standard library, attrs or domain, and never logging."""
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "domain").rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] not in ALLOWED_IN_DOMAIN or name.split(".")[0] in FORBIDDEN_IN_DOMAIN
    ]
    assert bad == []


def test_domain_does_not_read_the_clock_or_environment() -> None:
    """No module under domain/ calls datetime.now/utcnow/today, time.time or os.environ: time is injected."""
    forbidden = re.compile(
        r"\b(?:datetime|date)\.(?:now|utcnow|today)\(|\btime\.(?:time|monotonic)\(|os\.environ|getenv\("
    )
    bad = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in sorted((ROOT / "domain").rglob("*.py"))
        for match in forbidden.finditer(path.read_text())
    ]
    assert bad == []


def test_the_guard_catches_a_forbidden_import(tmp_path: pathlib.Path) -> None:
    """The import walker reports a third-party import, so the guard above can fail."""
    module = tmp_path / "m.py"
    module.write_text("import redis\nfrom domain.values import Money\n")
    names = [name for _, name in _imports(module)]
    assert [n for n in names if n.split(".")[0] not in ALLOWED_IN_DOMAIN] == ["redis"]


def test_our_packages_resolve_to_this_repository() -> None:
    """domain, adapters and entrypoints are also PyPI names: the ones imported must be this checkout's."""
    for name in ("domain", "adapters", "entrypoints"):
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert pathlib.Path(module.__file__).resolve().parent == ROOT / name
