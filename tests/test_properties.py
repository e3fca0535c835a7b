"""Property-based checks over random batch sizes, lengths and padding: padding invariance, batched == row by
row, save/load equality, for every family."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForTokenClassification

from conftest import FAMILIES, model_class, tiny_config

MODELS = {}


def model(family):
    if family not in MODELS:
        torch.manual_seed(0)
        MODELS[family] = model_class(family, "ForTokenClassification")(tiny_config(family)).eval()
    return MODELS[family]


batches = st.lists(st.integers(min_value=1, max_value=24), min_size=1, max_size=4)
property_settings = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def padded_batch(lengths, extra_padding, seed, left=()):
    """Token ids and mask for sequences of `lengths`, padded on the left for the rows in `left`."""
    generator = torch.Generator().manual_seed(seed)
    width = min(max(lengths) + extra_padding, 24)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        span = slice(width - length, width) if row in left else slice(0, length)
        ids[row, span] = torch.randint(5, 99, (length,), generator=generator)
        mask[row, span] = 1
    return ids, mask


@pytest.mark.parametrize("family", FAMILIES)
@property_settings
@given(lengths=batches, extra_padding=st.integers(0, 8), seed=st.integers(0, 2**16), left=st.sets(st.integers(0, 3)))
def test_padded_batch_equals_each_sequence_alone(family, lengths, extra_padding, seed, left):
    """Right, left, or mixed padding: every sequence's outputs equal those it gets alone."""
    net = model(family)
    ids, mask = padded_batch(lengths, extra_padding, seed, left)
    with torch.no_grad():
        batched = net(ids, attention_mask=mask, output_hidden_states=True)
        for row in range(len(lengths)):
            real = mask[row].bool()
            alone = net(ids[row : row + 1, real], output_hidden_states=True)
            torch.testing.assert_close(batched.logits[row, real], alone.logits[0], atol=1e-5, rtol=1e-5)
            for padded_layer, alone_layer in zip(batched.hidden_states, alone.hidden_states):
                torch.testing.assert_close(padded_layer[row, real], alone_layer[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=batches, seed=st.integers(0, 2**16))
def test_save_load_preserves_outputs(family, lengths, seed, tmp_path_factory):
    net = model(family)
    ids, mask = padded_batch(lengths, 0, seed)
    path = tmp_path_factory.mktemp("checkpoint")
    net.save_pretrained(path)
    reloaded = AutoModelForTokenClassification.from_pretrained(path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids, attention_mask=mask).logits, net(ids, attention_mask=mask).logits,
                                   atol=0, rtol=0)
