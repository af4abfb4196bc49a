"""The TemplateRenderer port's contract, run against the real renderer and the in-memory fake alike."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.template_renderer import PlaceholderTemplateRenderer
from domain.errors import InvalidJob, InvalidValue
from domain.ports import TemplateRenderer
from tests.support.fakes.rendering import FakeTemplateRenderer


@pytest.fixture(params=[PlaceholderTemplateRenderer, FakeTemplateRenderer], ids=["real", "fake"])
def renderer(request: pytest.FixtureRequest) -> TemplateRenderer:
    renderer: TemplateRenderer = request.param()
    return renderer


def test_substitutes_placeholders_with_or_without_spaces(renderer: TemplateRenderer) -> None:
    """Both `{{ name }}` and `{{name}}` are replaced by the variable's value."""
    text = "Hi {{ first_name }}, your visit with {{clinic}} is at {{ time }}."
    variables = {"first_name": "Ana", "clinic": "Dr. Lee", "time": "3 PM"}
    assert renderer.render(text, variables, html=False) == "Hi Ana, your visit with Dr. Lee is at 3 PM."


def test_text_without_placeholders_is_unchanged(renderer: TemplateRenderer) -> None:
    """Plain text, single braces included, comes back exactly as given."""
    text = "p { color: red } and a lone } or {"
    assert renderer.render(text, {}, html=True) == text


def test_the_same_variable_may_appear_twice(renderer: TemplateRenderer) -> None:
    """Each occurrence of a placeholder is substituted."""
    assert renderer.render("{{ a }}-{{ a }}", {"a": "x"}, html=False) == "x-x"


def test_unused_variables_are_ignored(renderer: TemplateRenderer) -> None:
    """Extra personalization values that the template does not use are not an error."""
    assert renderer.render("Hello", {"first_name": "Ana", "tags": ["vip"]}, html=False) == "Hello"


def test_html_escapes_substituted_values_only(renderer: TemplateRenderer) -> None:
    """With html=True, values are escaped (quotes included) but the template's own markup is kept."""
    text = '<p title="{{ t }}">{{ name }}</p>'
    variables = {"t": "a\"b'c", "name": "<script>alert(1)</script> & co"}
    assert renderer.render(text, variables, html=True) == (
        '<p title="a&quot;b&#x27;c">&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>'
    )


def test_plain_text_does_not_escape(renderer: TemplateRenderer) -> None:
    """With html=False, values are inserted as they are (SMS bodies, subjects)."""
    assert renderer.render("{{ name }}", {"name": "Tom & <Jerry>"}, html=False) == "Tom & <Jerry>"


def test_substituted_values_are_not_rendered_again(renderer: TemplateRenderer) -> None:
    """A value that looks like a placeholder is inserted literally, never expanded."""
    assert renderer.render("{{ a }}", {"a": "{{ b }}", "b": "secret"}, html=False) == "{{ b }}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(42, "42"), (125.5, "125.5"), (True, "true"), (False, "false"), ("", "")],
)
def test_scalar_values_render_as_text(renderer: TemplateRenderer, value: object, shown: str) -> None:
    """Numbers render with str(), booleans as JS would print them, empty strings as nothing."""
    assert renderer.render("[{{ v }}]", {"v": value}, html=False) == f"[{shown}]"


@pytest.mark.parametrize("variables", [{}, {"first_name": None}], ids=["absent", "null"])
def test_missing_variable_names_it_without_its_value(renderer: TemplateRenderer, variables: dict[str, Any]) -> None:
    """An absent or null variable raises InvalidJob naming personalization.<name>."""
    with pytest.raises(InvalidJob) as raised:
        renderer.render("Hi {{ first_name }}", {**variables, "other": "Ana-secret"}, html=False)
    assert raised.value.field == "personalization.first_name"
    assert raised.value.problem == "is missing"
    assert "Ana-secret" not in str(raised.value)


@pytest.mark.parametrize("value", [["a"], {"k": "v"}], ids=["list", "object"])
def test_structured_values_are_refused(renderer: TemplateRenderer, value: object) -> None:
    """A list or object never renders as a Python repr: InvalidJob names the variable, not the value."""
    with pytest.raises(InvalidJob) as raised:
        renderer.render("{{ v }}", {"v": value}, html=False)
    assert raised.value.field == "personalization.v"
    assert "k" not in raised.value.problem


@pytest.mark.parametrize(
    "text",
    [
        "{{ a.b }}",  # attribute access
        "{{ a['b'] }}",  # item access
        "{{ a() }}",  # calls
        "{{ a | upper }}",  # filters
        "{{}}",  # empty
        "{{ }}",  # blank
        "{{ 1a }}",  # not an identifier
        "{{ a",  # unclosed
        "a }}",  # unopened
        "{{ a }} }}",  # stray closer
        "{{ {{ a }}",  # stray opener
        "{{ a b }}",  # two names
        "{{ é }}",  # non-ASCII identifier
    ],
)
def test_malformed_templates_raise_invalid_value(renderer: TemplateRenderer, text: str) -> None:
    """Anything but `{{ identifier }}` between double braces is a malformed template."""
    with pytest.raises(InvalidValue):
        renderer.render(text, {"a": "x", "b": "y", "x": "z"}, html=False)


def test_malformed_template_wins_over_missing_variable(renderer: TemplateRenderer) -> None:
    """A broken template is reported as such even when a variable is also missing."""
    with pytest.raises(InvalidValue):
        renderer.render("{{ missing }} {{ a.b }}", {}, html=False)


def test_block_syntax_is_plain_text(renderer: TemplateRenderer) -> None:
    """Jinja-style `{% ... %}` blocks are not executed: they stay in the text as they are."""
    text = "{% for x in a %}{{ x }}{% endfor %}"
    assert renderer.render(text, {"x": "z"}, html=False) == "{% for x in a %}z{% endfor %}"


def test_placeholder_may_span_whitespace_and_newlines(renderer: TemplateRenderer) -> None:
    """Whitespace inside the braces, newlines included, is allowed around the name."""
    assert renderer.render("{{\n  name\t}}", {"name": "Ana"}, html=False) == "Ana"
