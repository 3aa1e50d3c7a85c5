"""README.md and docs/ cannot drift: links and anchors resolve, flag tables equal ``--help``, model-argument tables
equal what each model accepts, and every page is reachable from the README.

Tables are tied to what they document by a marker on the line before them: ``<!-- flags: python -m finetune -->``
(or ``python scripts/demo.py``) and ``<!-- model_args: qwen3vl_vea -->`` (``common`` for the arguments of every
model). A flag is any ``--name`` in a row's first cell; a model argument any backticked name there.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.support.commands import run_module
from tests.support.environment import REPO_ROOT
from tests.support.inprocess import run_in_process

PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MARKER = re.compile(r"^<!--\s*(flags|model_args):\s*(.+?)\s*-->$")  # a line of its own
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
ARGUMENT = re.compile(r"`([a-z_][a-z0-9_]*)`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces -> -."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def marked_tables(kind: str) -> list[tuple[Path, str, list[str]]]:
    """(page, marker argument, first cells of the table's rows) for every table marked ``kind``."""
    tables = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            marker = MARKER.match(line.strip())
            if not marker or marker.group(1) != kind:
                continue
            rows = []
            for row in lines[index + 1 :]:
                if not row.startswith("|"):
                    break
                rows.append(row.split("|")[1].strip())
            assert len(rows) > 2, f"{page.name}: the marker {line!r} is not followed by a table"
            tables.append((page, marker.group(2), rows[2:]))  # header and separator rows dropped
    return tables


def help_options(command: str) -> set[str]:
    """The options ``COMMAND --help`` lists (``-h``/``--help`` aside), from the command's own output."""
    words = shlex.split(command)
    assert words[0] == "python", f"marker command {command!r}: write it as 'python -m MODULE' or 'python SCRIPT'"
    if words[1] == "-m":
        completed = run_module(words[2], [*words[3:], "--help"], dict(os.environ))
    else:
        completed = run_in_process([str(REPO_ROOT / words[1]), *words[2:], "--help"], dict(os.environ), REPO_ROOT)
    assert completed.returncode == 0, f"{command} --help failed: {completed.stderr[-2000:]}"
    options = set()
    for line in completed.stdout.splitlines():
        match = re.match(r"^ {2}(-\S.*?)(?: {2,}|$)", line)
        if match:
            options.update(re.findall(r"(?:^|, )(--?[\w-]+)", match.group(1)))
    return options - {"-h", "--help"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link {target!r} points at a missing {linked}"
        if anchor:
            assert linked.suffix == ".md", f"{page.name}: anchor on a non-Markdown file in {target!r}"
            assert anchor in anchors(linked), f"{page.name}: {target!r} has no heading #{anchor} in {linked.name}"


def test_every_docs_page_is_linked_from_the_readme():
    readme = {(REPO_ROOT / target.partition("#")[0]).resolve() for target in links(REPO_ROOT / "README.md")}
    unlinked = [page.name for page in PAGES if page.name != "README.md" and page.resolve() not in readme]
    assert unlinked == [], f"docs pages the README does not link: {unlinked}"


def test_the_readme_is_a_front_page():
    assert len((REPO_ROOT / "README.md").read_bytes()) <= 15_000


FLAG_TABLES = marked_tables("flags")


def test_every_command_line_has_its_flag_table():
    commands = {command for _, command, _ in FLAG_TABLES}
    expected = {
        "python -m finetune", "python -m sweep", "python -m analysis report", "python -m analysis heatmap",
        "python -m analysis view", "python -m testbed.tiny", "python -m vsr_tasks.synthetic",
        "python -m profiling", "python -m benchmarks.interventions", "python -m benchmarks.sweep",
        "python scripts/demo.py", "python scripts/reproduce.py", "python scripts/figures.py",
    }  # fmt: skip
    assert commands == expected
    assert len(FLAG_TABLES) == len(commands), "a command has two flag tables: keep one"


@pytest.mark.parametrize("page,command,rows", FLAG_TABLES, ids=[command for _, command, _ in FLAG_TABLES])
def test_flag_tables_list_exactly_the_help_options(page, command, rows):
    documented = {flag for row in rows for flag in FLAG.findall(row)}
    listed = help_options(command)
    assert not documented - listed, f"{page.name}: {command} --help lacks {sorted(documented - listed)}"
    assert not listed - documented, f"{page.name}: the table of {command} lacks {sorted(listed - documented)}"


def _models():
    from plugin import model_class, model_classes

    for model in model_classes():
        yield model, model_class(model)


def test_model_argument_tables_equal_what_each_model_accepts():
    """``common`` documents what the baselines take; each method's table (``<!-- model_args: adaptvis -->``) what
    its two models add."""
    from models.methods import METHODS, method_of_model

    documented: dict[str, set[str]] = {}
    for _, name, rows in marked_tables("model_args"):
        assert name == "common" or name in METHODS, f"model_args table for an unknown method {name!r}"
        documented.setdefault(name, set()).update(name for row in rows for name in ARGUMENT.findall(row))
    for model, klass in _models():
        accepted = set(klass.valid_arguments())
        method = None if model in ("qwen3vl", "vlm_baseline") else method_of_model(model).name
        mine = documented.get("common", set()) | documented.get(method, set())
        assert not mine - accepted, f"{model}: documented arguments it refuses: {sorted(mine - accepted)}"
        assert not accepted - mine, f"{model}: accepted arguments without a row: {sorted(accepted - mine)}"


def test_method_tables_are_the_registrys():
    """Every method table says exactly what the registry declares: names, defaults and meanings, in its order."""
    from models.methods import METHODS, method_tables

    found: dict[str, list[str]] = {}
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            marker = MARKER.match(line.strip())
            if marker and marker.group(1) == "model_args" and marker.group(2) in METHODS:
                table = [row for row in _table_after(lines, index)]
                found.setdefault(marker.group(2), []).append("\n".join(table))
    for name, method in METHODS.items():
        expected = method_tables(method)
        assert sorted(found.get(name, [])) == sorted(expected.values()), (
            f"the docs' tables of {name} differ from the registry (models/methods.py); they should read:\n\n"
            + "\n\n".join(expected.values())
        )


def _table_after(lines: list[str], index: int) -> list[str]:
    rows = []
    for row in lines[index + 1 :]:
        if not row.startswith("|"):
            break
        rows.append(row)
    return rows
