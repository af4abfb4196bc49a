"""Message templates with ``{{ name }}`` placeholders and nothing else: no attribute access, filters, loops or code.

Hand-written on purpose: Jinja2 and its sandbox still evaluate expressions and reach attributes, which an org's
template text must never do. The grammar is one regular expression; any other ``{{`` or ``}}`` is an error, so a
typo is caught when the template is rendered instead of being sent to a contact. Single braces are plain text (CSS
in HTML emails).

Values render as text: strings as they are, numbers with ``str()``, booleans as ``true``/``false`` (what the Node
CRM would print for a JS boolean). ``None`` counts as missing. Lists and objects are refused: a Python ``repr``
never belongs in a message.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidJob, InvalidValue

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _as_text(name: str, value: object) -> str:
    if value is None:
        raise InvalidJob(f"personalization.{name}", "is missing")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidJob(f"personalization.{name}", "is not text or a number")


class PlaceholderTemplateRenderer:
    """The TemplateRenderer port: substitutes ``{{ name }}`` from the variables, HTML-escaping values on demand."""

    def render(self, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
        # split() with one capture group alternates: literal, name, literal, ..., literal
        parts = _PLACEHOLDER.split(text)
        literals, names = parts[0::2], parts[1::2]
        if any("{{" in literal or "}}" in literal for literal in literals):
            raise InvalidValue("template", "has a malformed placeholder")
        values = [_as_text(name, variables.get(name)) for name in names]
        if html:
            values = [html_lib.escape(value) for value in values]
        rendered = [literals[0]]
        for value, literal in zip(values, literals[1:], strict=True):
            rendered += (value, literal)
        return "".join(rendered)
