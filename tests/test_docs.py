"""The README against the code: CLI reference vs argparse, manifest reference vs the
JSON Schema, the quickstart walk-through vs the file, the set-up commands vs ``.ci/run``."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from hifly_batch.cli import DEFAULTS, build_parser, takers
from tests.readme import (
    ROOT,
    code_blocks,
    headings,
    readme_text,
    section,
    setup_commands,
    subsections,
)

SCHEMA = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text(encoding="utf-8"))
README = readme_text()
CLI_REFERENCE = section(README, "Command line reference")
MANIFEST_REFERENCE = section(README, "Manifest reference")


# --- the parsers -------------------------------------------------------------


def walk_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser and sub-parser, with its command path (``()`` for the top level)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk_parsers(sub, (*path, name))


PARSERS = dict(walk_parsers(build_parser()))
GLOBAL_OPTIONS = {o for a in PARSERS[()]._actions for o in a.option_strings}
COMMANDS = [path for path in PARSERS if path]


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [
        a.metavar or a.dest
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]


def mentions(text: str, option: str) -> bool:
    """``option`` written as code: `--only`, `--only PATTERN`, `-o FILE`."""
    return re.search(rf"`{re.escape(option)}[ `]", text) is not None


def command_section(path: tuple[str, ...]) -> tuple[str, str]:
    """The CLI reference's subsection whose heading names this command: (heading, body)."""
    name = "`hifly-batch " + " ".join(path)
    found = [
        (heading, body)
        for heading, body in subsections(CLI_REFERENCE).items()
        if heading.startswith(name + " ") or heading.startswith(name + "`")
    ]
    assert found, f"the CLI reference has no heading for hifly-batch {' '.join(path)}"
    return found[0]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"init", "validate", "plan", "run", "report", "sandbox serve"} <= names


def test_every_global_option_is_in_the_global_options_table() -> None:
    table = subsections(CLI_REFERENCE)["Global options"]
    missing = sorted(o for o in GLOBAL_OPTIONS if not mentions(table, o))
    assert not missing, f"README's global options table lacks {missing}"


def test_the_global_options_table_names_the_commands_that_take_each() -> None:
    table = subsections(CLI_REFERENCE)["Global options"]
    rows = re.findall(r"^\| `(-[-\w]+)[^|]*\|.*\| ([^|]*) \|$", table, re.MULTILINE)
    parser = build_parser()
    by_option = {o: a.dest for a in parser._actions for o in a.option_strings}
    checked = [option for option, _ in rows if by_option.get(option) in DEFAULTS]
    assert len(checked) == 6, rows  # --base-url, --sandbox, --state, -v, -q, --no-progress
    for option, named in rows:
        if by_option.get(option) in DEFAULTS:
            assert named.strip() == ", ".join(takers(parser, by_option[option])), option


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_and_its_options_are_in_the_cli_reference(path: tuple[str, ...]) -> None:
    heading, body = command_section(path)
    own = options(PARSERS[path]) - GLOBAL_OPTIONS
    missing = sorted(o for o in own if not mentions(body, o))
    assert not missing, f"README's section {heading} lacks {missing}"
    if path != ("sandbox",):  # its section is the one of its only action, serve
        for name in positionals(PARSERS[path]):
            assert name in heading, f"{heading} does not show the argument {name}"


@pytest.mark.parametrize("path", list(PARSERS), ids=lambda p: " ".join(p) or "hifly-batch")
def test_every_help_has_an_example(path: tuple[str, ...]) -> None:
    text = PARSERS[path].format_help()
    assert re.search(r"^examples?:\n  .*hifly-batch ", text, re.MULTILINE), text


# --- the schema --------------------------------------------------------------


def schema_properties(
    node: Any, path: tuple[str, ...] = (), seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, ...]]:
    """Every property path of the schema, at all levels, following ``$ref`` into ``$defs``."""
    if isinstance(node, list):
        for sub in node:
            yield from schema_properties(sub, path, seen)
        return
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield (*path, name)
        yield from schema_properties(sub, (*path, name), seen)
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in seen:
        target = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
        yield from schema_properties(target, path, seen | {ref})
    for key, sub in node.items():
        if key not in ("properties", "$defs", "$ref"):
            yield from schema_properties(sub, path, seen)


PROPERTIES = sorted(set(schema_properties(SCHEMA)))


def test_the_schema_walk_reaches_every_level() -> None:
    assert ("version",) in PROPERTIES
    assert ("settings", "poll_max") in PROPERTIES
    assert ("voices", "pitch") in PROPERTIES  # under additionalProperties
    assert ("videos", "api_params") in PROPERTIES


def reference_section(top: str) -> str:
    for heading, body in subsections(MANIFEST_REFERENCE).items():
        if heading == f"`{top}`":
            return body
    raise AssertionError(f"the manifest reference has no heading ### `{top}`")


@pytest.mark.parametrize("path", PROPERTIES, ids=".".join)
def test_every_schema_property_is_in_the_manifest_reference(path: tuple[str, ...]) -> None:
    body = reference_section(path[0])  # a top-level key is its section's heading
    assert len(path) == 1 or f"`{path[-1]}`" in body, (
        f"### `{path[0]}` does not describe `{path[-1]}`"
    )


def test_every_top_level_key_has_a_yaml_example() -> None:
    for top in SCHEMA["properties"]:
        blocks = code_blocks(reference_section(top), "yaml")
        assert any(top in yaml.safe_load(b) for b in blocks), f"no example for `{top}`"


def test_every_manifest_reference_example_is_valid_against_the_schema() -> None:
    validator = Draft202012Validator(SCHEMA)
    blocks = code_blocks(MANIFEST_REFERENCE, "yaml")
    assert len(blocks) >= len(SCHEMA["properties"])
    for block in blocks:
        doc = {"version": 1, **yaml.safe_load(block)}
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, f"{errors} in:\n{block}"


def test_the_complete_example_uses_every_section() -> None:
    [block] = code_blocks(subsections(MANIFEST_REFERENCE)["A complete example"], "yaml")
    assert set(yaml.safe_load(block)) == set(SCHEMA["properties"])


def test_the_quickstart_walk_through_quotes_the_quickstart() -> None:
    manifest = yaml.safe_load((ROOT / "manifests" / "quickstart.yaml").read_text("utf-8"))
    blocks = code_blocks(section(README, "The quickstart, step by step"), "yaml")
    shown: set[str] = set()
    for block in blocks:
        for key, value in yaml.safe_load(block).items():
            assert manifest[key] == value, f"README's quickstart `{key}` differs from the file"
            shown.add(key)
    assert shown == set(manifest), f"the walk-through skips {set(manifest) - shown}"


# --- set-up --------------------------------------------------------------------


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_test_command_is_what_ci_runs_last() -> None:
    _, test_command = setup_commands()
    assert ci_commands()[-1] == test_command


def test_ci_installs_chromium_before_the_tests() -> None:
    commands = ci_commands()
    chromium = [n for n, line in enumerate(commands) if "install -y chromium" in line]
    assert chromium and chromium[0] < len(commands) - 1


def test_the_readme_quickstart_command_runs_the_quickstart_file() -> None:
    install, test_command = setup_commands()
    first = [shlex.split(part) for part in install.split("&&")]
    assert first[0][:2] == ["pip", "install"]
    args = build_parser().parse_args(first[1][1:])
    assert args.command == "run" and args.sandbox
    assert (ROOT / args.manifest).is_file()
    assert "pytest" in test_command and "[test]" in test_command


def test_readme_links_to_its_own_sections_resolve() -> None:
    anchors = {
        re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        for _, _, _, title in headings(README)
    }
    for link in re.findall(r"\]\(#([^)]+)\)", README):
        assert link in anchors, f"README links to #{link}, which is no heading"


def test_files_the_readme_names_exist() -> None:
    named = set(re.findall(r"`((?:manifests|examples|schemas)/[\w./-]+)`", README))
    assert "manifests/quickstart.yaml" in named
    for name in named - {n for n in named if n.startswith("manifests/out/")}:
        assert (ROOT / name).exists(), name


def test_readme_error_codes_are_the_api_codes() -> None:
    table = section(README, "API error codes")
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert codes == {11, 14, 1001, 1002, 1005, 1006, 1009, 1011, 1013, 1015}.union(
        {2003, 2011, 2012, 2013, 2014, 2015, 2016}
    )
