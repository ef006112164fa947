"""Sphinx configuration for django-hubspot-connect's documentation.

Build it with ``make docs``: warnings are errors and every reference must resolve.
Autodoc imports the package, so Django is set up first, with the test suite's settings.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import django
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django.db import models  # noqa: E402

import hubspot_connect  # noqa: E402  (needs Django set up)

project = "django-hubspot-connect"
author = "django-hubspot-connect contributors"
copyright = "django-hubspot-connect contributors"
release = hubspot_connect.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"django-hubspot-connect {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # HubSpotSession.request is not requests' to explain
# Values of module data are left out: a Signal's or an object's repr says nothing.
autodoc_default_options = {"members": True, "show-inheritance": True, "no-value": True}

# Every reference must resolve (``make docs`` runs sphinx-build -n -W). The build runs
# offline, without intersphinx, so the standard library's, Django's, requests' and other
# dependencies' types in signatures cannot be linked: those, and only those, are ignored.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:(class|obj|exc|data)", r"(_thread|datetime|collections\.abc|typing|threading)\..*"),
    (r"py:(class|obj|exc|data)", r"(queue|http\.server|socketserver|os|pathlib)\..*"),
    (r"py:(class|obj|exc|data)", r"(django|requests|cryptography|asgiref)\..*"),
    (r"py:(class|obj|exc|data)", r"(urllib3|httpx|hubspot)\..*"),
]


class PublicAPI(SphinxDirective):
    """A list of ``hubspot_connect.__all__``, each name linked to where it is documented.

    Built from the package at build time, so it cannot go stale; a public name that the
    API reference does not document fails the build.
    """

    def run(self) -> list[nodes.Node]:
        exports: dict[str, str] = hubspot_connect._EXPORTS
        lines = []
        for name in sorted(hubspot_connect.__all__, key=str.lower):
            if name == "__version__":
                lines.append("* :py:data:`hubspot_connect.__version__`")
                continue
            module = f"hubspot_connect.{exports[name]}"
            lines.append(f"* :py:obj:`~{module}.{name}` (from :py:mod:`{module}`)")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="hubspot_connect.__all__"), 0, container)
        return container.children


def _ours(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "")).startswith("hubspot_connect")


def skip_member(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> Any:
    """Document the app's public classes, functions and methods even without a docstring
    (``objects.active()``, ``FakeHubSpot.approve()``); leave out what Django generates."""
    if what == "class" and name in ("DoesNotExist", "MultipleObjectsReturned"):
        return True
    if skip and not name.startswith("_"):
        target = obj.fget if isinstance(obj, property) else obj
        if (inspect.isfunction(target) or inspect.isclass(target)) and _ours(target):
            return False
    return None


def describe_models(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]):
    """List a model's fields and a choices class's values under its docstring."""
    if what != "class" or not _ours(obj) or not inspect.isclass(obj):
        return
    if issubclass(obj, models.Choices):
        values = ", ".join(f"``{member.value}``" for member in obj)
        lines += ["", f"Values: {values}."]
    elif issubclass(obj, models.Model) and not obj._meta.abstract:
        lines += ["", "Fields:", ""]
        for field in obj._meta.get_fields():
            if not field.concrete or field.auto_created:
                continue
            kind = type(field).__name__
            if field.is_relation and field.related_model is not None:
                kind += f" to {field.related_model._meta.label}"
            lines.append(f"* ``{field.name}``: {field.verbose_name} ({kind})")
        lines.append("")


def unquote_annotations(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str
) -> tuple[str | None, str] | None:
    """Dataclasses of modules with ``from __future__ import annotations`` keep their
    ``__init__`` annotations as strings: show them as types. A field with a default
    factory shows ``...`` (Sphinx cannot parse ``<factory>``); private ones are left out."""
    if signature is None:
        return None
    signature = re.sub(r": '([^']+)'", r": \1", signature)
    signature = re.sub(r", _\w+: [^,()]+? ?= ?<factory>", "", signature)
    signature = re.sub(r" ?= ?<factory>", " = ...", signature)
    return signature, ret


def resolve_short_names(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """Resolve ``:class:`InvalidGrant``` in a docstring to the one object of that name the
    API reference documents (docstrings name what their module imports, unqualified)."""
    target = node["reftarget"]
    if node.get("refdomain") != "py" or "." in target:
        return None
    found = [
        (full, entry)
        for full, entry in env.get_domain("py").objects.items()  # type: ignore[attr-defined]
        if full.startswith("hubspot_connect.")
        and full.endswith("." + target)
        and not entry.aliased
    ]
    if len(found) == 1:
        full, entry = found[0]
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, full
        )
    # A module constant without a doc comment (``:data:`MAX_TRANSIENT_RETRIES```) has
    # nothing to link to: show it as code, but only if the module really has it.
    module = sys.modules.get(str(node.get("py:module") or ""))
    if node.get("reftype") == "data" and module is not None and hasattr(module, target):
        return contnode
    return None


def setup(app: Sphinx) -> None:
    app.add_crossref_type("setting", "setting", indextemplate="pair: %s; setting")
    app.add_directive("hubspot-public-api", PublicAPI)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-docstring", describe_models)
    app.connect("autodoc-process-signature", unquote_annotations)
    app.connect("missing-reference", resolve_short_names)
