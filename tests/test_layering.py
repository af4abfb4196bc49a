"""Guards of the house layout: the domain stays pure, our packages are the ones imported, and no test suite
imports another (what suites share lives in ``tests/support``)."""

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


def _suite(module: str) -> str:
    """The suite of a ``tests.`` module: ``unit``, ``contract``, ``e2e``, ``support``, ``integration.<area>``."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2]) if parts[:1] == ["integration"] else ".".join(parts[:1])


def _crossings(paths: list[pathlib.Path], root: pathlib.Path = ROOT) -> list[str]:
    """Imports of a ``tests.`` module of another suite than the importer's, other than ``tests.support``.

    A file under bench/ counts as a suite of its own; ``tests.support`` imports only itself."""
    bad = []
    for path in paths:
        relative = path.relative_to(root)
        own = _suite(".".join(relative.with_suffix("").parts)) if relative.parts[0] == "tests" else "bench"
        allowed = {"support"} if own == "support" else {own, "support"}
        bad += [
            f"{relative}:{line} imports {name}"
            for line, name in _imports(path)
            if name.startswith("tests.") and _suite(name) not in allowed
        ]
    return bad


def _python_files(folder: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "node_modules" not in p.parts)


def test_no_test_suite_imports_another() -> None:
    """A suite (unit, contract, each integration area, e2e) and bench/ import only themselves and tests.support."""
    assert _crossings(_python_files("tests") + _python_files("bench")) == []


def test_the_suite_guard_catches_a_crossing(tmp_path: pathlib.Path) -> None:
    """An integration area importing another area's helper is reported; its own helpers and tests.support are not."""
    area = tmp_path / "tests" / "integration" / "system"
    area.mkdir(parents=True)
    module = area / "test_m.py"
    module.write_text(
        "from tests.integration.bullmq.helpers import node\n"
        "from tests.integration.system.helpers import org\n"
        "from tests.support.queues import add\n"
    )
    assert _crossings([module], root=tmp_path) == [
        "tests/integration/system/test_m.py:1 imports tests.integration.bullmq.helpers"
    ]
