"""Every task runs end to end (train, predict, store) on the tiny random backbone."""

from __future__ import annotations

import pytest

from xpe_bench.budgets import load_budget
from xpe_bench.runner import Runner, RunRequest

pytestmark = pytest.mark.data  # the built-in tasks' real data


@pytest.mark.parametrize(
    ("task", "sources", "targets"),
    [
        ("sib200", "eng_Latn,zho_Hans", "eng_Latn,nqo_Nkoo"),
        ("nusax-senti", "eng,ind", "ace,bbc"),
        ("afrisenti", "hau,swa", "orm,yor"),  # orm is a test-only language: a valid target
    ],
)
def test_task_runs_end_to_end(registry, tmp_path, task, sources, targets):
    request = RunRequest(
        task=task,
        method="xpe",
        budget=load_budget("smoke"),
        seed=1,
        runs_dir=tmp_path,
        backbone="tiny-random",
        sources=sources,
        targets=targets,
    )
    (outcome,) = Runner(registry).execute(request)
    assert sorted(outcome.metrics) == sorted(targets.split(","))
    assert all(m["n"] == 8 for m in outcome.metrics.values())
    num_labels = len(outcome.record.task.labels)
    assert num_labels == (7 if task == "sib200" else 3)
    rows = outcome.store.read_predictions(targets.split(",")[0])
    assert all(len(row["scores"]) == num_labels and 0 <= row["gold"] < num_labels for row in rows)
    assert outcome.record.data.train_examples == 16
