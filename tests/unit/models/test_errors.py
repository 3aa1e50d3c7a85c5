"""Bad input fails with a message that names what to fix (variable, path, file:line, argument)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import lmms_eval.models  # noqa: F401  (registers the VSR task folder)
import pytest
from lmms_eval.tasks import TaskManager

from plugin.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import lmms_eval_env, run_lmms_eval
from tests.support.data import write_splits
from tests.support.environment import REPO_ROOT
from vsr_tasks.data import VSRDataError


def _load(task_name: str):
    return TaskManager().load_task_or_group([task_name])[task_name]


def test_unset_data_dir_offline_names_the_variable_and_how_to_set_it(tmp_path, tiny_checkpoint):
    env = lmms_eval_env(None)
    env.pop("VSR_DATA_DIR", None)
    env.pop("VSR_IMAGE_DIR", None)
    args = ["--model", "qwen3vl", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vsr_random_dev"]
    completed = run_lmms_eval([*args, "--limit", "2", "--output_path", str(tmp_path)], env)
    log = completed.stdout + completed.stderr
    assert "VSR_DATA_DIR is not set" in log
    assert "export VSR_DATA_DIR=" in log
    assert not list(tmp_path.rglob("*_results.json"))


def test_data_dir_that_does_not_exist(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("VSR_DATA_DIR", str(missing))
    with pytest.raises(VSRDataError, match=f"VSR_DATA_DIR={missing} does not exist"):
        _load("vsr_random_dev")


def test_missing_image_names_the_file(monkeypatch, vsr_data_dir):
    monkeypatch.setenv("VSR_DATA_DIR", str(vsr_data_dir))
    monkeypatch.delenv("VSR_IMAGE_DIR", raising=False)
    task = _load("vsr_random_dev")
    doc = task.test_docs()[100]  # the fixture generates images for the first 16 rows only
    with pytest.raises(VSRDataError, match=f"image {doc['image']} not found") as error:
        task.doc_to_visual(doc)
    assert str(vsr_data_dir / "images" / doc["image"]) in str(error.value)


def test_coco_layout_is_resolved_from_image_link(monkeypatch, vsr_data_dir, tmp_path):
    coco = tmp_path / "coco"
    (coco / "train2017").mkdir(parents=True)
    monkeypatch.setenv("VSR_DATA_DIR", str(vsr_data_dir))
    monkeypatch.setenv("VSR_IMAGE_DIR", str(coco))
    task = _load("vsr_random_dev")
    doc = task.test_docs()[0]
    assert "/train2017/" in doc["image_link"]
    shutil.copy(vsr_data_dir / "images" / doc["image"], coco / "train2017" / doc["image"])
    assert task.doc_to_visual(doc)[0].size[0] > 0


def test_malformed_row_names_file_and_line(monkeypatch, vsr_data_dir, tmp_path):
    broken = tmp_path / "broken"
    write_splits(broken)
    dev = broken / "splits" / "random" / "dev.jsonl"
    lines = dev.read_text().splitlines()
    lines[2] = lines[2][:-10]  # truncated JSON on line 3
    dev.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("VSR_DATA_DIR", str(broken))
    with pytest.raises(VSRDataError, match=r"dev\.jsonl:3: not valid JSON"):
        _load("vsr_random_dev")


def test_row_missing_a_field_names_the_field(monkeypatch, vsr_data_dir, tmp_path):
    broken = tmp_path / "broken"
    write_splits(broken)
    dev = broken / "splits" / "zeroshot" / "dev.jsonl"
    lines = dev.read_text().splitlines()
    lines[4] = '{"image": "x.jpg", "caption": "The cat is on the mat.", "label": 1}'
    dev.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("VSR_DATA_DIR", str(broken))
    with pytest.raises(VSRDataError, match=r"dev\.jsonl:5: row lacks field\(s\) relation"):
        _load("vsr_zeroshot_dev")


def test_unknown_model_argument_is_refused_by_name(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown model argument\\(s\\) for qwen3vl: colour, temprature") as error:
        Qwen3VL.create_from_arg_string(f"pretrained={tiny_checkpoint},temprature=0.5,colour=red", {"batch_size": 1})
    assert "Valid arguments: pretrained, device, dtype, batch_size" in str(error.value)


@pytest.mark.parametrize(
    ("argument", "message"),
    [("dtype=float8", "dtype must be one of"), ("batch_size=0", "batch_size must be a positive integer")],
)
def test_bad_argument_values_are_refused(tiny_checkpoint, argument, message):
    with pytest.raises(ValueError, match=message):
        Qwen3VL.create_from_arg_string(f"pretrained={tiny_checkpoint},{argument}")


def test_the_data_tests_pass_from_a_copy_with_nothing_beside_it(tmp_path):
    """The suite reads VSR's rows from the package: a copy of the tracked files, alone in a folder (no ../shared, no
    variable), runs the tests that read every split file and the relation table."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    clone = tmp_path / "alone" / "clone"
    for name in filter(None, files.decode().split("\0")):
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    env = {key: value for key, value in lmms_eval_env().items() if not key.startswith("VSR_")}
    tests = ["tests/unit/vsr_tasks/test_scoring.py", "tests/unit/vsr_tasks/test_data.py"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert " passed" in output and "skipped" not in output and not (tmp_path / "alone" / "shared").exists()


@pytest.mark.parametrize("where", ["a file", "under a file", "unwritable"])
def test_an_attention_log_that_cannot_be_a_folder_is_refused_by_name(tiny_checkpoint, tmp_path, where):
    afile = tmp_path / "records.txt"
    afile.write_text("mine")
    folder, why = {
        "a file": (afile, "a file is there; attention_log names a folder"),
        "under a file": (afile / "log", f"{afile} is a file, so no folder can be made under it"),
        "unwritable": (Path("/proc/no_such_log"), "cannot write there"),  # /proc refuses new folders, even to root
    }[where]
    with pytest.raises(ValueError, match=re.escape(f"attention_log={folder}: {why}")):
        Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", attention_log=str(folder))
    assert afile.read_text() == "mine"


def test_a_device_that_is_not_here_is_refused_before_any_weight_loads(tiny_checkpoint, tmp_path):
    """The checkpoint has no weights file: a refusal that comes after loading would name that instead."""
    config_only = shutil.copytree(tiny_checkpoint, tmp_path / "config_only")
    (config_only / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"^device=cuda: there is no such device here; the devices here: cpu$"):
        Qwen3VL(pretrained=str(config_only), device="cuda")
    with pytest.raises(ValueError, match=r"^device=cuda:3: there is no such device here"):
        Qwen3VL(pretrained=str(config_only), device="cuda:3")
    with pytest.raises(ValueError, match=r"^device=gpu: not a device name; the devices here: cpu$"):
        Qwen3VL(pretrained=str(config_only), device="gpu")


def test_an_answer_cache_that_cannot_be_a_folder_is_refused_by_name(tiny_checkpoint, tmp_path):
    afile = tmp_path / "answers.txt"
    afile.write_text("")
    with pytest.raises(ValueError, match=re.escape(f"answer_cache={afile}: a file is there")):
        Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", answer_cache=str(afile))


@pytest.mark.parametrize(
    ("model", "arguments", "message"),
    [
        ("vlm_pai", "alpha=-0.1", r"^vlm_pai: alpha must be a finite number >= 0 \(0: no attention edit\), got -0.1$"),
        ("vlm_pai", "gamma=strong", r"^vlm_pai: gamma must be a finite number >= 0 \(1: no guidance\), got 'strong'$"),
        ("vlm_pai", "gamma=nan", r"^vlm_pai: gamma must be a finite number >= 0 \(1: no guidance\), got nan$"),
        ("vlm_pai", "gamma=inf", r"^vlm_pai: gamma must be a finite number >= 0 \(1: no guidance\), got inf$"),
        (
            "vlm_pai",
            "start_layer=2,end_layer=9",
            r"\[2, 9\) leaves the model, which has 4 layers: start_layer in "
            r"\[0, 3\], end_layer in \[start_layer \+ 1, 4\]$",
        ),
        (
            "vlm_pai",
            "start_layer=3,end_layer=3",
            r"^vlm_pai: the layer range \[start_layer, end_layer\) = \[3, 3\) is "
            r"empty: end_layer must be above start_layer \(or none: the model's depth\)$",
        ),
        ("vlm_pai", "start_layer=1.5", r"^vlm_pai: start_layer must be a whole number >= 0, got 1.5$"),
        ("vlm_vaf", "enh_para=0", r"^vlm_vaf: enh_para must be a finite number > 0 \(1: no change\), got 0$"),
        ("vlm_vaf", "sup_para=-1", r"^vlm_vaf: sup_para must be a finite number > 0 \(1: no change\), got -1.0$"),
        ("vlm_vaf", "enh_para=inf", r"^vlm_vaf: enh_para must be a finite number > 0 \(1: no change\), got inf$"),
        ("vlm_vaf", "end_layer=3", r"\[9, 3\) is empty: end_layer must be above start_layer"),
        ("vlm_vaf", "start_layer=0", r"\[0, 15\) leaves the model, which has 4 layers"),  # the authors' 9-14
    ],
)
def test_pai_and_vaf_refuse_a_bad_value_before_any_weight_loads(tiny_checkpoint, tmp_path, model, arguments, message):
    """The checkpoint has no weights file: a refusal that comes after loading would name that instead."""
    from plugin import model_class

    config_only = shutil.copytree(tiny_checkpoint, tmp_path / "config_only")
    (config_only / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=message):
        model_class(model).create_from_arg_string(f"pretrained={config_only},device=cpu,{arguments}")
