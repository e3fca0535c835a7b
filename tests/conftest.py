"""Shared fixtures: tiny configs of every family so the suite runs in minutes on two CPU cores."""

from pathlib import Path

import pytest
import torch

import fourierformers
from fourierformers import AFNOConfig, FNetHybridConfig, GFNetConfig

CONFIG_CLASSES = {"gfnet": GFNetConfig, "afno": AFNOConfig, "fnet_hybrid": FNetHybridConfig}
FAMILIES = list(CONFIG_CLASSES)
SHARED = Path(__file__).resolve().parents[2] / "shared"


def tiny_config(family, **overrides):
    """A 2-layer, 32-wide config of `family` with no dropout; keyword arguments override any field."""
    fields = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=64,
        max_position_embeddings=24,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        afno_num_blocks=4,
        afno_sparsity_threshold=0.001,
        num_attention_heads=4,
        num_labels=3,
        initializer_range=0.2,
    )
    fields.update(overrides)
    return CONFIG_CLASSES[family](**fields)


def tiny_config_of(config_class, family, **overrides):
    """`tiny_config(family)`'s fields in a config of `config_class` (a custom variant, with its own model_type)."""
    fields = {key: value for key, value in tiny_config(family, **overrides).to_dict().items() if key != "model_type"}
    return config_class(**fields)


class Wrapper(torch.nn.Module):
    """A module wrapped as PEFT wraps one (`modules_to_save`, LoRA layers): calls go to the wrapped module, whose
    attributes it forwards (all, or only those `forwarded`, as a LoRA layer forwards only `weight` and `bias`), plus
    an optional `adapter` added to the output; not an instance of the wrapped class."""

    def __init__(self, module, adapter=None, forwarded=None):
        super().__init__()
        self.wrapped, self.adapter, self.forwarded = module, adapter, forwarded

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if self.forwarded is not None and name not in self.forwarded:
                raise
            return getattr(self.wrapped, name)

    @property
    def base_layer(self):  # as PEFT's adapter layers name the layer they add their update to
        return self.wrapped if self.adapter is not None else None

    def forward(self, *args, **kwargs):
        out = self.wrapped(*args, **kwargs)
        return out if self.adapter is None else out + self.adapter(*args, **kwargs)


def model_class(family, head):
    """The class `<Family><head>`, e.g. model_class("gfnet", "ForMaskedLM") -> GFNetForMaskedLM."""
    prefix = {"gfnet": "GFNet", "afno": "AFNO", "fnet_hybrid": "FNetHybrid"}[family]
    return getattr(fourierformers, prefix + head)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the reference fixtures in {SHARED}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)
