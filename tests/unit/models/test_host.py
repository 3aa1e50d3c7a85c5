"""The method contract: a runner uses the engine only through ``MethodHost``'s seams, and the engine has them all.

Read from the source (every module that holds a runner, or code a runner calls with the host), so a new method that
reaches past the contract, or a seam renamed on one side only, fails here before any model runs.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from models.engine import Engine
from models.host import MethodHost, seams
from models.methods import METHODS
from models.runner import MethodRunner
from tests.support.environment import REPO_ROOT

# the files a method's runtime lives in (every runner's module, and what they hand the host to) and VEA's layer
# profiler, which runs on the host too
METHOD_FILES = sorted(
    {Path(inspect.getfile(spec.runner)) for spec in METHODS.values()}
    | {
        Path(inspect.getfile(MethodRunner)),
        REPO_ROOT / "models" / "vea_layers.py",
        REPO_ROOT / "profiling" / "profile.py",
    }
)


def host_uses(path: Path) -> list[tuple[int, str]]:
    """Every ``host.<member>`` in the file, with its line."""
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "host"
    ]


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda path: path.name)
def test_a_runner_uses_the_engine_only_through_the_seams(path):
    uses = host_uses(path)
    outside = [f"{path.name}:{line} host.{member}" for line, member in uses if member not in seams()]
    assert not outside, f"not a MethodHost seam: {outside}"
    tree = ast.parse(path.read_text())
    named_engine = [node.arg for node in ast.walk(tree) if isinstance(node, ast.arg) and node.arg == "engine"]
    assert not named_engine, f"{path.name}: a runner takes the host (MethodHost), not the engine"
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"models.engine", "models.loading", "plugin.loading"}


def test_the_runners_use_the_seams_they_are_given():
    """Every seam is used (a seam nobody uses is dead weight in the contract)."""
    used = {member for path in METHOD_FILES for _, member in host_uses(path)}
    assert used == seams(), sorted(seams() - used)


def test_the_engine_implements_every_seam(tiny_engine):
    assert isinstance(tiny_engine, MethodHost)
    for member in seams():
        assert hasattr(tiny_engine, member), member
    for name in ("prepare", "prompt_prefix", "steering", "generate", "generate_steered", "prefill_logits"):
        protocol = inspect.signature(getattr(MethodHost, name))
        implemented = inspect.signature(getattr(Engine, name))
        assert list(implemented.parameters) == list(protocol.parameters), name


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from plugin.loading import engine_for
    from testbed.tiny import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("host") / "tiny")
    return engine_for("qwen3vl", pretrained=str(checkpoint), device="cpu")
