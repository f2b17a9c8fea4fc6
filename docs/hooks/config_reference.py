"""MkDocs hook: the configuration reference, generated from config/config.schema.yaml.

docs/configuration.md holds a short introduction and the line ``<!-- config-reference -->``;
at build time this hook replaces that line with one section per object of the schema and a
table of its keys (path, type, default, limits, description).

Why a hook rather than the mkdocs-gen-files plugin: it needs no plugin beyond MkDocs itself,
the page stays an ordinary file in docs/ (so the nav and links are checked like any other
page), and the generator is a plain module that tests/docs/test_docs.py imports to check
that every key has a description. The build fails (PluginError) when the marker is missing,
when a $ref cannot be resolved, or when any key of the schema has no description.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MARKER = "<!-- config-reference -->"
SCHEMA = Path("config") / "config.schema.yaml"
PAGE = "configuration.md"


@dataclass
class Entry:
    """One key of the configuration, with its schema (``$ref`` already resolved)."""

    path: str
    schema: dict[str, Any]
    required: bool = False
    children: list[Entry] = field(default_factory=list)

    @property
    def description(self) -> str:
        return " ".join(str(self.schema.get("description") or "").split())

    @property
    def is_section(self) -> bool:
        return bool(self.children)


def load_schema(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def resolve(schema: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``schema`` with a local ``$ref`` (``#/$defs/...``) replaced by its target.

    Keywords next to the ``$ref`` (a description, a default) win over the target's.
    """
    if not isinstance(schema, dict) or "$ref" not in schema:
        return schema
    ref = schema["$ref"]
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise ValueError(f"only local references are supported, got $ref {ref!r}")
    if ref in seen:
        raise ValueError(f"recursive $ref {ref!r} cannot be listed key by key")
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise ValueError(f"$ref {ref!r} does not resolve in the schema")
        target = target[part]
    merged = dict(resolve(target, root, (*seen, ref)))
    merged.update({k: v for k, v in schema.items() if k != "$ref"})
    return merged


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema itself and the object-shaped branches of its oneOf/anyOf/allOf."""
    out = [schema]
    for key in ("allOf", "anyOf", "oneOf"):
        out += [b for b in schema.get(key, []) if isinstance(b, dict)]
    return out


def _children(
    schema: dict[str, Any], path: str, root: dict[str, Any], seen: tuple[str, ...]
) -> Iterator[Entry]:
    prefix = f"{path}." if path else ""
    for branch in _branches(schema):
        branch = resolve(branch, root, seen)
        required = set(branch.get("required", []))
        for name, sub in (branch.get("properties") or {}).items():
            yield from walk(sub, root, f"{prefix}{name}", name in required, seen)
        for pattern, sub in (branch.get("patternProperties") or {}).items():
            yield from walk(sub, root, f"{prefix}<key matching {pattern}>", False, seen)
        extra = branch.get("additionalProperties")
        if isinstance(extra, dict):
            yield from walk(extra, root, f"{prefix}<name>", False, seen)
        items = branch.get("items")
        if isinstance(items, dict) and _has_keys(resolve(items, root, seen)):
            yield from walk(items, root, f"{path}[]", False, seen)


def _has_keys(schema: dict[str, Any]) -> bool:
    return any(
        b.get("properties")
        or b.get("patternProperties")
        or isinstance(b.get("additionalProperties"), dict)
        for b in _branches(schema)
    )


def walk(
    schema: Any,
    root: dict[str, Any],
    path: str = "",
    required: bool = False,
    seen: tuple[str, ...] = (),
) -> Iterator[Entry]:
    """The key at ``path`` (none for a boolean schema), with every key below it in
    ``Entry.children``, recursively; ``$ref`` is followed, recursion through it is an
    error."""
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    schema = resolve(schema, root, seen)
    if not isinstance(schema, dict):
        return
    seen = (*seen, ref) if ref else seen
    entry = Entry(path, schema, required)
    entry.children = list(_children(schema, path, root, seen))
    yield entry


def tree(schema: dict[str, Any]) -> Entry:
    """The schema's root as an :class:`Entry` whose children are the top-level keys."""
    return next(walk(schema, schema))


def keys(schema: dict[str, Any]) -> list[Entry]:
    """Every key of the schema, flattened, in document order (parents first)."""

    def flatten(entries: list[Entry]) -> Iterator[Entry]:
        for e in entries:
            yield e
            yield from flatten(e.children)

    return list(flatten(tree(schema).children))


def missing_descriptions(schema: dict[str, Any]) -> list[str]:
    """The paths of the keys that have no (or an empty) description."""
    return [e.path for e in keys(schema) if not e.description]


# -- rendering ---------------------------------------------------------------------------
def _literal(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def _type(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_literal(v) for v in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema and "type" not in schema:
            parts = [_type(b) for b in schema[key] if isinstance(b, dict)]
            parts = [p for p in parts if p]
            if parts:
                return " or ".join(parts)
    kind = schema.get("type")
    if kind is None and _has_keys(schema):
        kind = "object"
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    text = " or ".join(str(k) for k in kinds)
    limits = _limits(schema)
    return ", ".join(part for part in (text, limits) if part)


def _limits(schema: dict[str, Any]) -> str:
    signs = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
    }
    out = [f"{sign} {schema[key]}" for key, sign in signs.items() if key in schema]
    if "minLength" in schema:
        out.append(f"at least {schema['minLength']} character(s)")
    if "pattern" in schema:
        out.append(f"matching `{schema['pattern']}`")
    if "minProperties" in schema or "maxProperties" in schema:
        lo, hi = schema.get("minProperties"), schema.get("maxProperties")
        out.append(f"exactly {lo} key" if lo == hi else f"{lo or 0} to {hi or 'any'} keys")
    return ", ".join(out)


def _object_notes(entry: Entry) -> str:
    schema = entry.schema
    notes = []
    names = (schema.get("propertyNames") or {}).get("pattern")
    if names:
        notes.append(f"Names match `{names}`.")
    if schema.get("additionalProperties") is True:
        notes.append("Free-form: any keys are accepted.")
    choices = [sorted(b["required"]) for b in schema.get("oneOf", []) if "required" in b]
    if choices:
        listed = " / ".join(", ".join(f"`{k}`" for k in c) for c in choices)
        notes.append(f"Exactly one of: {listed}.")
    return " ".join(notes)


def _row_text(entry: Entry) -> str:
    """A key's description in its parent's table (a section repeats it with more notes)."""
    if entry.schema.get("additionalProperties") is True and not entry.is_section:
        return f"{entry.description} Free-form: any keys are accepted."
    return entry.description


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(path: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in path.lower())
    return "-".join(p for p in slug.split("-") if p)


def _heading(entry: Entry) -> str:
    return f"`{entry.path}`"


def render(schema: dict[str, Any]) -> str:
    """The reference as Markdown: one section per object key, a table of its keys."""
    missing = missing_descriptions(schema)
    if missing:
        raise ValueError(
            "config/config.schema.yaml: these keys have no description: " + ", ".join(missing)
        )
    top = tree(schema)
    lines: list[str] = []

    def section(entry: Entry, depth: int) -> None:
        level = "#" * min(depth, 6)
        lines.append(f"{level} {_heading(entry)} {{#{_anchor(entry.path)}}}")
        lines.append("")
        about = _type(entry.schema)
        facts = [f"**Type:** {about}"] if about else []
        if "default" in entry.schema:
            facts.append(f"**Default:** {_literal(entry.schema['default'])}")
        if entry.required:
            facts.append("**Required**")
        lines.append(" · ".join(facts))
        lines.append("")
        lines.append(f"{entry.description} {_object_notes(entry)}".strip())
        lines.append("")
        lines.append("| key | type | default | description |")
        lines.append("|---|---|---|---|")
        for child in entry.children:
            name = child.path[len(entry.path) :] if entry.path else child.path
            if name.startswith("."):
                name = name[1:]
            elif name.startswith("[]"):  # an array's items: `rates[]` under `rates`
                name = entry.path.rsplit(".", 1)[-1] + name
            key = f"`{name}`"
            if child.is_section:
                key = f"[{key}](#{_anchor(child.path)})"
            if child.required:
                key += " (required)"
            default = _literal(child.schema["default"]) if "default" in child.schema else "—"
            lines.append(
                f"| {key} | {_cell(_type(child.schema))} | {_cell(default)} | "
                f"{_cell(_row_text(child))} |"
            )
        lines.append("")
        for child in entry.children:
            if child.is_section:
                section(child, depth + 1)

    for entry in top.children:
        if entry.is_section:
            section(entry, 2)
        else:
            lines.append(f"## `{entry.path}` {{#{_anchor(entry.path)}}}")
            lines.append("")
            facts = [f"**Type:** {_type(entry.schema)}"]
            if "default" in entry.schema:
                facts.append(f"**Default:** {_literal(entry.schema['default'])}")
            lines.append(" · ".join(facts))
            lines.append("")
            lines.append(entry.description)
            lines.append("")
    return "\n".join(lines)


# -- MkDocs hook -------------------------------------------------------------------------
def on_config(config, **kwargs):
    """Rebuild the page under ``mkdocs serve`` when the schema changes."""
    schema = Path(config["config_file_path"]).parent / SCHEMA
    if str(schema) not in config["watch"]:
        config["watch"].append(str(schema))
    return config


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    from mkdocs.exceptions import PluginError

    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} lacks the line {MARKER}")
    path = Path(config["config_file_path"]).parent / SCHEMA
    try:
        reference = render(load_schema(path))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise PluginError(f"configuration reference: {err}") from err
    return markdown.replace(MARKER, reference)
