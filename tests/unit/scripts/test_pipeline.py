"""The pipelines' steps (scripts/pipeline.py): a step's output is shown as it comes, and a rerun keeps what an earlier
run finished, resumes what it started, and runs afresh whatever comes after a step that ran again."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.environment import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import pipeline  # noqa: E402  (scripts/ is not a package)


def test_a_steps_output_is_shown_as_it_comes_and_its_tail_kept(capsys):
    code = "import sys; print('step 1/2', flush=True); sys.stderr.write('loss 0.5\\r'); print('done')"
    completed = pipeline.run_subprocess(["-c", code], dict(os.environ), REPO_ROOT)
    shown = capsys.readouterr()
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "step 1/2\ndone\n", "loss 0.5\r")
    assert shown.out == "step 1/2\ndone\n" and shown.err == "loss 0.5\r"


class Recorder:
    """A step runner that records the command lines and fails the ones it is told to (a kill)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.kill: str | None = None

    def __call__(self, args, env, cwd):
        self.calls.append(list(args))
        if self.kill in args:
            raise KeyboardInterrupt  # killed mid-step: no stamp of its end
        return subprocess.CompletedProcess(args, 0, "", "")


def _pipeline(recorder: Recorder) -> pipeline.Pipeline:
    steps = pipeline.Pipeline("test")
    steps.runner = recorder
    return steps


def _steps(steps: pipeline.Pipeline, root) -> None:
    steps.run("data", ["-m", "data", "a"], output=root / "data", fresh=("--overwrite",))
    steps.run("train", ["-m", "train", "b"], output=root / "train", fresh=("--new",), resume=("--resume",))
    steps.run("evaluate", ["-m", "evaluate", "c"], output=root / "evaluate")


def test_a_rerun_keeps_the_finished_steps_and_resumes_the_killed_one(tmp_path):
    recorder = Recorder()
    recorder.kill = "train"
    try:
        _steps(_pipeline(recorder), tmp_path)
    except KeyboardInterrupt:
        pass
    assert recorder.calls == [["-m", "data", "a", "--overwrite"], ["-m", "train", "b", "--new"]]
    recorder.calls, recorder.kill = [], None
    _steps(_pipeline(recorder), tmp_path)  # the data are kept; training resumes; evaluation runs
    assert recorder.calls == [["-m", "train", "b", "--resume"], ["-m", "evaluate", "c"]]
    recorder.calls = []
    _steps(_pipeline(recorder), tmp_path)  # everything finished: nothing runs
    assert recorder.calls == []


def test_a_changed_step_runs_afresh_and_so_does_every_later_one(tmp_path):
    recorder = Recorder()
    _steps(_pipeline(recorder), tmp_path)
    recorder.calls = []
    steps = _pipeline(recorder)
    steps.run("data", ["-m", "data", "a"], output=tmp_path / "data", fresh=("--overwrite",))  # kept
    steps.run("train", ["-m", "train", "B"], output=tmp_path / "train", fresh=("--new",), resume=("--resume",))
    steps.run("evaluate", ["-m", "evaluate", "c"], output=tmp_path / "evaluate")  # unchanged, but after a change
    assert recorder.calls == [["-m", "train", "B", "--new"], ["-m", "evaluate", "c"]]
