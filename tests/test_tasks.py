from __future__ import annotations

import pytest

from xpe_bench.errors import UserInputError
from xpe_bench.paths import resolve_data_root
from xpe_bench.tasks import TaskData, builtin_task_specs


@pytest.fixture(scope="module")
def sib200():
    return {spec.name: spec for spec in builtin_task_specs()}["sib200"]


def test_loads_official_split_sizes(sib200, data_root):
    data = TaskData(sib200, data_root)
    sizes = {split: len(data.load("kat_Geor", split)) for split in ("train", "dev", "test")}
    assert sizes == {"train": 701, "dev": 99, "test": 204}
    example = data.load("eng_Latn", "test")[0]
    assert set(example) == {"lang", "id", "text", "label"}
    assert example["lang"] == "eng_Latn" and 0 <= example["label"] < 7
    assert "sib200/eng_Latn/test.tsv" in data.fingerprints


def test_texts_with_quotes_are_read_verbatim(sib200, data_root):
    """SIB-200 must be read without quote processing: a quoted text keeps its quote characters."""
    data = TaskData(sib200, data_root)
    raw_lines = (data_root / "sib200/eng_Latn/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = data.load("eng_Latn", "train")["text"]
    assert len(texts) == len(raw_lines)
    assert texts == [line.split("\t")[2] for line in raw_lines]
    assert any('"' in text for text in texts)


def test_missing_file_names_the_file(mock_spec, mock_data):
    (mock_data / "mock/aaa_Latn/dev.tsv").unlink()
    with pytest.raises(UserInputError, match=r"missing data file .*aaa_Latn/dev\.tsv"):
        TaskData(mock_spec, mock_data).load("aaa_Latn", "dev")


def test_wrong_columns(mock_spec, mock_data):
    path = mock_data / "mock/aaa_Latn/test.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(["id\tcategory\ttext", *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"test\.tsv:1: wrong columns: missing \['label'\]"):
        TaskData(mock_spec, mock_data).load("aaa_Latn", "test")


def test_unknown_label_names_file_and_line(mock_spec, mock_data):
    path = mock_data / "mock/aaa_Latn/test.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[5].split("\t")
    lines[5] = "\t".join([fields[0], "cooking", fields[2]])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"test\.tsv:6: unknown label 'cooking'; valid labels: animal"):
        TaskData(mock_spec, mock_data).load("aaa_Latn", "test")


def test_bytes_that_are_not_utf8_name_file_line_and_offset(mock_spec, mock_data):
    """Offsets count the byte-order mark too, so they match what a hex editor shows."""
    path = mock_data / "mock/aaa_Latn/test.tsv"
    raw = b"\xef\xbb\xbf" + path.read_bytes()
    offset = raw.index(b"\n", raw.index(b"\n", raw.index(b"\n") + 1) + 1) + 3  # on the 4th line
    path.write_bytes(raw[:offset] + b"\xff" + raw[offset + 1 :])
    pattern = rf"test\.tsv:4: not valid UTF-8 \(byte 0xff at offset {offset}\)"
    with pytest.raises(UserInputError, match=pattern):
        TaskData(mock_spec, mock_data).load("aaa_Latn", "test")
    path.write_bytes(raw)  # with a byte-order mark and nothing else wrong, it loads
    assert len(TaskData(mock_spec, mock_data).load("aaa_Latn", "test")) > 0


def test_empty_split(mock_spec, mock_data):
    path = mock_data / "mock/aaa_Latn/train.tsv"
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="empty split"):
        TaskData(mock_spec, mock_data).load("aaa_Latn", "train")


def test_data_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XPE_BENCH_DATA", str(tmp_path))
    assert resolve_data_root() == tmp_path.resolve()
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    assert resolve_data_root(explicit) == explicit.resolve()
    with pytest.raises(UserInputError, match=r"--data-dir: data directory .* does not exist"):
        resolve_data_root(tmp_path / "nope")
    monkeypatch.setenv("XPE_BENCH_DATA", str(tmp_path / "missing"))
    with pytest.raises(UserInputError, match=r"\$XPE_BENCH_DATA"):
        resolve_data_root()


def test_hub_path_is_used_without_local_root(sib200, monkeypatch):
    """Without a data root the hub dataset is asked for (unreachable here: a clear error, not a crash)."""
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    with pytest.raises(UserInputError, match="could not load Davlan/sib200"):
        TaskData(sib200, None).load("eng_Latn", "dev")
    assert calls == [("Davlan/sib200", "eng_Latn", "validation")]


def test_hub_class_label_ids_are_mapped_by_name(sib200, monkeypatch):
    """Hub datasets may store labels as ClassLabel ids in their own order: map by name, not by position."""
    import datasets

    hub_order = list(reversed(sib200.labels))
    fake = datasets.Dataset.from_dict(
        {"index_id": [7, 9], "category": [0, 6], "text": ["a", "b"]},
        features=datasets.Features(
            {
                "index_id": datasets.Value("int64"),
                "category": datasets.ClassLabel(names=hub_order),
                "text": datasets.Value("string"),
            }
        ),
    )
    monkeypatch.setattr("datasets.load_dataset", lambda *args, **kwargs: fake)
    loaded = TaskData(sib200, None).load("eng_Latn", "test")
    assert loaded["id"] == ["7", "9"]
    assert [sib200.labels[i] for i in loaded["label"]] == [hub_order[0], hub_order[6]]
