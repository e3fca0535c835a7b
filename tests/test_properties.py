"""Property-based checks over random batch sizes, lengths and padding: padding invariance, batched == row by
row, save/load equality, for every family; and over random image grids (1-D signals, images, volumes; any patch
size that tiles the input): batched == image by image and save/load equality."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForImageClassification, AutoModelForTokenClassification

from conftest import FAMILIES, model_class, tiny_config

MODELS = {}


def model(family):
    if family not in MODELS:
        torch.manual_seed(0)
        MODELS[family] = model_class(family, "ForTokenClassification")(tiny_config(family)).eval()
    return MODELS[family]


batches = st.lists(st.integers(min_value=1, max_value=24), min_size=1, max_size=4)
property_settings = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


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


IMAGE_MODELS = {}


@st.composite
def image_geometries(draw):
    """(spatial_dims, patch_size, grid): a grid of 1 to 6 tokens per axis (1 to 3 for volumes) of patches of 1 to 4
    pixels, so the input (patch_size * grid per axis) always tiles."""
    spatial_dims = draw(st.sampled_from([1, 2, 3]))
    largest = 3 if spatial_dims == 3 else 6
    grid = tuple(draw(st.integers(1, largest)) for _ in range(spatial_dims))
    return spatial_dims, draw(st.integers(1, 4)), grid


def image_model(family, geometry):
    """An image classifier of `family` whose input is `patch_size * grid` pixels per axis (cached per geometry)."""
    if (family, geometry) not in IMAGE_MODELS:
        spatial_dims, patch_size, grid = geometry
        torch.manual_seed(0)
        config = tiny_config(family, image_size=[patch_size * n for n in grid], patch_size=patch_size,
                             spatial_dims=spatial_dims, num_channels=2, mixer_layout=None)
        IMAGE_MODELS[family, geometry] = model_class(family, "ForImageClassification")(config).eval()
    return IMAGE_MODELS[family, geometry]


def random_pixels(model, batch_size, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, model.config.num_channels, *model.config.image_shape, generator=generator)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(geometry=image_geometries(), batch_size=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_image_batch_equals_each_image_alone(family, geometry, batch_size, seed):
    net = image_model(family, geometry)
    pixel_values = random_pixels(net, batch_size, seed)
    with torch.no_grad():
        batched = net(pixel_values=pixel_values, output_hidden_states=True)
        for row in range(batch_size):
            alone = net(pixel_values=pixel_values[row : row + 1], output_hidden_states=True)
            torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=1e-5, rtol=1e-5)
            for batched_layer, alone_layer in zip(batched.hidden_states, alone.hidden_states):
                torch.testing.assert_close(batched_layer[row], alone_layer[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(geometry=image_geometries(), batch_size=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_image_save_load_preserves_outputs(family, geometry, batch_size, seed, tmp_path_factory):
    net = image_model(family, geometry)
    pixel_values = random_pixels(net, batch_size, seed)
    path = tmp_path_factory.mktemp("image_checkpoint")
    net.save_pretrained(path)
    reloaded = AutoModelForImageClassification.from_pretrained(path).eval()
    assert reloaded.config.image_shape == net.config.image_shape
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, net(pixel_values=pixel_values).logits,
                                   atol=0, rtol=0)
