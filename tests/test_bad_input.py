"""Every kind of bad input: exit 2, one line on stderr saying what is wrong, no traceback, nothing written.

One table, one test. A case is the command line (``{runs}``, ``{data}`` and ``{budget}`` stand for a runs
folder, a data root and a budget file under the test's temporary folder), the text its message must hold and,
where the input is a file or a state of the machine, what to set up first. After each case the temporary
folder must hold exactly what was there before: no run directory, inside ``{runs}`` or escaped from it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpe_bench.cli import app
from xpe_bench.paths import safe_name_part

BASE = ["run", "--backbone", "tiny-random", "--budget", "smoke"]
RUN = [*BASE, "--sources", "eng_Latn", "--targets", "eng_Latn"]
"""A valid, fast run; a case appends what makes it bad (a repeated option's last value wins)."""
BUDGET_HEAD = 'name = "mine"\nversion = 1\n'


def _budget(body: str) -> str:
    return BUDGET_HEAD + body


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    message: str
    budget: str | None = None
    """The text of the ``{budget}`` file."""
    prepare: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    """Builds the case's files or machine state: (temporary folder, monkeypatch)."""


def _data_root(tmp: Path, broken: Callable[[bytes], bytes] | None = None) -> None:
    """``{data}``: SIB-200's English files, the training file passed through ``broken``."""
    from xpe_bench.paths import resolve_data_root

    source = resolve_data_root() / "sib200" / "eng_Latn"
    target = tmp / "data" / "sib200" / "eng_Latn"
    target.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        raw = (source / f"{split}.tsv").read_bytes()
        (target / f"{split}.tsv").write_bytes(broken(raw) if broken and split == "train" else raw)


def _bad_byte_on_line_3(raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    lines[2] = lines[2].replace(b"the", b"th\xff", 1)
    return b"\n".join(lines)


def _unknown_label_on_line_2(raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    lines[1] = lines[1].replace(b"geography", b"astrology", 1)
    return b"\n".join(lines)


def _runs_is_a_file(tmp: Path, _: pytest.MonkeyPatch) -> None:
    (tmp / "runs").write_text("not a folder\n")


def _runs_read_only(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: be a user for whom 0555 means read-only
        real_access = os.access

        def access(path: Path, mode: int, **kwargs: object) -> bool:
            denied = Path(path) == runs and mode & os.W_OK
            return not denied and real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)


def _disk_full(_: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("xpe_bench.store.atomic_write_bytes", full)


CASES = [
    # path traversal through every user-supplied part of a run directory's name
    Case(
        "traversal-budget-name",
        [*RUN, "--budget", "{budget}"],
        "budget name 'x/../../../escaped' must be 1-64 letters",
        budget='name = "x/../../../escaped"\nversion = 1\nmax_steps = 1\n',
    ),
    Case("traversal-task", [*RUN, "--task", "../../escaped"], "unknown task '../../escaped'"),
    Case("traversal-method", [*RUN, "--method", "../../escaped"], "unknown method '../../escaped'"),
    Case("traversal-backbone", [*RUN, "--backbone", "x/../../escaped"], "hub id it is not valid either"),
    Case("traversal-regime", [*RUN, "--regime", "../../escaped"], "--regime: '../../escaped'; valid:"),
    Case("traversal-sources", [*RUN, "--sources", "../../escaped"], "--sources: '../../escaped' is neither"),
    Case("traversal-targets", [*RUN, "--targets", "../../escaped"], "--targets: '../../escaped' is neither"),
    # budgets: presets, files, fields, types, values, overrides
    Case("budget-unknown-preset", [*RUN, "--budget", "huge"], "unknown budget 'huge'; use: paper, "),
    Case("budget-file-missing", [*RUN, "--budget", "{tmp}/none.toml"], "none.toml' does not exist"),
    Case("budget-not-toml", [*RUN, "--budget", "{budget}"], "is not valid TOML", budget="name = \n"),
    Case(
        "budget-no-version",
        [*RUN, "--budget", "{budget}"],
        "a budget needs a name and a version",
        budget='name = "x"\n',
    ),
    Case(
        "budget-unknown-field",
        [*RUN, "--budget", "{budget}"],
        "unknown budget fields ['bogus']; valid:",
        budget=_budget("max_steps = 1\nbogus = 3\n"),
    ),
    Case(
        "budget-steps-and-epochs",
        [*RUN, "--budget", "{budget}"],
        "exactly one of max_steps and epochs must be set",
        budget=_budget(""),
    ),
    Case(
        "budget-max-steps-text",
        [*RUN, "--budget", "{budget}"],
        "max_steps must be an integer or unset, not 'ten' (str)",
        budget=_budget('max_steps = "ten"\n'),
    ),
    Case(
        "budget-batch-size-float",
        [*RUN, "--budget", "{budget}"],
        "batch_size must be an integer, not 2.5 (float)",
        budget=_budget("max_steps = 1\nbatch_size = 2.5\n"),
    ),
    Case(
        "budget-bool-as-int",
        [*RUN, "--budget", "{budget}"],
        "select_best must be true or false, not 1 (int)",
        budget=_budget("max_steps = 1\nselect_best = 1\n"),
    ),
    Case(
        "budget-float-as-text",
        [*RUN, "--budget", "{budget}"],
        "warmup_ratio must be a finite number, not '0.1' (str)",
        budget=_budget('max_steps = 1\nwarmup_ratio = "0.1"\n'),
    ),
    Case(
        "budget-epochs-nan",
        [*RUN, "--budget", "{budget}"],
        "epochs must be a finite number or unset, not nan (float)",
        budget=_budget("epochs = nan\n"),
    ),
    Case(
        "budget-optional-int-as-float",
        [*RUN, "--budget", "{budget}"],
        "early_stopping_patience must be an integer or unset, not 2.0 (float)",
        budget=_budget("max_steps = 1\nearly_stopping_patience = 2.0\n"),
    ),
    Case(
        "budget-learning-rates-text",
        [*RUN, "--budget", "{budget}"],
        "learning_rates must be a table of role -> number, e.g. { head = 1e-3 }, not 'fast' (str)",
        budget=_budget('max_steps = 1\nlearning_rates = "fast"\n'),
    ),
    Case(
        "budget-learning-rate-negative",
        [*RUN, "--budget", "{budget}"],
        "learning_rates must be >= 0, not for ['head']",
        budget=_budget("max_steps = 1\nlearning_rates = { head = -1e-3 }\n"),
    ),
    Case(
        "budget-learning-rate-malformed-role",
        [*RUN, "--budget", "{budget}"],
        "learning_rates has malformed role names ['Foo-Bar']",
        budget=_budget('max_steps = 1\nlearning_rates = { "Foo-Bar" = 1.0 }\n'),
    ),
    Case(
        "budget-learning-rate-missing-role",
        [*RUN, "--budget", "{budget}"],
        "budget 'mine' sets no learning rate for method 'spt''s role(s) 'prompt', 'prompt_encoder' (it sets",
        budget=_budget("max_steps = 1\nlearning_rates = { foo = 1.0, head = 1.0 }\n"),
    ),
    Case(
        "budget-unknown-optimizer",
        [*RUN, "--budget", "{budget}"],
        "optimizer must be one of 'adafactor', 'adamw', not 'sgd' (str)",
        budget=_budget('max_steps = 1\noptimizer = "sgd"\n'),
    ),
    Case(
        "budget-warmup-out-of-range",
        [*RUN, "--budget", "{budget}"],
        "warmup_ratio must be in [0, 1)",
        budget=_budget("max_steps = 1\nwarmup_ratio = 1.5\n"),
    ),
    Case("override-dropout-kernel", [*RUN, "--dropout-kernel", "fused"], "dropout_kernel must be one of"),
    Case("override-precision", [*RUN, "--precision", "fp16"], "precision must be one of 'fp32', 'bf16'"),
    Case("override-max-steps", [*RUN, "--max-steps", "0"], "max_steps must be >= 1"),
    # method options
    Case("option-unknown-method", [*RUN, "--method", "magic"], "unknown method 'magic'"),
    Case("option-no-value", [*RUN, "--option", "novalue"], "must look like key=value"),
    Case("option-unknown", [*RUN, "-o", "bogus=1"], "method 'spt' has no option(s) ['bogus']"),
    Case(
        "option-not-an-int", [*RUN, "-o", "num_tokens=ten"], "option spt.num_tokens: 'ten' is not a valid int"
    ),
    Case(
        "option-num-tokens-negative",
        [*RUN, "-o", "num_tokens=-3"],
        "option spt.num_tokens: '-3'; valid: >= 1",
    ),
    Case("option-ratio-above-1", [*RUN, "-o", "ratio=2.5"], "option spt.ratio: '2.5'; valid: in [0.0, 1.0]"),
    Case("option-ratio-nan", [*RUN, "-o", "ratio=nan"], "option spt.ratio: 'nan'; valid: in [0.0, 1.0]"),
    Case(
        "option-dropout-1",
        [*RUN, "--method", "xpe", "-o", "xpe_dropout=1"],
        "option xpe.xpe_dropout: '1'; valid: in [0.0, 1.0)",
    ),
    Case("option-read", [*RUN, "-o", "read=last"], "option spt.read: 'last'; valid: one of first, cls"),
    Case(
        "option-table-role",
        [*RUN, "--method", "xpe", "-o", "xpe_table_role=head"],
        "option xpe.xpe_table_role: 'head'; valid: one of prompt, prompt_encoder",
    ),
    Case(
        "option-bool",
        [*RUN, "--method", "full-ft", "-o", "freeze_embeddings=maybe"],
        "option full-ft.freeze_embeddings: 'maybe' is not a valid bool",
    ),
    Case(
        "option-pooling",
        [*RUN, "--method", "head-only", "-o", "pooling=max"],
        "option head-only.pooling: 'max'; valid: one of mean, first",
    ),
    Case(
        "option-scoring",
        [*RUN, "--method", "zero-shot", "-o", "scoring=magic"],
        "option zero-shot.scoring: 'magic'; valid: one of auto, embedding, cloze",
    ),
    Case(
        "option-template",
        [*RUN, "--method", "zero-shot", "-o", "template=Topic:"],
        "option zero-shot.template: 'Topic:'; valid: a text with exactly one <mask>",
    ),
    Case(
        "option-lora-rank",
        [*RUN, "--method", "lora", "-o", "r=0"],
        "option lora.r: '0'; valid: >= 1",
    ),
    Case(
        "option-lora-target-modules",
        [*RUN, "--method", "lora", "-o", "target_modules=query,nosuch"],
        "option lora.target_modules: ['nosuch'] match no module of tiny-random; valid: module names",
    ),
    Case(
        "option-lora-alpha",
        [*RUN, "--method", "lora", "-o", "alpha=0"],
        "option lora.alpha: '0'; valid: >= 1",
    ),
    Case(
        "option-lora-dropout",
        [*RUN, "--method", "lora", "-o", "dropout=1"],
        "option lora.dropout: '1'; valid: in [0.0, 1.0)",
    ),
    Case(
        "option-lora-empty-list",
        [*RUN, "--method", "lora", "-o", "target_modules=,"],
        "option lora.target_modules: ','; valid: a non-empty comma list of module names",
    ),
    Case(
        "option-peft-prompt-init",
        [*RUN, "--method", "peft-prompt", "-o", "init=text"],
        "option peft-prompt.init: 'text'; valid: one of random, sample_vocab",
    ),
    Case(
        "option-ia3-feedforward",
        [*RUN, "--method", "ia3", "-o", "feedforward_modules=query"],
        "option ia3.feedforward_modules: ['query'] are not in target_modules",
    ),
    Case(
        "option-replay-source",
        [*RUN, "--method", "replay", "-o", "source=gpt-5"],
        "option replay.source: 'gpt-5'; valid: one of gpt-4, gpt-3.5",
    ),
    Case(
        "option-replay-folder",
        [*RUN, "--method", "replay", "-o", "predictions_dir={tmp}/none"],
        "none' does not exist",
    ),
    # seeds
    Case("seed-text", [*RUN, "--seed", "one"], "--seed: 'one' is not an integer"),
    Case("seed-negative", [*RUN, "--seed", "-5"], "--seed: -5 is out of range; valid: 0 to 4294967295"),
    Case(
        "seed-too-large",
        [*RUN, "--seed", "99999999999999999999"],
        "--seed: 99999999999999999999 is out of range; valid: 0 to 4294967295",
    ),
    Case("seed-empty", [*RUN, "--seed", ","], "--seed: give at least one seed"),
    # languages
    Case("targets-empty", [*RUN, "--targets", ""], "--targets: empty selection; give a group name or"),
    Case("targets-comma", [*RUN, "--targets", ","], "--targets: empty selection; give a group name or"),
    Case("sources-empty", [*RUN, "--sources", ""], "--sources: empty selection; give a group name or"),
    Case(
        "targets-unknown", [*RUN, "--targets", "xx_Zzzz"], "--targets: 'xx_Zzzz' is neither a language code"
    ),
    Case("languages-unknown-group", ["languages", "--group", "nope"], "neither a language code nor a group"),
    Case(
        "languages-joshi",
        ["languages", "--joshi", "9"],
        "--joshi: '9'; valid: 0, 1, 2, 3, 4, 5, unclassified",
    ),
    # regimes
    Case(
        "regime-supervised-no-init",
        [*BASE, "--regime", "supervised", "--targets", "eng_Latn"],
        "--regime supervised needs --init-from RUN_DIR",
    ),
    Case(
        "regime-supervised-sources",
        [*RUN, "--regime", "in-language"],
        "--sources is not used with --regime in-language",
    ),
    Case(
        "regime-init-from-zero-shot",
        [*RUN, "--init-from", "{tmp}"],
        "--init-from is only used with --regime supervised",
    ),
    # tasks, data and backbones
    Case("task-unknown", [*RUN, "--task", "nope"], "unknown task 'nope'"),
    Case("data-dir-missing", [*RUN, "--data-dir", "{tmp}/none"], "--data-dir: data directory"),
    Case(
        "data-not-utf8",
        [*RUN, "--data-dir", "{data}"],
        "eng_Latn/train.tsv:3: not valid UTF-8 (byte 0xff at offset",
        prepare=lambda tmp, _: _data_root(tmp, _bad_byte_on_line_3),
    ),
    Case(
        "data-unknown-label",
        [*RUN, "--data-dir", "{data}"],
        "eng_Latn/train.tsv:2: unknown label 'astrology'; valid labels:",
        prepare=lambda tmp, _: _data_root(tmp, _unknown_label_on_line_2),
    ),
    Case(
        "data-file-missing",
        [*RUN, "--data-dir", "{data}", "--targets", "deu_Latn"],
        "missing data file",
        prepare=lambda tmp, _: _data_root(tmp),
    ),
    Case(
        "backbone-unknown",
        [*RUN, "--backbone", "no-such-org/no-such-model"],
        "backbone 'no-such-org/no-such-model' is not a registered name",
    ),
    # the runs folder and the disk
    Case(
        "runs-dir-is-a-file",
        [*RUN],
        "--runs-dir: '{runs}' is a file, not a directory",
        prepare=_runs_is_a_file,
    ),
    Case(
        "runs-dir-under-a-file",
        [*RUN, "--runs-dir", "{runs}/sub"],
        "--runs-dir: '{runs}/sub' lies under '{runs}', which is a file",
        prepare=_runs_is_a_file,
    ),
    Case("runs-dir-read-only", [*RUN], "--runs-dir: '{runs}' is not writable", prepare=_runs_read_only),
    Case(
        "runs-dir-under-read-only",
        [*RUN, "--runs-dir", "{runs}/sub"],
        "--runs-dir: '{runs}/sub' cannot be created: '{runs}' is not writable",
        prepare=_runs_read_only,
    ),
    Case(
        "disk-full",
        [*RUN],
        "No space left on device; nothing finished was lost (every file is written whole or not at all): "
        "free some space and rerun the same command to resume",
        prepare=_disk_full,
    ),
]


def _fill(text: str, tmp: Path) -> str:
    for name, path in (("runs", "runs"), ("data", "data"), ("budget", "budget.toml")):
        text = text.replace(f"{{{name}}}", str(tmp / path))
    return text.replace("{tmp}", str(tmp))


def _tree(root: Path) -> set[Path]:
    """Every file and the folders above them (an empty --runs-dir folder is not a write)."""
    files = {path for path in root.rglob("*") if path.is_file()}
    return files | {parent for path in files for parent in path.parents if root in parent.parents}


NEEDS_DATA = {
    "traversal-backbone",
    "data-not-utf8",
    "data-unknown-label",
    "data-file-missing",
    "backbone-unknown",
    "disk-full",
    "option-replay-folder",
}
"""Cases that reach SIB-200's data files (copied from the mirror, or read before the backbone is loaded)."""


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case.id, marks=[pytest.mark.data] if case.id in NEEDS_DATA else [])
        for case in CASES
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"  # deep enough that an escaped run directory still lands in tmp_path
    work.mkdir(parents=True)
    if case.budget is not None:
        (work / "budget.toml").write_text(case.budget)
    if case.prepare is not None:
        case.prepare(work, monkeypatch)
    args = [_fill(arg, work) for arg in case.args]
    if args[0] == "run" and "--runs-dir" not in args:
        args += ["--runs-dir", str(work / "runs")]
    before = _tree(tmp_path)

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and _fill(case.message, work) in lines[0], lines[0]
    assert _tree(tmp_path) == before


def test_every_listed_class_of_option_rule_is_exercised(registry):
    """The table reaches every option rule a built-in method declares (a new rule needs a case)."""
    covered = {(arg.split("=")[0]) for case in CASES for arg in case.args if "=" in arg and "{" not in arg}
    declared = {key for spec in registry.methods.values() for key in spec.rules}
    assert declared <= covered


def test_a_run_label_of_unsafe_parts_stays_directly_inside_runs_dir(tmp_path):
    for unsafe in ("x/../../../escaped", "..", "/abs/path", "a\x00b", "", "über model", "a\\b"):
        label = "-".join(["sib200", safe_name_part(unsafe), "s1"])
        assert (tmp_path / label).resolve().parent == tmp_path.resolve(), unsafe
        assert set(label) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"), unsafe
    assert safe_name_part("org/model") == "org_model" and safe_name_part("quick-1.2_x") == "quick-1.2_x"


@pytest.mark.data
def test_a_backbone_folder_with_dots_and_slashes_runs_inside_runs_dir(tmp_path, cache_dir):
    from xpe_bench.backbones import prepare_tiny_random

    folder = prepare_tiny_random(cache_dir)
    odd = tmp_path / "my models" / "tiny"
    odd.parent.mkdir()
    shutil.copytree(folder, odd)
    runs = tmp_path / "deep" / "runs"
    runs.parent.mkdir()
    backbone = f"{tmp_path}/deep/../my models/tiny"
    result = CliRunner().invoke(
        app, [*RUN, "--backbone", backbone, "--runs-dir", str(runs), "--targets", "eng_Latn"]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    assert run_dir.parent == runs and "/" not in run_dir.name and " " not in run_dir.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "my models"]


@pytest.mark.data
def test_a_full_disk_mid_run_keeps_every_finished_file(tmp_path, monkeypatch):
    """ENOSPC while predicting a new language: one line, exit 2, the finished files unchanged, and the same
    command resumes once there is space."""
    from xpe_bench import store

    runs = tmp_path / "runs"
    first = CliRunner().invoke(app, [*RUN, "--runs-dir", str(runs)])
    assert first.exit_code == 0, first.output
    (run_dir,) = runs.iterdir()
    finished = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}

    real_write = store.atomic_write_bytes

    def full_for_new_predictions(path: Path, data: bytes) -> None:
        if path.name == "deu_Latn.jsonl":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", full_for_new_predictions)
    more = [*RUN, "--targets", "eng_Latn,deu_Latn", "--runs-dir", str(runs)]
    full = CliRunner().invoke(app, more)
    assert full.exit_code == 2, full.output
    (line,) = full.stderr.splitlines()
    assert line.startswith("error: No space left on device writing ") and "deu_Latn.jsonl" in line
    assert "rerun the same command to resume" in line
    for path, data in finished.items():
        if path.name != "manifest.json":  # the manifest records progress; the results are untouched
            assert path.read_bytes() == data, path

    monkeypatch.setattr(store, "atomic_write_bytes", real_write)
    resumed = CliRunner().invoke(app, more)
    assert resumed.exit_code == 0, resumed.output
    assert "reused stored predictions for 1 languages" in resumed.output
    assert (run_dir / "predictions" / "eng_Latn.jsonl").read_bytes() == finished[
        run_dir / "predictions" / "eng_Latn.jsonl"
    ]
