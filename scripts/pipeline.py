"""The steps ``scripts/demo.py`` and ``scripts/reproduce.py`` share: each runs one of the project's command lines.

Why subprocesses: the pipelines then run exactly what a user types (and ``--dry_run`` can print it), every step
is also an end-to-end test of its command, and a failure stops the pipeline with that command's own output.
The lmms-eval CLI exits 0 even when an evaluation fails, so an evaluation counts as done only when its results
file exists; that also makes pipelines resumable (a finished evaluation is skipped).
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


TAIL = 16_000  # characters of a step's output kept for the message when it fails


def _pump(source, sink, kept: list[str]) -> None:
    """Copy a child's output to ours as it comes (progress bars included), keeping its tail."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := source.read1(4096):
        text = decoder.decode(chunk)
        sink.write(text)
        sink.flush()
        kept.append(text)
        if sum(map(len, kept)) > 2 * TAIL:
            kept[:] = ["".join(kept)[-TAIL:]]


def run_subprocess(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` as a new process, its output shown as it comes (a long step is never silent: fine-tuning's
    steps, loss and ETA, an evaluation's progress) and its tail returned for the failure message."""
    process = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out: list[str] = []
    err: list[str] = []
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, sys.stdout, out), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, sys.stderr, err), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        returncode = process.wait()
    except BaseException:  # interrupted: take the child down with us
        process.kill()
        raise
    for pump in pumps:
        pump.join()
    return subprocess.CompletedProcess(args, returncode, "".join(out)[-TAIL:], "".join(err)[-TAIL:])


class Pipeline:
    """Runs ``python ARGS`` steps from the repository root, logging each with its time; ``dry_run`` only prints.

    ``runner`` executes one step (default :func:`run_subprocess`); the tests swap in one that runs the same
    command line inside their own process, which saves each step's ~10 s of interpreter start-up.
    """

    runner = staticmethod(run_subprocess)

    def __init__(self, name: str, dry_run: bool = False, offline: bool = True, env: Mapping[str, str] | None = None):
        self.name = name
        self.dry_run = dry_run
        self.ran = False  # a step with an output ran in this process: the later ones run too (see run)
        self.base_env = dict(os.environ)
        self.base_env["TOKENIZERS_PARALLELISM"] = "false"
        if offline:
            self.base_env.update(OFFLINE)
        self.base_env.update(env or {})

    def log(self, message: str) -> None:
        print(f"[{self.name}] {message}", flush=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, **extra}

    def run(
        self,
        step: str,
        args: list[str],
        env: Mapping[str, str] | None = None,
        output: Path | None = None,
        fresh: tuple[str, ...] = (),
        resume: tuple[str, ...] = (),
    ) -> float:
        """Run ``python ARGS``; stop the pipeline with its output when it fails. Returns the seconds it took.

        With ``output`` (the folder the step writes) a rerun of the pipeline keeps what an earlier one finished: the
        step is skipped when a stamp beside ``output`` says the same command finished, and no step before it ran in
        this process (a step that ran again may have changed what this one reads). A step that started with the same
        command and did not finish (killed) runs with ``resume`` added; any other runs with ``fresh`` added.
        """
        if output is not None and not self.dry_run:
            started, finished = (
                output.parent / ".pipeline" / f"{output.name}.{kind}.json" for kind in ("started", "done")
            )
            key = json.dumps(args)
            if not self.ran and finished.is_file() and finished.read_text() == key:
                self.log(f"{step}: finished by an earlier run ({output}), kept")
                return 0.0
            self.ran = True
            again = started.is_file() and started.read_text() == key and resume
            if again:
                self.log(f"{step}: started by an earlier run that did not finish, resuming")
            started.parent.mkdir(parents=True, exist_ok=True)
            started.write_text(key)
            finished.unlink(missing_ok=True)
            elapsed = self.run(step, [*args, *(resume if again else fresh)], env)
            finished.write_text(key)
            return elapsed
        command = [sys.executable, *args]
        if self.dry_run:
            extra = {k: v for k, v in (env or {}).items() if self.base_env.get(k) != v}
            prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(extra.items()))
            print(f"{prefix + ' ' if prefix else ''}python {shlex.join(args)}", flush=True)
            return 0.0
        start = time.perf_counter()
        self.log(f"{step} ...")
        completed = self.runner(args, env or self.base_env, REPO_ROOT)
        elapsed = time.perf_counter() - start
        if completed.returncode != 0:
            sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-8000:])
            raise SystemExit(f"[{self.name}] {step} failed (exit {completed.returncode}): {shlex.join(command)}")
        self.log(f"{step} done in {elapsed:.1f}s")
        return elapsed

    def evaluate(
        self,
        step: str,
        model: str,
        model_args: Mapping[str, object],
        tasks: list[str],
        output: Path,
        env: Mapping[str, str],
        batch_size: int = 1,
        limit: int | None = None,
        resume: bool = False,
        include_path: str | None = None,
        gen_kwargs: str | None = None,
        keep: bool = False,
    ) -> Path | None:
        """One lmms-eval run with ``--log_samples``; returns its results file (None in a dry run).

        With ``resume`` an output folder that already holds a results file is not evaluated again; with ``keep`` the
        run is a step with an output (:meth:`run`): kept when an earlier pipeline run finished it and nothing before it
        ran again (a killed evaluation resumes through the models' answer cache, ``answer_cache=``).
        """
        if resume and not self.dry_run and find_results(output) is not None:
            self.log(f"{step}: results exist in {output}, skipped")
            return find_results(output)
        args = ["-m", "lmms_eval", "--model", model, "--model_args", format_model_args(model_args)]
        args += ["--tasks", ",".join(tasks), "--batch_size", str(batch_size), "--log_samples"]
        args += ["--output_path", str(output)]
        if limit is not None:
            args += ["--limit", str(limit)]
        if include_path:
            args += ["--include_path", str(include_path)]
        if gen_kwargs:
            args += ["--gen_kwargs", gen_kwargs]
        self.run(step, args, env, output=output if keep else None)
        if self.dry_run:
            return None
        results = find_results(output)
        if results is None:  # the CLI exits 0 when an evaluation fails
            raise SystemExit(f"[{self.name}] lmms-eval wrote no results for {model} under {output}")
        return results

    def report(self, step: str, runs: list[Path], out: Path, env: Mapping[str, str], *extra: str) -> Path:
        """``python -m analysis report`` over ``runs``; returns report.md."""
        self.run(step, ["-m", "analysis", "report", *(str(run) for run in runs), "--out", str(out), *extra], env)
        path = out / "report.md"
        if not self.dry_run and not path.exists():
            raise SystemExit(f"[{self.name}] the analysis wrote no {path}")
        return path


def study_model(method: str | None) -> str:
    """The reference study's model of ``method`` (None: its baseline, ``qwen3vl``), from ``models.names``."""
    from models.names import STUDY

    return STUDY.name(method)


def qwen3vl_models() -> tuple[str, ...]:
    """``qwen3vl`` and each method's Qwen3-VL model, in the method registry's order (``models.methods``)."""
    from models.methods import METHODS

    return tuple(study_model(method) for method in (None, *METHODS))


def format_model_args(model_args: Mapping[str, object]) -> str:
    """``key=value,...`` as lmms-eval reads it (lists in brackets, booleans lower-case)."""

    def value(item: object) -> str:
        if isinstance(item, bool):
            return str(item).lower()
        if isinstance(item, (list, tuple)):
            return "[" + ",".join(str(x) for x in item) + "]"
        text = str(item)
        if "," in text and not (text.startswith("[") and text.endswith("]")):  # lmms-eval splits outside brackets
            # and quotes: quoted, it stays one argument (the models strip the quotes)
            return f"'{text}'" if "'" not in text else f'"{text}"'
        return text

    return ",".join(f"{key}={value(item)}" for key, item in model_args.items() if item is not None)


def find_results(run_dir: Path) -> Path | None:
    """The newest ``*_results.json`` under an lmms-eval ``--output_path`` folder."""
    found = sorted(glob.glob(str(Path(run_dir) / "**" / "*_results.json"), recursive=True))
    return Path(found[-1]) if found else None


def task_metric(results_file: Path, task: str, metric: str = "accuracy") -> float | None:
    """A task's ``metric`` (its first filter's value) from a results JSON; None when the task has no such metric."""
    metrics = json.loads(Path(results_file).read_text())["results"].get(task, {})
    return next((float(value) for key, value in metrics.items() if key.split(",")[0] == metric), None)


def task_accuracy(results_file: Path, task: str) -> float:
    accuracy = task_metric(results_file, task)
    if accuracy is None:
        raise KeyError(f"{results_file}: task {task} has no accuracy")
    return accuracy
