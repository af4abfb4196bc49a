"""scripts/run writes every variable the programs read to var/supervisord.env, for a later bare supervisord."""

from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _settings_variables() -> set[str]:
    """Every environment variable name entrypoints/settings.py reads."""
    source = (ROOT / "entrypoints" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]*)"', source))


def _env_file_filter() -> str:
    """The sed expression scripts/run applies to ``export -p`` to write var/supervisord.env."""
    script = (ROOT / "scripts" / "run").read_text(encoding="utf-8")
    found = re.search(r"sed -n -E '([^']+)'", script)
    assert found is not None, "scripts/run no longer filters export -p with sed -n -E '...'"
    return found.group(1)


def test_the_env_file_keeps_every_variable_the_settings_read() -> None:
    """A variable the workers read but the env file drops would silently reset to its default under a bare
    supervisord (STALLED_INTERVAL_MS and SEND_SETTLE_SECONDS were once dropped)."""
    names = sorted(_settings_variables())
    assert "STALLED_INTERVAL_MS" in names  # the parse above still finds the settings' variables
    exported = "".join(f'declare -x {name}="value"\n' for name in names)
    kept = subprocess.run(
        ["sed", "-n", "-E", _env_file_filter()], input=exported, capture_output=True, text=True, check=True
    ).stdout
    assert sorted(line.split("=", 1)[0] for line in kept.splitlines()) == names
