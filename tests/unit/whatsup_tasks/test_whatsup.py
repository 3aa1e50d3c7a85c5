"""WhatsUp as lmms-eval tasks (official files, AdaptVis' protocol), and the AdaptVis paper's VSR protocol."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from local_tasks.adaptvis_split import part_indices, task_lineage
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval
from tests.support.data import write_random_image
from tests.support.whatsup import write_whatsup
from vsr_tasks import adaptvis_protocol
from vsr_tasks.data import load_split
from whatsup_tasks import TASK_NAMES, data, scoring
from whatsup_tasks.prompt import build_question
from whatsup_tasks.subsets import SUBSETS

pytestmark = pytest.mark.slow
LIMIT = 6  # documents of each AdaptVis part evaluated end to end


@pytest.fixture(scope="module")
def whatsup_dir(tmp_path_factory):
    return write_whatsup(tmp_path_factory.mktemp("whatsup") / "data")


# ------------------------------------------------------------ questions, relations, the answer check
def test_questions_are_adaptvis_own():
    # AdaptVis' prompts/Controlled_Images_A_with_answer_four_options.jsonl, row 0, for this caption
    subject, obj = data.objects_of("A beer bottle on a armchair", SUBSETS["whatsup_controlled_a"])
    assert build_question(subject, obj, SUBSETS["whatsup_controlled_a"]) == (
        "Where is the beer bottle in relation to the armchair? Answer with left, right, on or under."
    )
    subject, _ = data.objects_of("A dining table on the bottom", SUBSETS["whatsup_coco_one"])
    assert build_question(subject, None, SUBSETS["whatsup_coco_one"]) == (
        "Where is the dining table in the photo? Answer with left, right, top or bottom."
    )
    subject, obj = data.objects_of("A cart in front of green trees", SUBSETS["whatsup_vg_two"])
    assert (subject, obj) == ("cart", "green trees")
    assert build_question(subject, obj, SUBSETS["whatsup_vg_two"]).endswith(
        "Answer with left, right, front, behind, above or below."
    )


def test_relations_are_read_as_whatsup_reads_them():
    controlled = {"image_path": "data/controlled_images/mug_in-front_of_plate.jpeg"}
    assert data.relation_of(controlled, SUBSETS["whatsup_controlled_b"]) == "front"
    assert data.relation_of({"image_path": "x/mug_on_plate.jpeg"}, SUBSETS["whatsup_controlled_a"]) == "on"
    assert data.relation_of({"image_path": "x/mug_under_plate.jpeg"}, SUBSETS["whatsup_controlled_a"]) == "under"
    assert data.relation_of([1, "A dog on the top", "x"], SUBSETS["whatsup_coco_one"]) == "top"
    assert data.relation_of([1, "A toilet below a sink", "x"], SUBSETS["whatsup_coco_two"]) == "below"
    assert data.relation_of([1, "A lamp on top of a desk", "x"], SUBSETS["whatsup_vg_two"]) == "above"


def test_the_answer_check_is_adaptvis_substring_rule():
    assert scoring.is_correct("On the armchair.", "on") and scoring.is_correct("LEFT", "left")
    assert not scoring.is_correct("It is in front of it, on the floor", "on")  # AdaptVis: "on" and "front": wrong
    assert scoring.is_correct("a phone", "on")  # the substring rule's quirk, kept: the papers' numbers use it
    assert not scoring.is_correct("right", "left")
    assert scoring.predicted_option("It is under, not on", ("left", "right", "on", "under")) == "under"
    records = [{"relation": "left", "correct": True}, {"relation": "left", "correct": False},
               {"relation": "on", "correct": True}]  # fmt: skip
    assert scoring.accuracy(records) == pytest.approx(2 / 3) and scoring.accuracy(records, "left") == 0.5
    assert math.isnan(scoring.accuracy(records, "under"))


# ------------------------------------------------------------ the official files through lmms-eval
def test_the_official_files_load_as_tasks(whatsup_dir, monkeypatch):
    import lmms_eval.models  # noqa: F401  (our entry point adds the task folders, as on the CLI)
    from lmms_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv("WHATSUP_DATA_DIR", str(whatsup_dir))
    manager = TaskManager()
    assert set(TASK_NAMES) | {"whatsup"} <= set(manager.all_tasks)
    loaded = get_task_dict(list(TASK_NAMES), manager)
    for task in TASK_NAMES:
        subset = SUBSETS[task]
        rows = json.loads((whatsup_dir / subset.annotation).read_text())
        documents = loaded[task].eval_docs
        assert len(documents) == len(rows)
        first = rows[0]["caption_options"][0] if subset.rows == "controlled" else rows[0][1]
        assert documents[0]["caption"] == first  # the first option is the correct one
        assert loaded[task].doc_to_text(documents[0]).startswith("Where is the ")
        assert loaded[task].doc_to_visual(documents[0])[0].size == (64, 64)


def test_the_whatsup_group_through_lmms_eval(whatsup_dir, family_checkpoint, tmp_path):
    # the word-level vocabulary: a random model's answers are words, relation words among them (not degenerate)
    checkpoint = family_checkpoint("qwen3_vl", "words")
    output = tmp_path / "run"
    args = ["--model", "qwen3vl", "--model_args", f"pretrained={checkpoint},device=cpu,batch_size=4",
            "--tasks", "whatsup", "--gen_kwargs", "max_new_tokens=12", "--log_samples", "--output_path", str(output)]  # fmt: skip
    completed = run_lmms_eval(args, lmms_eval_env(WHATSUP_DATA_DIR=str(whatsup_dir)))
    results, samples = find_results(output)
    assert results, completed.stderr[-3000:]
    macro = []
    for task in TASK_NAMES:
        subset = SUBSETS[task]
        lines = samples[task]
        # independently: AdaptVis' rule on each answer against the gold relation the task logged as target
        right = {s["doc_id"]: s["target"] in s["filtered_resps"].lower() and not (
            s["target"] == "on" and "front" in s["filtered_resps"].lower()) for s in lines}  # fmt: skip
        reported = results["results"][task]
        assert reported["accuracy,none"] == pytest.approx(sum(right.values()) / len(right))
        for relation in subset.options:
            mine = [right[s["doc_id"]] for s in lines if s["target"] == relation]
            expected = sum(mine) / len(mine) if mine else math.nan
            assert reported[f"accuracy_{relation},none"] == pytest.approx(expected, nan_ok=True), (task, relation)
        macro.append(reported["accuracy,none"])
    assert results["results"]["whatsup"]["accuracy,none"] == pytest.approx(sum(macro) / len(macro))
    assert 0 < sum(macro) and min(macro) < 1  # some answers right, some wrong: the check could tell them apart


def test_missing_data_names_the_variable_the_file_and_the_image(whatsup_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WHATSUP_DATA_DIR", raising=False)
    with pytest.raises(data.WhatsUpDataError, match="WHATSUP_DATA_DIR is not set: download WhatsUp's data"):
        data.load_documents("whatsup_vg_one")
    with pytest.raises(data.WhatsUpDataError, match=r"vg_qa_one_obj.json is missing"):
        data.load_documents("whatsup_vg_one", tmp_path)
    copy = tmp_path / "copy"
    (copy / "vg_images").mkdir(parents=True)
    (copy / "vg_qa_one_obj.json").write_text((whatsup_dir / "vg_qa_one_obj.json").read_text())
    first = json.loads((whatsup_dir / "vg_qa_one_obj.json").read_text())[0][0]
    with pytest.raises(
        data.WhatsUpDataError, match=rf"12 of the 12 VG_QA_one_obj images are missing \(first: .*{first}\.jpg"
    ):
        data.load_documents("whatsup_vg_one", copy)


# ------------------------------------------------------------ the AdaptVis paper's VSR protocol
# Each AdaptVis dataset's rows (their prompt files' line counts; VSR: the zeroshot test split), the size of the fifth
# it samples for tuning and that sample's first indices, pinned.
ADAPTVIS_SPLITS = {
    "whatsup_controlled_a": (412, 82, [1, 4, 11, 13, 14]),
    "whatsup_controlled_b": (408, 81, [1, 4, 11, 13, 14]),
    "whatsup_coco_one": (2247, 449, [6, 8, 20, 21, 23]),
    "whatsup_coco_two": (440, 88, [1, 4, 11, 13, 14]),
    "whatsup_vg_one": (1160, 232, [3, 4, 11, 17, 18]),
    "whatsup_vg_two": (291, 58, [1, 4, 11, 13, 14]),
    "vsr_zeroshot_test": (1222, 244, [3, 4, 11, 17, 18]),
}


@pytest.mark.parametrize("task", ADAPTVIS_SPLITS)
def test_the_adaptvis_split_is_its_seeded_fifth_and_the_rest(task):
    """Their rule, written again here: seed_all(1), then random.sample over the dataset's rows, sorted."""
    n, size, first = ADAPTVIS_SPLITS[task]
    random.seed(1)
    sampled = sorted(random.sample(range(n), int(0.2 * n)))
    assert part_indices(n, "tune") == sampled and len(sampled) == size and sampled[:5] == first
    rest = part_indices(n, "test")
    assert sorted(rest + sampled) == list(range(n)) and not set(rest) & set(sampled)
    assert task_lineage(f"{task}_adaptvis_tune") == [f"{task}_adaptvis_tune", f"{task}_adaptvis", task]


def test_the_whatsup_parts_are_tasks_with_the_subsets_rows(whatsup_dir, monkeypatch):
    """whatsup_<subset>_adaptvis / _adaptvis_tune: the rows of AdaptVis' parts of the subset, with the whole subset's
    questions; the groups name the six parts."""
    import lmms_eval.models  # noqa: F401
    from lmms_eval.tasks import TaskManager

    monkeypatch.setenv("WHATSUP_DATA_DIR", str(whatsup_dir))
    manager = TaskManager()
    for task in TASK_NAMES:
        loaded = manager.load_task_or_group([task, f"{task}_adaptvis", f"{task}_adaptvis_tune"])
        whole = [dict(doc) for doc in loaded[task].test_docs()]
        for part, name in (("test", f"{task}_adaptvis"), ("tune", f"{task}_adaptvis_tune")):
            expected = [whole[i] for i in part_indices(len(whole), part)]
            assert [dict(doc) for doc in loaded[name].test_docs()] == expected and expected, (task, part)
    for group, suffix in (("whatsup_adaptvis", "_adaptvis"), ("whatsup_adaptvis_tune", "_adaptvis_tune")):
        [(config, members)] = manager.load_task_or_group([group]).items()
        assert config.group == group and sorted(members) == sorted(t + suffix for t in TASK_NAMES)


def test_the_adaptvis_f1_is_the_harmonic_mean_of_tpr_and_tnr():
    records = [adaptvis_protocol.score_record(answer, label, "left of", "Projective")
               for answer, label in (("Yes", 1), ("Yes.", 1), ("No", 1), ("No", 0), ("Yes", 0), ("yes", 0))]  # fmt: skip
    # TPR 2/3; TNR 1/3 ("yes" lower-case is not "No": wrong for a False caption, as AdaptVis checks)
    assert adaptvis_protocol.tpr_tnr_harmonic_mean(records) == pytest.approx(2 * (2 / 3) * (1 / 3) / 1.0)
    assert records[5]["prediction"] is None and not records[5]["correct"]


def test_the_adaptvis_vsr_task_through_lmms_eval(vsr_data_dir, tiny_checkpoint, tmp_path):
    rows = load_split("zeroshot", "test", vsr_data_dir)
    parts = {part: [rows[i] for i in part_indices(len(rows), part)][:LIMIT] for part in ("test", "tune")}
    rng = np.random.default_rng(0)
    for row in parts["test"] + parts["tune"]:  # the fixture has images for the split's first rows only
        if not (vsr_data_dir / "images" / row["image"]).exists():
            write_random_image(vsr_data_dir / "images" / row["image"], rng)
    output = tmp_path / "run"
    args = ["--model", "qwen3vl", "--model_args", f"pretrained={tiny_checkpoint},device=cpu,batch_size=4",
            "--tasks", "vsr_zeroshot_test_adaptvis,vsr_zeroshot_test_adaptvis_tune", "--gen_kwargs",
            "max_new_tokens=3", "--limit", str(LIMIT), "--log_samples", "--output_path", str(output)]  # fmt: skip
    completed = run_lmms_eval(args, lmms_eval_env(vsr_data_dir))
    assert list(output.rglob("*_results.json")), completed.stderr[-3000:]
    results, samples = find_results(output)
    for task, part in (("vsr_zeroshot_test_adaptvis", "test"), ("vsr_zeroshot_test_adaptvis_tune", "tune")):
        expected_rows = parts[part]
        lines = sorted(samples[task], key=lambda s: s["doc_id"])
        assert len(lines) == len(expected_rows)
        assert all(expected["caption"] in s["input"] for s, expected in zip(lines, expected_rows))
        assert lines[0]["input"].startswith(adaptvis_protocol.PROMPT)
        labels = [int(r["label"]) for r in expected_rows]
        right = [("Yes" in s["filtered_resps"]) if y else ("No" in s["filtered_resps"]) for s, y in zip(lines, labels)]
        reported = results["results"][task]
        assert reported["accuracy,none"] == pytest.approx(sum(right) / len(right))
        tpr = sum(r for r, y in zip(right, labels) if y) / max(1, labels.count(1))
        tnr = sum(r for r, y in zip(right, labels) if not y) / max(1, labels.count(0))
        harmonic = 2 * tpr * tnr / (tpr + tnr) if tpr + tnr else 0.0
        assert reported["tpr_tnr_harmonic_mean,none"] == pytest.approx(harmonic)


def test_adaptvis_prompt_files_replace_the_rebuilt_questions_row_for_row(whatsup_dir, tmp_path, monkeypatch):
    """With ADAPTVIS_PROMPTS_DIR, each document asks the question of its row in AdaptVis' file (their turn
    stripped), their irregular rows included; a file with another number of rows is refused naming both."""
    import lmms_eval.models  # noqa: F401
    from lmms_eval.tasks import TaskManager, get_task_dict

    from whatsup_tasks.prompt import prompt_file

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    expected = {}
    for task in TASK_NAMES:
        subset = SUBSETS[task]
        rows = json.loads((whatsup_dir / subset.annotation).read_text())
        expected[task] = [f"Where is thing {i} in relation to the table? Answer with left, right, above, or below.."
                          for i in range(len(rows))]  # fmt: skip
        lines = [json.dumps({"id": i, "question": f"<image>\nUSER: {q}\nASSISTANT:", "answer": "x"})
                 for i, q in enumerate(expected[task])]  # fmt: skip
        (prompts / prompt_file(subset)).write_text("\n".join(lines) + "\n")
    assert prompt_file(SUBSETS["whatsup_vg_one"]) == "VG_QA_one_obj_with_answer_six_options.jsonl"
    monkeypatch.setenv("WHATSUP_DATA_DIR", str(whatsup_dir))
    monkeypatch.setenv("ADAPTVIS_PROMPTS_DIR", str(prompts))
    loaded = get_task_dict(list(TASK_NAMES), TaskManager())
    for task in TASK_NAMES:
        documents = loaded[task].eval_docs
        assert [loaded[task].doc_to_text(document) for document in documents] == expected[task]
    short = SUBSETS["whatsup_coco_one"]
    path = prompts / prompt_file(short)
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(
        data.WhatsUpDataError, match=f"{prompt_file(short)} has {len(expected['whatsup_coco_one']) - 1} questions"
    ):
        get_task_dict(["whatsup_coco_one"], TaskManager())


def test_the_rendered_whatsup_input_is_llavas_turn_around_their_question(whatsup_dir, family_checkpoint, monkeypatch):
    """What LLaVA-1.5 reads for a WhatsUp document: the chat template's turn around AdaptVis' question. Theirs is
    the raw text '<image>\\nUSER: QUESTION\\nASSISTANT:' (their prompt files): the remaining difference, documented."""
    import lmms_eval.models  # noqa: F401
    from lmms_eval.tasks import TaskManager, get_task_dict
    from transformers import AutoProcessor

    from families.turns import images_first, render_user_turn

    monkeypatch.setenv("WHATSUP_DATA_DIR", str(whatsup_dir))
    monkeypatch.delenv("ADAPTVIS_PROMPTS_DIR", raising=False)
    task = get_task_dict(["whatsup_controlled_a"], TaskManager())["whatsup_controlled_a"]
    document = task.eval_docs[0]
    question = task.doc_to_text(document)
    assert (
        question
        == f"Where is the {document['subject']} in relation to the {document['object']}? Answer with left, right, on or under."
    )
    processor = AutoProcessor.from_pretrained(str(family_checkpoint("llava")))
    rendered = render_user_turn(processor, images_first(question, task.doc_to_visual(document)).content)
    assert rendered == f"USER: <image>\n{question} ASSISTANT:"
