"""Bad input fails with a message that names what to fix (variable, path, file:line, argument)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import lmms_eval.models  # noqa: F401  (registers the VSR task folder)
import pytest
from lmms_eval.tasks import TaskManager

from models.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import lmms_eval_env, run_lmms_eval
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
    shutil.copytree(vsr_data_dir / "splits", broken / "splits")
    dev = broken / "splits" / "random" / "dev.jsonl"
    lines = dev.read_text().splitlines()
    lines[2] = lines[2][:-10]  # truncated JSON on line 3
    dev.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("VSR_DATA_DIR", str(broken))
    with pytest.raises(VSRDataError, match=r"dev\.jsonl:3: not valid JSON"):
        _load("vsr_random_dev")


def test_row_missing_a_field_names_the_field(monkeypatch, vsr_data_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(vsr_data_dir / "splits", broken / "splits")
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


def test_without_the_real_vsr_files_the_suite_stops_once_naming_the_variable(tmp_path):
    env = {**lmms_eval_env(), "VSR_SHARED_DIR": str(tmp_path / "absent")}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/vsr_tasks/test_scoring.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 4, output[-2000:]
    assert output.count("Set VSR_SHARED_DIR to a folder holding VSR's splits/") == 1
    assert f"{tmp_path / 'absent' / 'splits'} does not exist" in output and "passed" not in output
