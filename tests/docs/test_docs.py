"""The documentation site builds (mkdocs build --strict), and its configuration reference,
generated from config/config.schema.yaml, has a description for every key."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCHEMA = REPO / "config" / "config.schema.yaml"


@pytest.fixture(scope="module")
def reference():
    """docs/hooks/config_reference.py, the generator the site's build runs."""
    path = REPO / "docs" / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("phasemake_docs_config_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def schema(reference):
    return reference.load_schema(SCHEMA)


def test_every_schema_key_has_a_description(reference, schema):
    paths = [entry.path for entry in reference.keys(schema)]
    assert len(paths) > 50
    for expected in (
        "cache",
        "models.<name>.callback",
        "analyses.<name>.nlsq.initial.<name>",
        "analyses.<name>.cmc.prior.<name>.gamma.rate",
    ):
        assert expected in paths
    assert reference.missing_descriptions(schema) == []


# where the description is deleted: a JSON-pointer-like path into the schema
ANALYSIS = "properties/analyses/additionalProperties"


@pytest.mark.parametrize(
    "where, path",
    [
        ("properties/cache", "cache"),
        (f"{ANALYSIS}/properties/cmc/properties/seed", "analyses.<name>.cmc.seed"),
        (ANALYSIS, "analyses.<name>"),
        (
            f"{ANALYSIS}/properties/nlsq/properties/fixed/additionalProperties",
            "analyses.<name>.nlsq.fixed.<name>",
        ),
    ],
)
def test_a_key_without_a_description_is_reported(reference, schema, where, path):
    broken = copy.deepcopy(schema)
    node = broken
    for key in where.split("/"):
        node = node[key]
    del node["description"]
    assert reference.missing_descriptions(broken) == [path]
    with pytest.raises(ValueError, match="have no description"):
        reference.render(broken)


def test_refs_and_pattern_properties_are_walked(reference):
    schema = {
        "type": "object",
        "$defs": {
            "rate": {"type": "number", "exclusiveMinimum": 0, "description": "A rate."},
            "block": {
                "type": "object",
                "description": "A block.",
                "properties": {"size": {"type": "integer"}},
            },
        },
        "properties": {
            "a": {"$ref": "#/$defs/rate", "default": 1.0},
            "b": {"$ref": "#/$defs/block"},
            "c": {
                "type": "object",
                "description": "By pattern.",
                "patternProperties": {"^x_": {"$ref": "#/$defs/rate"}},
            },
        },
    }
    entries = {e.path: e for e in reference.keys(schema)}
    assert set(entries) == {"a", "b", "b.size", "c", "c.<key matching ^x_>"}
    assert entries["a"].description == "A rate."
    assert entries["a"].schema["default"] == 1.0
    assert reference.missing_descriptions(schema) == ["b.size"]


def test_reference_lists_every_key_with_its_default(reference, schema):
    text = reference.render(schema)
    for entry in reference.keys(schema):
        name = entry.path.rsplit(".", 1)[-1]
        assert f"`{name}`" in text, entry.path
    assert "`50000000`" in text  # traces.max_unit_cost's default, from the schema


def test_mkdocs_build_strict(tmp_path):
    """What .ci/run does: a broken link, a missing page or included file, a schema key
    without a description, or an API page naming a missing module fails the build."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    configuration = (site / "configuration" / "index.html").read_text()
    assert "max_unit_cost" in configuration
    assert "config-reference" not in configuration  # the marker was replaced
    api = (site / "api" / "graph" / "index.html").read_text()
    assert 'id="phasemake.graph.model.model"' in api


def test_readme_links_point_at_files():
    """The README's relative links (into docs/ and the repository) name existing files;
    mkdocs checks the links inside docs/, not the README's."""
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (REPO / t).exists()]
    assert missing == []
