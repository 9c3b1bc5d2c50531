from __future__ import annotations

import numpy as np

from xpe_bench.training import collate, encode, epoch_batches, inference_batches, length_grouped_batches


def test_length_grouping_covers_every_example_once_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    batches = length_grouped_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(
        len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches))
    )
    assert padded < 0.8 * random_padded  # grouping by length saves real padding


def test_epoch_stream_is_reproducible_for_resume():
    lengths = np.arange(100)
    a = epoch_batches(lengths, 8, seed=3)
    first = [next(a) for _ in range(30)]
    b = epoch_batches(lengths, 8, seed=3)
    for _ in range(17):
        next(b)
    assert all(np.array_equal(x, y) for x, y in zip(first[17:], [next(b) for _ in range(13)], strict=True))


def test_inference_batches_sorted_longest_first():
    lengths = np.array([3, 9, 1, 7])
    assert [b.tolist() for b in inference_batches(lengths, 2)] == [[1, 3], [0, 2]]


class _CharTokenizer:
    def __call__(self, texts, truncation, max_length, padding, return_attention_mask):
        return {"input_ids": [[0, *[ord(c) % 50 + 4 for c in t][: max_length - 2], 2] for t in texts]}


def test_encode_truncates_and_collate_pads_dynamically():
    encoded = encode(_CharTokenizer(), ["abc", "a" * 100], [1, 2], prefix="q: ", max_length=10)
    assert encoded.lengths.tolist() == [8, 10]
    ids, mask, labels = collate(encoded, [0], pad_id=1)
    assert ids.shape == (1, 8) and mask.sum() == 8
    ids, mask, labels = collate(encoded, [0, 1], pad_id=1)
    assert ids.shape == (2, 10)
    assert ids[0, 8:].tolist() == [1, 1] and mask[0].tolist() == [1] * 8 + [0, 0]
    assert labels.tolist() == [1, 2]


def test_encode_of_no_texts_is_empty():
    encoded = encode(_CharTokenizer(), [], [], prefix="q: ", max_length=10)
    assert len(encoded) == 0 and encoded.lengths.tolist() == []
