"""Run one of the project's command lines (``python -m MODULE ARGS``, ``python SCRIPT ARGS``) inside this process.

Why: a fresh Python spends ~8 s importing torch, transformers and lmms-eval and ~4 s indexing lmms-eval's 2,000
task files before it computes anything; the tiny checkpoints answer in well under a second. Every command line
keeps at least one test that starts it as a real subprocess (``tests.support.commands.run_cli``); the others run here, as the
same code from the same ``__main__``, under the same environment variables, working folder and ``sys.argv``, with
the state a fresh process would start from reset (accelerate's singleton state, loguru's sinks). What cannot be
isolated in-process (several ranks, a crash of the interpreter) stays a subprocess.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import runpy
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

LMMS_EVAL_TASKS = None  # lmms-eval's own task folder (its index is the same for every run of the test session)


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``env`` inside the block, and as before afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def working_folder(path: Path) -> Iterator[None]:
    saved = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)


def _fresh_process_state(stderr) -> None:
    """What a new interpreter starts with: no accelerate state, loguru writing to (this run's) stderr."""
    from accelerate.state import AcceleratorState, GradientState, PartialState
    from loguru import logger

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()
    GradientState._reset_state()
    logger.remove()
    logger.add(stderr)


def memoise_lmms_eval_task_index() -> None:
    """Index lmms-eval's own task folder once per test process (it never changes); other folders every time."""
    from lmms_eval.tasks import TaskManager

    original = TaskManager._get_task_and_group
    if getattr(original, "_memoised", False):
        return
    own = os.path.dirname(os.path.abspath(sys.modules["lmms_eval.tasks"].__file__)) + "/"
    cache: dict[str, dict] = {}

    @functools.wraps(original)
    def get_task_and_group(self, task_dir: str):
        if task_dir != own:
            return original(self, task_dir)
        if own not in cache:
            cache[own] = original(self, task_dir)
        return copy.deepcopy(cache[own])

    get_task_and_group._memoised = True
    TaskManager._get_task_and_group = get_task_and_group


def run_in_process(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` (``-m MODULE ...`` or ``SCRIPT ...``) here; stdout, stderr and the exit code as a subprocess's."""
    memoise_lmms_eval_task_index()
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    with environment(env), working_folder(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _fresh_process_state(err)
        # runpy warns that the package's __main__ was imported before (lmms-eval imports its own); harmless here
        warnings.filterwarnings("ignore", message=r".*found in sys.modules after import of package", module="runpy")
        try:
            if args[0] == "-m":
                sys.argv = [args[1], *args[2:]]
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(args)
                sys.path.insert(0, str(Path(args[0]).resolve().parent))
                runpy.run_path(args[0], run_name="__main__")
        except SystemExit as stop:
            code = stop.code
        except BaseException:  # noqa: BLE001 -- a crash is an exit code 1 with its traceback, as in a subprocess
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
    _fresh_process_state(sys.stderr)
    if isinstance(code, str):  # SystemExit("message"): printed to stderr, exit status 1
        err.write(code + "\n")
        code = 1
    return subprocess.CompletedProcess(
        [sys.executable, *args], int(code or 0), stdout=out.getvalue(), stderr=err.getvalue()
    )


def run_script_in_process(script: Path, args: list[str], env: Mapping[str, str], cwd: Path):
    """``python SCRIPT ARGS`` for ``scripts/demo.py`` / ``reproduce.py`` here, each pipeline step here as well."""
    with pipeline_steps_in_process(script.parent):
        return run_in_process([str(script), *args], env, cwd)


@contextlib.contextmanager
def pipeline_steps_in_process(scripts: Path) -> Iterator[None]:
    """``scripts/pipeline.Pipeline`` runs its steps with :func:`run_in_process` inside the block."""
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    import pipeline

    saved = pipeline.Pipeline.runner
    pipeline.Pipeline.runner = staticmethod(run_in_process)
    try:
        yield
    finally:
        pipeline.Pipeline.runner = saved
