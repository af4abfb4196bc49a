"""The fake of the TemplateRenderer port.

Passes tests/contract/test_template_renderer.py with the real placeholder renderer."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidJob, InvalidValue

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class FakeTemplateRenderer:
    """The placeholder rules of the port in a few lines; the real renderer passes the same contract."""

    def render(self, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
        if text.count("{{") != text.count("}}") or len(_PLACEHOLDER.findall(text)) != text.count("{{"):
            raise InvalidValue("template", "has a malformed placeholder")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables or variables[name] is None:
                raise InvalidJob(f"personalization.{name}", "is missing")
            if not isinstance(variables[name], str | int | float):
                raise InvalidJob(f"personalization.{name}", "is not text or a number")
            value = str(variables[name]).lower() if isinstance(variables[name], bool) else str(variables[name])
            return html_lib.escape(value) if html else value

        return _PLACEHOLDER.sub(substitute, text)
