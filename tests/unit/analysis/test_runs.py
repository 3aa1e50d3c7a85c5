"""The analysis' readers against the hand-written runs and attention logs of ``tests.support.runs``."""

from __future__ import annotations

import numpy as np

from analysis.runs import load_runs
from models.attention_log import read_attention_log
from tests.support.runs import make_documents, write_attention_log, write_run


def test_synthetic_run_reads_back(tmp_path):
    documents = make_documents([1, 0, 1], [True, None, False])
    write_run(tmp_path, "qwen3vl", "pretrained=/ckpt,attention_log=/nowhere", {"vsr_random_dev": documents})
    (run,) = load_runs([tmp_path])
    assert run.model == "qwen3vl" and run.args == {"pretrained": "/ckpt", "attention_log": "/nowhere"}
    docs = run.tasks["vsr_random_dev"].documents
    assert [docs[i].correct for i in range(3)] == [True, False, False]
    assert docs[1].prediction is None and docs[2].relation == "on" and docs[2].category == "Topological"
    assert docs[0].caption == "The cat number 0 is left of the dog." and docs[0].image == "000000000000.jpg"
    assert run.tasks["vsr_random_dev"].metrics["accuracy,none"] == 1 / 3


def test_synthetic_attention_log_reads_back(tmp_path):
    write_attention_log(tmp_path, "qwen3vl_adaptvis", "vsr_random_dev", [0, 1], before=True)
    write_attention_log(tmp_path, "qwen3vl", "vsr_random_dev", [0], rank=1)
    log = read_attention_log(tmp_path, model="qwen3vl_adaptvis")
    assert sorted(log.records) == [("vsr_random_dev", 0), ("vsr_random_dev", 1)]
    record = log.get("vsr_random_dev", 1)
    np.testing.assert_allclose(record.image_mass + record.text_mass, 1.0)
    np.testing.assert_allclose(record.image_mass_before, record.image_mass / 2)
    maps = log.maps(record)
    assert maps["after_0"].shape == (4, 3, 4) and maps["after_0"].dtype == np.float16
    np.testing.assert_allclose(maps["after_0"].astype(np.float64).sum(axis=(1, 2)), record.image_mass, rtol=2e-3)
    assert sorted(read_attention_log(tmp_path, model="qwen3vl").records) == [("vsr_random_dev", 0)]
