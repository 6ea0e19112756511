"""Rendering the page from the Jinja2 templates in ``pipeline/report/templates``.

Autoescape is on for every template, so each string from the data is escaped where it lands
(text or attribute); the one exception is the JSON data block inside ``<script>``, written by
:func:`script_json` with ``<``, ``>`` and ``&`` as JSON unicode escapes, so a ``</script>`` in
the data can never close the element and the JSON still parses to the original strings.
Undefined names are errors (``StrictUndefined``), so a template that refers to something the
context lacks fails the build instead of rendering an empty hole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


def environment(templates: str | os.PathLike | None = None):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates or TEMPLATES)),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as JSON unicode escapes."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=True, allow_nan=False, indent=1)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(context: dict[str, Any], templates: str | os.PathLike | None = None) -> str:
    """``page.html.j2`` rendered with ``context``; ``templates`` replaces the template folder
    (tests render a deliberately broken copy)."""
    return environment(templates).get_template("page.html.j2").render(**context)
