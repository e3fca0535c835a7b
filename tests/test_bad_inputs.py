"""Bad inputs at every public entry point, one table per entry point: config constructors, model constructors and
forwards (text and pixels), `from_pretrained`, the checkpoint converters and the example command lines. Each row
names the exception type and a pattern the message must match: what is wrong and what is allowed. Failing
converters and examples must leave their output directory absent or as it was (`atomic_directory`)."""

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tokenizers
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    FNetConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

from conftest import FAMILIES, model_class, tiny_config, tiny_config_of
from fourierformers import (
    AdaLNZero,
    AdaptiveMixer,
    AFNOConfig,
    AFNOMixer,
    CrossAttention,
    FourierMixer,
    GFNetConfig,
    GFNetForImageClassification,
    GFNetForSequenceClassification,
    GFNetModel,
    GlobalFilter,
    MultiscaleMixer,
)
from fourierformers.atomic_directory import atomic_directory, work_dir_for
from fourierformers.configuration.configuration_spectral import SpectralConfig
from fourierformers.patch_embedding import resize_model_to_image_size

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "examples"))

import convert_original_afno  # noqa: E402
import convert_original_gfnet  # noqa: E402
import convert_transformers_fnet  # noqa: E402
import original_checkpoint  # noqa: E402
import run_image_classification  # noqa: E402
import run_mlm  # noqa: E402
import run_text_classification  # noqa: E402
import run_token_classification  # noqa: E402
from test_fnet_conversion import save_tiny_fnet  # noqa: E402

# Config constructors, every family. `afno` rows set an AFNO layout so the AFNO fields are in use.

AFNO_LAYOUT = dict(mixer_layout=["afno", "afno"])
IMAGE = dict(image_size=16, patch_size=4, mixer_layout=None)
CONFIG_ROWS = [
    (dict(vocab_size=0), r"`vocab_size` must be a positive integer, got 0"),
    (dict(hidden_size="64"), r"`hidden_size` must be a positive integer, got '64'"),
    (dict(num_hidden_layers=True), r"`num_hidden_layers` must be a positive integer, got True"),
    (dict(intermediate_size=1.5),
     r"`intermediate_size` must be a positive integer, or 0 for blocks without an MLP, got 1.5"),
    (dict(max_position_embeddings=0), r"`max_position_embeddings` must be a positive integer"),
    (dict(hidden_act="swishy"), r"`hidden_act` must be one of \[.*'gelu'.*\], got 'swishy'"),
    (dict(position_embedding_type="rope"), r"one of \['absolute', 'sinusoidal', 'none'\], got 'rope'"),
    (dict(pooling="first"), r"`pooling` must be one of \['cls', 'mean', 'max', 'attention'\], got 'first'"),
    (dict(pooling="attention", num_attention_heads=5),
     r"`num_attention_heads` \(5\) must be a positive divisor of `hidden_size` \(32\)"),
    (dict(fourier_norm="unitary"), r"`fourier_norm` must be one of \['backward', 'ortho', 'forward'\]"),
    (dict(filter_activation="relu"), r"`filter_activation` must be one of \['identity', 'sigmoid', 'tanh'\]"),
    (dict(hidden_dropout_prob=1.0), r"`hidden_dropout_prob` must be a number in \[0, 1\), got 1.0"),
    (dict(attention_probs_dropout_prob="0.1"), r"`attention_probs_dropout_prob` must be a number in \[0, 1\)"),
    (dict(classifier_dropout=-0.1), r"`classifier_dropout` must be a number in \[0, 1\)"),
    (dict(layer_norm_eps=0), r"`layer_norm_eps` must be a positive number, got 0"),
    (dict(initializer_range=-1), r"`initializer_range` must be a number > 0"),
    (dict(initializer_range=0.0), r"`initializer_range` must be a number > 0, got 0.0"),  # image models crashed
    (dict(layer_scale_init_value="big"), r"`layer_scale_init_value` must be a number or None"),
    (dict(norm_first="yes"), r"`norm_first` must be True or False, got 'yes'"),
    (dict(norm_first=False, mixer_residual=False), r"`mixer_residual=False`.*requires `norm_first=True`; allowed"),
    (dict(type_vocab_size=-1), r"`type_vocab_size` must be an integer >= 0"),
    (dict(pad_token_id=500), r"`pad_token_id` \(500\) must be in \[0, vocab_size=99\)"),
    (dict(num_labels=0), r"`num_labels` must be a positive integer, got 0"),
    (dict(problem_type="ranking"), r"`problem_type` must be one of \[None, 'regression', 'single_label_classif"),
    (dict(mixer_layout="fourier"), r"`mixer_layout` must be a list with one entry per layer or .*'pattern'"),
    (dict(mixer_layout=["fourier"]), r"`mixer_layout` has 1 entries but `num_hidden_layers` is 2"),
    (dict(mixer_layout=["fourier", "wavelet"]), r"`mixer_layout\[1\]` is 'wavelet'; valid mixer names are \["),
    (dict(mixer_layout={"pattern": ["fourier"] * 3}), r"pattern of 3 entries does not divide num_hidden_layers=2"),
    (dict(mixer_layout=[{"strategy": "vote", "mixers": ["fourier", "afno"]}, "fourier"]),
     r"'strategy' in \['adaptive', 'multiscale', 'cascade'\]"),
    (dict(mixer_layout=[{"strategy": "adaptive", "mixers": ["fourier", "attention"], "gate": "max"}, "fourier"]),
     r"'gate' must be one of \['soft', 'hard'\], got 'max'"),
    (dict(mixer_layout=[{"strategy": "cascade", "mixers": ["fourier"]}, "fourier"]),
     r"needs 'mixers': a list of at least two different mixer names from \["),
    (dict(mixer_layout=[{"strategy": "cascade", "mixers": ["fourier", "afno"], "depth": 2}, "fourier"]),
     r"unknown keys \['depth'\]; allowed keys: \['strategy', 'mixers', 'share_norm'\]"),
    (dict(**AFNO_LAYOUT, afno_num_blocks=5), r"`afno_num_blocks` \(5\) must be a positive divisor of `hidden_size`"),
    (dict(**AFNO_LAYOUT, afno_num_blocks=0), r"`afno_num_blocks` must be a positive integer, got 0"),
    (dict(**AFNO_LAYOUT, afno_hidden_size_factor="2"), r"`afno_hidden_size_factor` must be a positive integer"),
    (dict(**AFNO_LAYOUT, afno_sparsity_threshold=-1), r"`afno_sparsity_threshold` must be a number >= 0"),
    (dict(**AFNO_LAYOUT, afno_sparsity_threshold=float("nan")), r"`afno_sparsity_threshold` must be a number >= 0"),
    (dict(**AFNO_LAYOUT, afno_sparsity_threshold=float("inf")), r"`afno_sparsity_threshold` must be a number >= 0"),
    (dict(layer_norm_eps=float("inf")), r"`layer_norm_eps` must be a positive number, got inf"),
    (dict(**AFNO_LAYOUT, afno_num_modes=40), r"`afno_num_modes` must be between 1 and .* = 13"),
    (dict(**AFNO_LAYOUT, afno_num_modes=14), r"`afno_num_modes` must be between 1 and .* = 13 .* got 14"),
    (dict(mixer_layout=["attention", "attention"], num_attention_heads=5),
     r"`num_attention_heads` \(5\) must be a positive divisor of `hidden_size` \(32\)"),
    (dict(condition_type="film"), r"`condition_type` must be one of \[None, 'cross_attention', 'adaln_zero'\]"),
    (dict(num_classes=5), r"`num_classes` is a keyword of the seed libraries .* would ignore it: use `num_"),
    (dict(mlp_ratio=2.0), r"`mlp_ratio` is a keyword of the seed libraries .*: use `afno_hidden_size_factor`"),
    (dict(share_norm=True), r"`share_norm` is a keyword of the seed libraries .*: use the `share_norm` of a cascade"),
    (dict(use_layer1=False), r"`use_layer1` is a keyword of the seed libraries .*: use a `mixer_layout` entry"),
    (dict(r=3), r"`r` is a keyword of the seed libraries .*: use `patch_embed_rank`"),
    (dict(p_w_prime=3), r"`p_w_prime` is a keyword .*p_w cells before its centre and p_w_prime after it, `patch_size` "
                        r"cells here, \(patch_size - 1\) // 2 before the centre; other extents are not carried over"),
    (dict(cd_h=2), r"`cd_h` is .*: use `patch_stride` with `centered_patches=True`, or `packing_strategy`"),
    (dict(use_positional_encoding=False), r"use `position_embedding_type` \('absolute', 'sinusoidal' or 'none'\)"),
    (dict(with_batch_norm=True), r"`with_batch_norm` is a keyword .*: this option is not carried over"),
    (dict(sequence_length=64), r"`sequence_length` is a keyword of the seed libraries .*: use `max_position_emb"),
    (dict(mlp_norm_cfg=None), r"`mlp_norm_cfg` is a keyword .*: use `norm_type` \(a branch that is off has no norm\)"),
    (dict(condition_type="adaln_zero", condition_size=0), r"`condition_size` must be a positive integer or None"),
    (dict(hidden_sizes=[16, 32], depths=[1, 1]),
     r"`hidden_sizes` and `depths` need an image model \(set `image_size`\)"),
    (dict(patch_embed_rank=4), r"`patch_embed_rank` needs an image model"),
    (dict(centered_patches=True), r"`centered_patches` needs an image model"),
    (dict(IMAGE, patch_embed_rank=0), r"`patch_embed_rank` must be a positive integer or None"),
    (dict(IMAGE, patch_embed_rank=32), r"`patch_embed_rank` \(32\) must be below the rank of a full patch kernel, "
                                       r"min\(width 32, num_channels \* patch cells 48\) = 32"),
    (dict(IMAGE, image_size=0), r"`image_size` must be a positive integer or a list of 2 positive integers"),
    (dict(IMAGE, image_size=[16, 16, 16]), r"list of 2 positive integers .*spatial_dims=2\), got \[16, 16, 16\]"),
    (dict(IMAGE, image_size=32.0), r"`image_size` must be a positive integer or a list of 2 .* got 32.0"),
    (dict(IMAGE, image_size="32"), r"`image_size` must be a positive integer or a list of 2 .* got '32'"),
    (dict(IMAGE, image_size=[16, 16.0]), r"`image_size` must be a positive integer or a list of 2 .* got \[16, 16.0\]"),
    (dict(IMAGE, patch_size=4.0), r"`patch_size` must be a positive integer or a list of 2 .* got 4.0"),
    (dict(IMAGE, patch_stride=True), r"`patch_stride` must be a positive integer or a list of 2 .* got True"),
    (dict(IMAGE, patch_size=32), r"`image_size` \(16, 16\) is smaller than the patch \(32, 32\)"),
    (dict(IMAGE, image_size=18), r"does not tile with patch_size \(4, 4\) and stride \(4, 4\).*multiple of the stride"),
    (dict(IMAGE, patch_shape="cone"), r"`patch_shape` must be one of \['cuboid', 'cylinder', 'sphere'\]"),
    (dict(IMAGE, packing_strategy="hexagonal"), r"'hexagonal' is not defined for patch_shape='cuboid'; allowed: \["),
    (dict(IMAGE, patch_stride=2, packing_strategy="dense_square"), r"at most one of `patch_stride` and `packing_str"),
    (dict(IMAGE, packing_strategy="dense_square", centered_patches=False),
     r"`packing_strategy` places its patches centred.*must be True or None"),
    (dict(IMAGE, patch_stride=2, centered_patches="yes"), r"`centered_patches` must be True, False or None"),
    (dict(IMAGE, spatial_dims=4), r"`spatial_dims` must be 1, 2 or 3, got 4"),
    (dict(IMAGE, num_channels=0), r"`num_channels` must be a positive integer, got 0"),
    (dict(IMAGE, num_output_channels=0), r"`num_output_channels` must be a positive integer or None"),
    (dict(IMAGE, hidden_sizes=[16, 32]), r"needs both `hidden_sizes` and `depths`"),
    (dict(IMAGE, hidden_sizes=[16, 32], depths=[1, 2]), r"`num_hidden_layers` \(2\) must equal sum\(depths\) = 3"),
    (dict(IMAGE, hidden_sizes=[16, 64], depths=[1, 1]), r"must equal the last stage width hidden_sizes\[-1\] \(64\)"),
    (dict(IMAGE, image_size=12, hidden_sizes=[16, 32], depths=[1, 1]), r"token grid \(3, 3\), which must be even"),
    (dict(IMAGE, hidden_sizes=[16, 32], depths=[0, 2]), r"`depths` must be a list of positive integers .*\[0, 2\]"),
    (dict(IMAGE, hidden_sizes=[16, 32], depths=[-1, 3]), r"`depths` must be a list of positive integers"),
    (dict(IMAGE, hidden_sizes=[16.5, 32], depths=[1, 1]), r"`hidden_sizes` must be a list of positive integers"),
    (dict(IMAGE, hidden_sizes=[-16, 32], depths=[1, 1]), r"`hidden_sizes` must be a list of positive integers"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[[1, 1], None]), r"`afno_kept_modes\[0\]` must be .* distinct"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[None]), r"one entry .* per frequency axis \(4, 3\)"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[None, [5]]), r"`afno_kept_modes\[1\]` must be .* indices in \[0, 3\)"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[[0, 1.5], None]), r"`afno_kept_modes\[0\]` must be .* integer ind"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[[True, 2], None]), r"`afno_kept_modes\[0\]` must .* \[True, 2\]"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=[["0"], None]), r"`afno_kept_modes\[0\]` must be .* got \['0'\]"),
    (dict(IMAGE, **AFNO_LAYOUT, afno_kept_modes=["01", None]), r"`afno_kept_modes\[0\]` must be .* got '01'"),
    (dict(IMAGE, hidden_sizes=[16, 32], depths=[1, 1], condition_type="adaln_zero"),
     r"`condition_type` is not supported with hierarchical `hidden_sizes`"),
    (dict(IMAGE, hidden_sizes=[12, 32], depths=[1, 1], mixer_layout=["afno", "fourier"], afno_num_blocks=8),
     r"`afno_num_blocks` \(8\) must be a positive divisor of every stage width hidden_sizes=\[12, 32\]"),
    (dict(IMAGE, hidden_sizes=[12, 32], depths=[1, 1], mixer_layout=["attention", "fourier"], num_attention_heads=8),
     r"`num_attention_heads` \(8\) must divide every stage width hidden_sizes=\[12, 32\]"),
    (dict(IMAGE, hidden_sizes=[12, 32], depths=[1, 1], num_attention_heads=8,
          mixer_layout=["fourier", {"strategy": "adaptive", "mixers": ["fourier", "attention"]}]),
     r"`num_attention_heads` \(8\) must divide every stage width"),
    # Fields a text model would store and ignore, and image fields that say nothing an image model can do.
    (dict(patch_stride=2), r"`patch_stride` needs an image model"),
    (dict(packing_strategy="dense_square"), r"`packing_strategy` needs an image model"),
    (dict(num_output_channels=2), r"`num_output_channels` needs an image model"),
    (dict(patch_shape="cone"), r"`patch_shape` must be one of \['cuboid', 'cylinder', 'sphere'\], got 'cone'"),
    (dict(spatial_dims=7), r"`spatial_dims` must be 1, 2 or 3, got 7"),
    (dict(patch_size=0), r"`patch_size` must be a positive integer or a list of 2"),
    (dict(IMAGE, position_embedding_type="none"),
     r"Image models learn a position embedding per grid cell: `position_embedding_type` must be 'absolute'"),
    (dict(IMAGE, afno_kept_modes=[[0, 1], None], afno_num_modes=2),
     r"Give at most one of `afno_kept_modes` .* and `afno_num_modes`"),
    (dict(mixer_layout=["global_filter", "fourier"], afno_num_modes=2),
     r"`afno_num_modes` \(2\) selects the modes of AFNO mixers, and no layer uses one \(mixers \['fourier', 'global_"),
    (dict(IMAGE, mixer_layout=["fourier", "attention"], afno_kept_modes=[[0, 1], None]),
     r"`afno_kept_modes` \(\[\[0, 1\], None\]\) .* add an 'afno' layer to `mixer_layout` or leave"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("overrides,message", CONFIG_ROWS, ids=[str(index) for index in range(len(CONFIG_ROWS))])
def test_config_constructor(family, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(family, **overrides)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_limits_of_the_config_checks_are_allowed(family):
    """The largest values the rows above stop short of, and an image of exactly one patch, build and run."""
    text = tiny_config(family, **AFNO_LAYOUT, afno_num_modes=13)  # every frequency of the 24-token FFT
    model_class(family, "Model")(text).eval()(torch.randint(5, 99, (1, 6)))
    image = model_class(family, "ForImageClassification")(tiny_config(family, **IMAGE, patch_embed_rank=31)).eval()
    assert image(pixel_values=torch.randn(1, 3, 4, 4), interpolate_pos_encoding=True).logits.shape == (1, 3)


# Text forwards: every family x text head. Inputs are built from the tiny config (vocab 99, hidden 32, max length
# 24, 2 token types, 3 labels) and a batch of two 6-token sequences.

TEXT_HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForMaskedLM", "ForQuestionAnswering"]
MODELS = {}


def cached_model(family, head, **overrides):
    key = (family, head, tuple(sorted(overrides.items())))
    if key not in MODELS:
        MODELS[key] = model_class(family, head)(tiny_config(family, **overrides)).eval()
    return MODELS[key]


def ids(low=5, high=99, shape=(2, 6)):
    return torch.randint(low, high, shape)


def with_value(tensor, value):
    tensor = tensor.clone()
    tensor[0, 0] = value
    return tensor


TEXT_ROWS = [
    ("no inputs", lambda: {}, r"Pass exactly one of `input_ids` or `inputs_embeds`"),
    ("both inputs", lambda: dict(input_ids=ids(), inputs_embeds=torch.randn(2, 6, 32)), r"exactly one of"),
    ("ids rank 1", lambda: dict(input_ids=ids()[0]), r"shape \(batch_size, sequence_length\), got \(6,\)"),
    ("ids rank 3", lambda: dict(input_ids=ids()[None]), r"shape \(batch_size, sequence_length\), got \(1, 2, 6\)"),
    ("ids list", lambda: dict(input_ids=ids().tolist()), r"`input_ids` must be a torch.Tensor .*got list"),
    ("ids float", lambda: dict(input_ids=ids().float()), r"int64 or int32 token ids, got dtype torch.float32"),
    ("ids uint8", lambda: dict(input_ids=ids().to(torch.uint8)), r"int64 or int32 token ids, got dtype torch.uint8"),
    ("ids int16", lambda: dict(input_ids=ids().to(torch.int16)), r"int64 or int32 token ids, got dtype torch.int16"),
    ("ids bool", lambda: dict(input_ids=ids() > 50), r"int64 or int32 token ids, got dtype torch.bool"),
    ("id = vocab_size", lambda: dict(input_ids=with_value(ids(), 99)), r"in \[0, vocab_size=99\), got .* to 99"),
    ("negative id", lambda: dict(input_ids=with_value(ids(), -1)), r"in \[0, vocab_size=99\), got values from -1"),
    # the fix for a tokenizer without model_max_length, where the pipelines' truncation=True cuts nothing
    ("too long", lambda: dict(input_ids=ids(shape=(1, 30))),
     r"Sequence length 30 exceeds max_position_embeddings=24; .* max_length=24\)`, or set "
     r"`tokenizer.model_max_length = 24`"),
    # every real token fits, the padding does not: the message names padding as well as truncation
    ("padded too long", lambda: dict(input_ids=ids(shape=(1, 32)), attention_mask=torch.arange(32)[None] < 20),
     r"Sequence length 32 exceeds max_position_embeddings=24; truncate .* pad them to at most that length .*"
     r"`pad_to_multiple_of`"),
    ("empty batch", lambda: dict(input_ids=ids(shape=(0, 6))), r"at least one sequence .* got shape \(0, 6\)"),
    ("embeds width", lambda: dict(inputs_embeds=torch.randn(2, 6, 31)), r"hidden_size=32\), got \(2, 6, 31\)"),
    ("embeds integer", lambda: dict(inputs_embeds=ids(shape=(2, 6, 32))), r"floating-point tensor, got dtype"),
    ("mask shape", lambda: dict(input_ids=ids(), attention_mask=torch.ones(2, 5)),
     r"`attention_mask` must have the shape of the input ids \(2, 6\), got \(2, 5\)"),
    ("mask values", lambda: dict(input_ids=ids(), attention_mask=torch.full((2, 6), 0.5)),
     r"`attention_mask` must hold only 1 \(real token\) and 0 \(padding\)"),
    ("mask empty row", lambda: dict(input_ids=ids(), attention_mask=torch.tensor([[1] * 6, [0] * 6])),
     r"Every row of `attention_mask` needs at least one real token \(a 1\), but 1 of its 2 rows hold none "
     r"\(0-based indices: 1\)"),
    ("mask empty rows", lambda: dict(input_ids=ids(shape=(10, 6)), attention_mask=torch.eye(10, 6)[[9] * 9 + [0]]),
     r"but 9 of its 10 rows hold none \(0-based indices: 0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\)"),
    ("token type = 2", lambda: dict(input_ids=ids(), token_type_ids=with_value(torch.zeros(2, 6, dtype=torch.long), 2)),
     r"`token_type_ids` must be in \[0, 2\) \(type_vocab_size=2\), got 0 to 2"),
    ("token types float", lambda: dict(input_ids=ids(), token_type_ids=torch.zeros(2, 6)),
     r"`token_type_ids` must be an int64 or int32 tensor, got dtype torch.float32"),
    ("token types uint8", lambda: dict(input_ids=ids(), token_type_ids=torch.zeros(2, 6, dtype=torch.uint8)),
     r"`token_type_ids` must be an int64 or int32 tensor, got dtype torch.uint8"),
    ("token types shape", lambda: dict(input_ids=ids(), token_type_ids=torch.zeros(2, 7, dtype=torch.long)),
     r"`token_type_ids` must have the shape of the input ids \(2, 6\), got \(2, 7\)"),
    ("position id = 24", lambda: dict(input_ids=ids(), position_ids=torch.arange(19, 25)[None]),
     r"`position_ids` must be in \[0, max_position_embeddings=24\), got 19 to 24"),
    ("position ids shape", lambda: dict(input_ids=ids(), position_ids=torch.arange(5)[None]),
     r"`position_ids` must have shape \(2 or 1, 6\), got \(1, 5\)"),
    ("pixel_values", lambda: dict(input_ids=ids(), pixel_values=torch.randn(2, 3, 16, 16)),
     r"text model .*pass `input_ids` or `inputs_embeds`, not `pixel_values`"),
    ("interpolate_pos_encoding", lambda: dict(input_ids=ids(), interpolate_pos_encoding=True),
     r"`interpolate_pos_encoding` resizes the position embeddings of image models.*this is a text model"),
    ("condition without branch", lambda: dict(input_ids=ids(), condition=torch.randn(2, 32)),
     r"condition_type=None; set condition_type to 'cross_attention' or 'adaln_zero'"),
]
LABEL_ROWS = {
    "ForSequenceClassification": [
        ("class 7 of 3", lambda: torch.tensor([0, 7]), r"class indices in \[0, 3\) or -100 .* of shape \(2,\), got 7"),
        ("class -1", lambda: torch.tensor([-1, 0]), r"class indices in \[0, 3\) or -100 .*, got -1"),
        ("one label too many", lambda: torch.tensor([0, 1, 2]), r"of shape \(2,\), got shape \(3,\)"),
        ("float class ids", lambda: torch.tensor([0.0, 1.0]),
         r"Multi-label `labels` must be multi-hot floats of shape \(2, num_labels=3\), got \(2,\); single-label"),
        ("multi-hot -100", lambda: torch.tensor([[0.0, 1.0, -100.0], [1.0, 0.0, 0.0]]),
         r"Multi-label `labels` must be values in \[0, 1\] .*got -100.0; binary cross-entropy has no ignored value"),
        ("multi-hot 5", lambda: torch.tensor([[0.0, 1.0, 5.0], [1.0, 0.0, 0.0]]), r"values in \[0, 1\] .*got 5.0"),
        ("multi-hot NaN", lambda: torch.tensor([[0.0, 1.0, float("nan")], [1.0, 0.0, 0.0]]),
         r"values in \[0, 1\] .*got nan"),
        ("list", lambda: [0, 1], r"`labels` must be a torch.Tensor with one row per example, got list"),
    ],
    "ForTokenClassification": [
        ("tag 5 of 3", lambda: torch.full((2, 6), 5), r"class indices in \[0, 3\) or -100 .* of shape \(2, 6\), got 5"),
        ("one tag too many", lambda: torch.zeros(2, 7, dtype=torch.long), r"of shape \(2, 6\), got shape \(2, 7\)"),
        ("float tags", lambda: torch.zeros(2, 6), r"integer class indices .* got dtype torch.float32"),
    ],
    "ForMaskedLM": [
        ("token 200 of 99", lambda: torch.full((2, 6), 200), r"class indices in \[0, 99\) or -100 .*, got 200"),
        ("boolean labels", lambda: torch.ones(2, 6, dtype=torch.bool), r"integer class indices .* dtype torch.bool"),
    ],
}
SPAN = r"integer token indices in \[0, 6\) of shape \(2,\) or \(2, 1\) \(positions >= 6 and -100 are ignored\)"
SPAN_ROWS = [
    ("start only", lambda: dict(start_positions=torch.tensor([0, 1])),
     r"Pass both `start_positions` and `end_positions` for the span loss, or neither"),
    ("end only", lambda: dict(end_positions=torch.tensor([0, 1])), r"Pass both .* or neither"),
    ("negative start", lambda: dict(start_positions=torch.tensor([0, -1]), end_positions=torch.tensor([0, 1])),
     rf"`start_positions` must be {SPAN}, got -1"),
    ("float end", lambda: dict(start_positions=torch.tensor([0, 1]), end_positions=torch.tensor([0.0, 1.0])),
     rf"`end_positions` must be {SPAN}, got dtype torch.float32"),
    ("end shape", lambda: dict(start_positions=torch.tensor([0, 1]), end_positions=torch.tensor([[0, 1]])),
     rf"`end_positions` must be {SPAN}, got shape \(1, 2\)"),
    ("list start", lambda: dict(start_positions=[0, 1], end_positions=torch.tensor([0, 1])),
     rf"`start_positions` must be {SPAN}, got list"),
]


def choices(shape=(2, 3, 6)):
    return torch.randint(5, 99, shape)


CHOICE_ROWS = [
    ("no inputs", lambda: {}, r"Pass `input_ids` of shape \(batch_size, num_choices, sequence_length\) or"),
    ("ids rank 2", lambda: dict(input_ids=ids()),
     r"`input_ids` of a multiple-choice model must have shape \(batch_size, num_choices, sequence_length\), got "
     r"\(2, 6\)"),
    ("ids list", lambda: dict(input_ids=choices().tolist()), r"`input_ids` must be a torch.Tensor of shape .*got list"),
    ("embeds rank 3", lambda: dict(inputs_embeds=torch.randn(2, 6, 32)),
     r"`inputs_embeds` .* must have shape \(batch_size, num_choices, sequence_length, hidden_size\), got \(2, 6, 32\)"),
    ("mask of one choice", lambda: dict(input_ids=choices(), attention_mask=torch.ones(2, 6)),
     r"`attention_mask` must have the shape of the choices \(2, 3, 6\) \(batch_size, num_choices, sequence_length\), "
     r"got \(2, 6\)"),
    ("position ids of one row", lambda: dict(input_ids=choices(), position_ids=torch.arange(6)[None]),
     r"`position_ids` must have the shape of the choices \(2, 3, 6\)"),
    ("id = vocab_size", lambda: dict(input_ids=with_value(choices(), 99)), r"in \[0, vocab_size=99\), got .* to 99"),
    ("too long", lambda: dict(input_ids=choices((1, 2, 30))), r"Sequence length 30 exceeds max_position_embeddings=24"),
    ("condition without branch", lambda: dict(input_ids=choices(), condition=torch.randn(2, 32)),
     r"condition_type=None; set condition_type to 'cross_attention' or 'adaln_zero'"),
    ("choice 3 of 3", lambda: dict(input_ids=choices(), labels=torch.tensor([0, 3])),
     r"`labels` must be integer class indices in \[0, 3\) or -100 \(ignored\) of shape \(2,\), got 3"),
    ("one label per choice", lambda: dict(input_ids=choices(), labels=torch.zeros(2, 3, dtype=torch.long)),
     r"of shape \(2,\), got shape \(2, 3\)"),
]
LABEL_NAMES = {"labels", "start_positions", "end_positions"}  # checked by the head, after the backbone ran
TEXT_CASES = [
    pytest.param(family, head, inputs, message, id=f"{family}-{head}-{name}")
    for family in FAMILIES
    for head in TEXT_HEADS
    for name, inputs, message in TEXT_ROWS
] + [
    pytest.param(family, head, lambda labels=labels: dict(input_ids=ids(), labels=labels()), message,
                 id=f"{family}-{head}-labels {name}")
    for family in FAMILIES
    for head, rows in LABEL_ROWS.items()
    for name, labels, message in rows
] + [
    pytest.param(family, "ForQuestionAnswering", lambda spans=spans: dict(input_ids=ids(), **spans()), message,
                 id=f"{family}-ForQuestionAnswering-{name}")
    for family in FAMILIES
    for name, spans, message in SPAN_ROWS
] + [
    pytest.param(family, "ForMultipleChoice", inputs, message, id=f"{family}-ForMultipleChoice-{name}")
    for family in FAMILIES
    for name, inputs, message in CHOICE_ROWS
]


@pytest.mark.parametrize("family,head,inputs,message", TEXT_CASES)
def test_text_forward(family, head, inputs, message, monkeypatch):
    """Bad inputs are refused before any FFT runs: the error is the model's, not one from deep inside a transform
    (labels are checked by the head, after the backbone)."""
    model = cached_model(family, head)
    problem_type = model.config.problem_type
    inputs = inputs()
    ffts = []
    if not LABEL_NAMES & inputs.keys():
        for name in ("rfft", "rfftn", "fft", "fftn"):
            monkeypatch.setattr(torch.fft, name, lambda *args, name=name, **kwargs: ffts.append(name))
    with pytest.raises(ValueError, match=message):
        model(**inputs)
    assert ffts == []
    assert model.config.problem_type == problem_type  # rejected labels do not set the inferred problem type


def test_multiple_choice_refuses_packed_choices():
    """Position ids that restart within a choice (packed sequences, no attention mask) would give the backbone more
    pooled sequences than there are choices to score."""
    position_ids = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 3, 1)
    with pytest.raises(ValueError, match=r"Multiple choice needs one sequence per choice: `position_ids` that restart"):
        cached_model("gfnet", "ForMultipleChoice")(input_ids=choices(), position_ids=position_ids)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", [*TEXT_HEADS, "ForMultipleChoice", "ForImageClassification", "ForPatchRegression",
                                  "ForMaskedImageModeling", "Backbone"])
def test_an_unknown_keyword_is_refused(family, head):
    """A misspelt keyword (`attention_masks`) used to be swallowed by `**kwargs`: the model ran unmasked. The
    backbone takes no other keywords, and the heads pass theirs on to it."""
    if head in TEXT_HEADS or head == "ForMultipleChoice":
        inputs = dict(input_ids=choices() if head == "ForMultipleChoice" else ids())
        model, typo = cached_model(family, head), "attention_masks"
    else:
        extra = dict(num_output_channels=2) if head == "ForPatchRegression" else {}
        model = cached_model(family, head, **IMAGE, num_channels=3, **extra)
        inputs, typo = dict(pixel_values=torch.randn(1, 3, 16, 16)), "interpolate_pos_encodings"
    with pytest.raises(TypeError, match=rf"got an unexpected keyword argument '{typo}'"):
        model(**inputs, **{typo: torch.ones(2, 6)})
    if head == "Model":
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'labels'"):
            model(**inputs, labels=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("num_labels,shape,allowed", [
    (3, (2,), r"shape \(2, num_labels=3\), got \(2,\)"),  # (B,) only fits one label; the message listed it
    (1, (2, 2), r"shape \(2,\) or \(2, num_labels=1\), got \(2, 2\)"),
    (3, (3, 2), r"shape \(2, num_labels=3\), got \(3, 2\)"),  # transposed: a reshape would pair the wrong rows
])
def test_regression_labels_name_only_the_shapes_allowed(num_labels, shape, allowed):
    model = cached_model("gfnet", "ForSequenceClassification", num_labels=num_labels, problem_type="regression")
    with pytest.raises(ValueError, match=rf"Regression `labels` must have {allowed}\.$"):
        model(input_ids=ids(), labels=torch.randn(shape))


def test_a_class_label_equal_to_num_labels_is_refused():
    """The largest index, num_labels, is one past the classes: a clear error, not cross-entropy's IndexError (a
    device assert on GPU)."""
    model = cached_model("gfnet", "ForSequenceClassification")
    with pytest.raises(ValueError, match=r"integer class indices in \[0, 3\) or -100 .*got 3\.$"):
        model(input_ids=ids(), labels=torch.tensor([0, 3]))


@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForImageClassification"])
def test_a_problem_type_assigned_after_the_config_was_made_is_checked(head):
    """The config checks `problem_type` when it is made; a misspelt one assigned afterwards fell through to the
    multi-label branch: binary cross-entropy on regression targets."""
    fields = IMAGE if head == "ForImageClassification" else {}
    model = model_class("gfnet", head)(tiny_config("gfnet", **fields, num_labels=2))
    model.config.problem_type = "regresion"
    inputs = dict(pixel_values=torch.randn(2, 3, 16, 16)) if fields else dict(input_ids=ids())
    with pytest.raises(ValueError, match=r"`config.problem_type` must be one of \[None, 'regression', .*'regresion'"):
        model(**inputs, labels=torch.rand(2, 2))


def test_complex_regression_targets_are_refused():
    """The cast to the predictions' dtype dropped the imaginary part (with only torch's casting warning)."""
    model = cached_model("gfnet", "ForSequenceClassification", num_labels=1, problem_type="regression")
    with pytest.raises(ValueError, match=r"Regression `labels` must be real numbers .*got dtype torch.complex64"):
        model(input_ids=ids(), labels=torch.randn(2, dtype=torch.complex64))
    patches = cached_model("gfnet", "ForPatchRegression", **IMAGE, num_output_channels=2)
    with pytest.raises(ValueError, match=r"Patch regression `labels` must be real numbers .*torch.complex64"):
        patches(pixel_values=torch.randn(2, 3, 16, 16), labels=torch.randn(2, 2, 16, 16, dtype=torch.complex64))


# Pixel forwards and image-head constructors: every family, 16 x 16 RGB images in 4 x 4 patches.

IMAGE_ROWS = [
    ("no pixel_values", lambda: {}, r"image model .*: pass `pixel_values`"),
    ("rank 3", lambda: dict(pixel_values=torch.randn(3, 16, 16)),
     r"`pixel_values` must have shape \(batch_size, num_channels=3, \*\(16, 16\)\) .*got \(3, 16, 16\)"),
    ("rank 5", lambda: dict(pixel_values=torch.randn(1, 2, 3, 16, 16)), r"spatial_dims=2, got \(1, 2, 3, 16, 16\)"),
    ("empty batch", lambda: dict(pixel_values=torch.randn(0, 3, 16, 16)), r"at least one image, got shape \(0, 3,"),
    ("one channel", lambda: dict(pixel_values=torch.randn(2, 1, 16, 16)), r"num_channels=3, .*got \(2, 1, 16, 16\)"),
    ("other image size", lambda: dict(pixel_values=torch.randn(2, 3, 20, 20)),
     r"Input image size \(20, 20\) does not match the model's image_size \(16, 16\).*interpolate_pos_encoding=True"),
    ("size not tiled by the patches",
     lambda: dict(pixel_values=torch.randn(1, 3, 18, 18), interpolate_pos_encoding=True),
     r"Input image size \(18, 18\) does not tile with patch_size \(4, 4\) and stride \(4, 4\) along axis 0"),
    ("size below one patch", lambda: dict(pixel_values=torch.randn(1, 3, 2, 16), interpolate_pos_encoding=True),
     r"Input image size \(2, 16\) does not tile .*at least the patch size"),
    ("pixel list", lambda: dict(pixel_values=torch.randn(1, 3, 16, 16).tolist()),
     r"`pixel_values` must be a torch.Tensor of shape \(batch_size, num_channels=3, \*\(16, 16\)\).*got list"),
    ("input_ids too", lambda: dict(pixel_values=torch.randn(1, 3, 16, 16), input_ids=ids()),
     r"image model .*pass `pixel_values` of shape .* and no text inputs, got \['input_ids'\]"),
    ("attention_mask too", lambda: dict(pixel_values=torch.randn(1, 3, 16, 16), attention_mask=torch.ones(1, 16)),
     r"and no text inputs, got \['attention_mask'\]"),
    ("raw uint8 image", lambda: dict(pixel_values=torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)),
     r"`pixel_values` must be a floating-point tensor \(rescaled and normalised by the image processor\), got "
     r"dtype torch.uint8"),
]
IMAGE_LABEL_ROWS = [
    ("class 9 of 3", lambda: torch.tensor([0, 9]), r"class indices in \[0, 3\) or -100 .* of shape \(2,\), got 9"),
    ("one label too many", lambda: torch.tensor([0, 1, 2]), r"of shape \(2,\), got shape \(3,\)"),
]
IMAGE_CASES = [
    pytest.param(family, head, inputs, message, id=f"{family}-{head}-{name}")
    for family in FAMILIES
    for head in ("Model", "ForImageClassification", "ForMaskedImageModeling", "Backbone")
    for name, inputs, message in IMAGE_ROWS
] + [
    pytest.param(family, "ForImageClassification",
                 lambda labels=labels: dict(pixel_values=torch.randn(2, 3, 16, 16), labels=labels()), message,
                 id=f"{family}-labels {name}")
    for family in FAMILIES
    for name, labels, message in IMAGE_LABEL_ROWS
] + [
    pytest.param(family, "ForPatchRegression",
                 lambda shape=shape: dict(pixel_values=torch.randn(2, 3, 16, 16), labels=torch.randn(shape)),
                 r"`labels` must be a tensor of the predictions' shape \(batch_size, num_output_channels=2, "
                 rf"\*image_size\) = \(2, 2, 16, 16\), got \({', '.join(map(str, shape))}\)",
                 id=f"{family}-regression labels {shape}")
    for family in FAMILIES
    for shape in [(2, 2, 8, 8), (1, 2, 16, 16)]  # the second one would broadcast silently
]


@pytest.mark.parametrize("family,head,inputs,message", IMAGE_CASES)
def test_pixel_forward(family, head, inputs, message):
    extra = dict(num_output_channels=2) if head == "ForPatchRegression" else {}
    model = cached_model(family, head, **IMAGE, num_channels=3, **extra)
    with pytest.raises(ValueError, match=message):
        model(**inputs())


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_names_pixel_values_for_images_given_positionally(family):
    """The heads' first parameter is `pixel_values`, the backbone's `input_ids` (text and images share it)."""
    model = cached_model(family, "Model", **IMAGE, num_channels=3)
    with pytest.raises(ValueError, match=r"got \['input_ids'\] \(images as `input_ids`, .*as `pixel_values=`\)\.$"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"got \['input_ids'\]\.$"):  # token ids: no hint about images
        model(ids())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "head,overrides,message",
    [
        ("ForImageClassification", {}, r"needs an image config: set `image_size` \(and patch_size, num_channels\)"),
        ("ForPatchRegression", {}, r"needs `image_size` and `num_output_channels` in the config"),
        ("ForPatchRegression", dict(IMAGE, num_output_channels=2, patch_stride=2),
         r"needs non-overlapping cuboid patches .* got kernel \(4, 4\), stride \(2, 2\)"),
        ("ForPatchRegression", dict(IMAGE, num_output_channels=2, patch_stride=4, centered_patches=True),
         r"needs non-overlapping cuboid patches .*no packing_strategy or centered_patches.*centered_patches=True"),
        ("ForPatchRegression", dict(IMAGE, num_output_channels=2, hidden_sizes=[16, 32], depths=[1, 1]),
         r"needs non-overlapping cuboid patches .*got kernel \(4, 4\), stride \(4, 4\), .*hidden_sizes=\[16, 32\]"),
        ("ForPatchRegression", dict(IMAGE, num_output_channels=2, hidden_sizes=[32], depths=[2]),
         r"needs non-overlapping cuboid patches on the token grid of a model without stages .*no hidden_sizes, even "
         r"of one stage"),
        ("ForPatchRegression", dict(IMAGE, num_output_channels=2, patch_size=3, packing_strategy="dense_square"),
         r"needs non-overlapping cuboid patches .*packing_strategy='dense_square'"),
        # a 2-pixel patch is centred with no padding, so the 17-pixel image passed and lost its last pixels
        ("ForPatchRegression", dict(IMAGE, image_size=17, patch_size=2, num_output_channels=2, centered_patches=True),
         r"needs non-overlapping cuboid patches .*no packing_strategy or centered_patches"),
        ("ForMaskedLM", IMAGE, r"ForMaskedLM takes token inputs and needs a text config \(no image_size\)"),
        ("ForSequenceClassification", IMAGE, r"takes token inputs and needs a text config .*XForImageClassification"),
        ("ForTokenClassification", IMAGE, r"takes token inputs and needs a text config"),
    ],
)
def test_head_constructor_refuses_configs_it_cannot_use(family, head, overrides, message):
    with pytest.raises(ValueError, match=message):
        model_class(family, head)(tiny_config(family, **overrides))


@pytest.mark.parametrize("head", ["Model", "ForSequenceClassification", "ForImageClassification"])
def test_a_model_class_refuses_a_config_of_another_family(head):
    """It would save an 'afno' config.json under GFNet weight names, which loads back into AFNO classes with every
    backbone weight unexpected (random)."""
    overrides = IMAGE if head == "ForImageClassification" else {}
    with pytest.raises(ValueError, match=rf"GFNet{head} needs a GFNetConfig \(model_type 'gfnet'\), got a AFNOConfig"):
        model_class("gfnet", head)(tiny_config("afno", **overrides))


class UnregisteredGFNetConfig(GFNetConfig):
    model_type = "unregistered_gfnet"


class GFNetConfigOfAFNOType(GFNetConfig):
    model_type = "afno"


class UnregisteredAFNOConfig(AFNOConfig):
    model_type = "unregistered_afno"


@pytest.mark.parametrize("config", [SpectralConfig(), PretrainedConfig(), tiny_config("afno"), GFNetConfigOfAFNOType()],
                         ids=["SpectralConfig", "PretrainedConfig", "another family", "subclass of another's type"])
def test_a_model_class_refuses_a_base_class_of_its_config_or_another_family(config):
    """Base classes of a family's config are not of the family, nor a subclass claiming another family's registered
    type (its checkpoint would load into that family's class); a subclass is, registered (test_modeling.py) or not
    (test_remote_code.py)."""
    with pytest.raises(ValueError, match=rf"GFNetModel needs a GFNetConfig .*, got a {type(config).__name__}"):
        GFNetModel(config)


def test_a_checkpoint_of_an_unregistered_type_needs_its_config(tmp_path):
    """Nothing says what a checkpoint of a type that AutoConfig does not know holds: a family's class refuses it
    without a config, and loads it with one of its classes (the subclass's own class does the same)."""
    model = GFNetModel(tiny_config_of(UnregisteredGFNetConfig, "gfnet")).eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"holds a 'unregistered_gfnet' checkpoint, but GFNetModel loads 'gfnet'"):
        GFNetModel.from_pretrained(tmp_path)
    input_ids = torch.randint(4, 99, (2, 7))
    loaded = GFNetModel.from_pretrained(tmp_path, config=UnregisteredGFNetConfig.from_pretrained(tmp_path)).eval()
    torch.testing.assert_close(loaded(input_ids).last_hidden_state, model(input_ids).last_hidden_state)
    # another family's checkpoint of a type AutoConfig does not know is not of a GFNet config's type
    model_class("afno", "Model")(tiny_config_of(UnregisteredAFNOConfig, "afno")).save_pretrained(tmp_path / "afno")
    with pytest.raises(ValueError, match=r"is a 'gfnet' config, but .* holds a 'unregistered_afno' checkpoint"):
        GFNetModel.from_pretrained(tmp_path / "afno", config=tiny_config("gfnet"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "field, value, inputs, message",
    [
        ("num_labels", 5, lambda: dict(input_ids=ids(), labels=torch.tensor([0, 4])),
         r"class indices in \[0, 3\) or -100"),
        ("vocab_size", 200, lambda: dict(input_ids=with_value(ids(), 150)),
         r"config no longer matches the built model: vocab_size=200 \(the input embeddings hold 99\)"),
        ("max_position_embeddings", 48, lambda: dict(input_ids=ids(shape=(2, 30))),
         r"max_position_embeddings=48 \(built with 24\). Build a new model"),
        # a branch added after building took its condition and ignored it; one removed failed inside the layer
        ("condition_type", "adaln_zero", lambda: dict(input_ids=ids(), condition=torch.randn(2, 32)),
         r"condition_type=adaln_zero \(built with None\)"),
        ("condition_type", None, lambda: dict(input_ids=ids()), r"condition_type=None \(built with adaln_zero\)"),
        ("condition_size", 8, lambda: dict(pixel_values=torch.randn(2, 3, 16, 16), condition=torch.randn(2, 8)),
         r"condition_size=8 \(built with 6\)"),
        # the mixers ran at the changed grid and the patch regression head regrouped pixels by the changed patch:
        # other outputs, no error
        ("patch_size", [2, 8], lambda: dict(pixel_values=torch.randn(2, 3, 16, 16)),
         r"patch_size=\[2, 8\] \(built with 4\)"),
        ("image_size", 32, lambda: dict(pixel_values=torch.randn(2, 3, 32, 32), interpolate_pos_encoding=True),
         r"image_size=32 \(built with 16\)"),
        # the built layers ran as before, and the saved config described other weights
        ("num_hidden_layers", 1, lambda: dict(input_ids=ids()), r"num_hidden_layers=1 \(built with 2\), mixer_layout"),
        ("fourier_norm", "forward", lambda: dict(input_ids=ids()), r"fourier_norm=forward \(built with"),
    ],
)
def test_a_config_changed_after_building_is_not_trusted(family, field, value, inputs, message, tmp_path):
    """The checks read the built model (classifier width, embedding rows, FFT length, condition branch, patches)
    where a changed config field used to let an out-of-range value through to an IndexError inside torch, or
    changed the outputs; saving refuses too, as the config would not describe the weights."""
    fields = {"condition_type": dict(condition_type="adaln_zero") if value is None else {},
              "condition_size": dict(IMAGE, condition_type="adaln_zero", condition_size=6),
              "patch_size": dict(IMAGE, num_output_channels=2), "image_size": IMAGE}.get(field, {})
    head = {"patch_size": "ForPatchRegression"}.get(field, "ForImageClassification" if "image_size" in fields
                                                    else "ForSequenceClassification")
    model = model_class(family, head)(tiny_config(family, **fields))
    setattr(model.config, field, value)
    with pytest.raises(ValueError, match=message):
        model(**inputs())
    if field == "num_labels":  # the loss follows the built classifier, but the saved config would not describe it
        message = r"config.num_labels=5, but the classifier was built with 3 classes: set `config.num_labels` back"
    with pytest.raises(ValueError, match=message):
        model.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())


def test_input_embeddings_replaced_with_another_vocabulary_name_the_fix():
    """The message said the model was built with the new embedding's size and pointed a text model to
    `resize_model_to_image_size`."""
    model = model_class("gfnet", "Model")(tiny_config("gfnet"))
    model.set_input_embeddings(torch.nn.Embedding(150, 32))
    message = (r"vocab_size=99 \(the input embeddings hold 150\)\. Build a new model from the changed config, or "
               r"change the vocabulary with `resize_token_embeddings` \(input embeddings replaced with "
               r"`set_input_embeddings`: set `config.vocab_size` to their size\)\.$")
    with pytest.raises(ValueError, match=message):
        model(input_ids=ids())
    model.config.vocab_size = 150
    assert model(input_ids=with_value(ids(), 149)).last_hidden_state.shape == (2, 6, 32)


def test_a_layout_entry_edited_in_place_after_building_is_refused():
    """The blocks keep copies of their layout entries: a strategy edited in the config's own dict is a change."""
    strategy = {"strategy": "multiscale", "mixers": ["fourier", "attention"], "fusion": "add"}
    model = model_class("fnet_hybrid", "Model")(tiny_config("fnet_hybrid", mixer_layout=[strategy, "fourier"]))
    model.config.mixer_layout[0]["fusion"] = "concat"
    with pytest.raises(ValueError, match=r"mixer_layout=\[\{.*'fusion': 'concat'\}.*\(built with \[\{.*'add'"):
        model(input_ids=ids())


@pytest.mark.parametrize(
    "family, field, value",
    [
        ("gfnet", "hidden_act", "relu"),
        ("afno", "layer_norm_eps", 1e-5),
        ("fnet_hybrid", "norm_type", "rms_norm"),
        ("gfnet", "norm_first", False),
        ("afno", "mixer_residual", False),
        ("fnet_hybrid", "layer_scale_init_value", 0.1),
        ("gfnet", "embedding_layer_norm", False),
        ("afno", "final_layer_norm", False),
        ("fnet_hybrid", "pooling", "max"),
        ("gfnet", "filter_activation", "tanh"),
        ("afno", "afno_activation", "gelu"),
        ("afno", "afno_sparsity_threshold", 0.5),
    ],
)
def test_a_changed_norm_activation_or_wiring_is_refused(family, field, value, tmp_path):
    """These fields build layers (norms, activations, residuals, the pooler): a change after building was saved
    silently, and the reloaded model computed another function than the saved one, or lost or gained weights."""
    model = model_class(family, "ForSequenceClassification")(tiny_config(family))
    setattr(model.config, field, value)
    message = re.escape(f"{field}={value} (built with {model.base_model.built_fields[field]})")
    with pytest.raises(ValueError, match=message):
        model(input_ids=ids())
    with pytest.raises(ValueError, match=message):
        model.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())


X = torch.randn(2, 6, 16)


@pytest.mark.parametrize("call, message", [
    (lambda: AFNOMixer(16, 8, num_blocks=True), r"AFNO num_blocks \(True\) must be a positive divisor of hidden_size"),
    (lambda: AFNOMixer(16, 8, hidden_size_factor=-1), r"AFNO hidden_size_factor must be a positive integer, got -1"),
    (lambda: AFNOMixer(16, 8, hidden_size_factor=1.5), r"AFNO hidden_size_factor must be a positive integer, got 1.5"),
    (lambda: AFNOMixer(16, 8, num_modes=2.5), r"AFNO num_modes must be a positive integer, got 2.5"),
    (lambda: AFNOMixer(16, 8, sparsity_threshold=-1), r"AFNO sparsity_threshold must be a number >= 0, got -1"),
    (lambda: FourierMixer(8.0), r"`fft_shape` must be a positive integer or a sequence of them .*got 8.0"),
    (lambda: GlobalFilter(16, 8)(X, fft_shape=12.0), r"`fft_shape` must be a positive integer .*got 12.0"),
    (lambda: GlobalFilter(16, 8).complex_filter(fft_shape=(0,)), r"`fft_shape` must be a positive .*got \(0,\)"),
    (lambda: AdaptiveMixer([], 16), r"AdaptiveMixer combines at least two mixers, got 0"),
    (lambda: MultiscaleMixer([FourierMixer(8)], 16), r"MultiscaleMixer combines at least two mixers, got 1"),
    (lambda: AdaLNZero(16, 8)(X, torch.randn(2, 4)),
     r"AdaLNZero takes a pooled condition of shape \(batch, condition_size\) = \(2, 8\) .*got \(2, 4\)"),
    (lambda: AdaLNZero(16, 8)(X, torch.randn(1, 8)), r"= \(2, 8\) for x of shape \(2, 6, 16\), got \(1, 8\)"),
    (lambda: CrossAttention(16, 8, 2)(X, torch.randn(2, 3, 4)),
     r"CrossAttention takes a condition of shape \(batch, \*tokens, condition_size\) = \(2, ..., 8\)"),
    (lambda: CrossAttention(16, 8, 2)(X, torch.randn(2, 8)), r"got \(2, 8\)"),
    (lambda: FourierMixer(torch.tensor([8.0])), r"`fft_shape` must be a positive integer .*got tensor\(\[8.\]\)"),
    (lambda: FourierMixer({8, 3}), r"`fft_shape` must be a positive integer or a sequence .*got \{8, 3\}"),
    (lambda: AFNOMixer(16, 8, num_blocks=torch.tensor(4.0)), r"AFNO num_blocks \(tensor\(4.\)\) must be a positive"),
])
def test_layers_used_on_their_own_check_their_arguments(call, message):
    """The layers are public building blocks: their bad arguments failed deep inside torch (a negative dimension,
    softshrink, argmax of nothing, a matmul of the wrong width) or on the first call, where the models' own checks
    do not reach."""
    with pytest.raises(ValueError, match=message):
        call()


def test_layers_take_integers_of_any_type():
    """numpy integers (a shape read from an array) are integers: the argument checks of the layers accept them."""
    afno = AFNOMixer(16, np.array([8]), num_blocks=np.int64(4), hidden_size_factor=np.int64(2), num_modes=np.int64(2))
    assert (afno.fft_shape, afno.num_blocks, afno.num_modes, afno.w1.shape[-1]) == ((8,), 4, 2, 8)
    mixer = GlobalFilter(16, 8)
    torch.testing.assert_close(mixer(X, fft_shape=np.array([12])), mixer(X, fft_shape=(12,)))
    torch.testing.assert_close(mixer(X, fft_shape=range(12, 13)), mixer(X, fft_shape=12))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_text_model_given_an_image_size_after_building_is_refused(family, tmp_path):
    """The checks followed the changed config's kind: a text model became an image config (FNet-hybrid's defaults
    switching to the image ones) and was saved so, beside text weights."""
    model = model_class(family, "ForSequenceClassification")(tiny_config(family))
    model.config.image_size = 16
    with pytest.raises(ValueError, match=r"image_size=16 \(built with None\)"):
        model(input_ids=ids())
    with pytest.raises(ValueError, match=r"image_size=16 \(built with None\)"):
        model.save_pretrained(tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_condition_sequence_is_refused(family):
    model = cached_model(family, "Model", condition_type="cross_attention", condition_size=8)
    with pytest.raises(ValueError, match=r"with at least one condition token, got \(2, 0, 8\)"):
        model(input_ids=ids(), condition=torch.randn(2, 0, 8))


def test_resizing_the_vocabulary_of_an_image_model_or_to_a_negative_size_is_refused():
    with pytest.raises(ValueError, match=r"is an image model: it has patch embeddings, not a token vocabulary"):
        cached_model("gfnet", "ForImageClassification", **IMAGE).resize_token_embeddings(50)
    with pytest.raises(ValueError, match=r"`new_num_tokens` must be a positive integer \(or None\), got -5"):
        model_class("gfnet", "Model")(tiny_config("gfnet", pad_token_id=None)).resize_token_embeddings(-5)


# from_pretrained on checkpoints that cannot give the requested model.


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    GFNetForSequenceClassification(tiny_config("gfnet")).save_pretrained(root / "gfnet")
    model_class("afno", "ForSequenceClassification")(tiny_config("afno")).save_pretrained(root / "afno")
    BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "bert")
    for name, keep in (("truncated", 0.5), ("truncated_header", None)):
        shutil.copytree(root / "gfnet", root / name)
        weights = root / name / "model.safetensors"
        size = weights.stat().st_size
        with open(weights, "r+b") as handle:
            handle.truncate(int(size * keep) if keep else 4)
    shutil.copytree(root / "gfnet", root / "no_weights")
    (root / "no_weights" / "model.safetensors").unlink()
    shutil.copytree(root / "gfnet", root / "edited_config")
    config_file = root / "edited_config" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "max_position_embeddings": 32}))
    shutil.copytree(root / "gfnet", root / "bad_json")
    (root / "bad_json" / "config.json").write_text('{"model_type": "gfnet", ')
    with safe_open(root / "gfnet" / "model.safetensors", framework="pt") as weights:
        names = list(weights.keys())
    for name, index in (("bad_index", '{"weight_map": '), ("index_without_map", '{"metadata": {}}'),
                        ("index_of_numbers", json.dumps({"weight_map": {key: 5 for key in names}})),
                        ("missing_shard", json.dumps({"weight_map": {key: "model-00002-of-00002.safetensors"
                                                                     for key in names}}))):
        shutil.copytree(root / "gfnet", root / name)
        (root / name / "model.safetensors").rename(root / name / "model-00001-of-00002.safetensors")
        (root / name / "model.safetensors.index.json").write_text(index)
    return root


FROM_PRETRAINED_ROWS = [
    ("truncated weights", GFNetForSequenceClassification, "truncated", {}, OSError,
     r"Cannot read the weights in .*model.safetensors \(.*\): the file is truncated or corrupt"),
    ("truncated through Auto", AutoModelForSequenceClassification, "truncated", {}, OSError, r"truncated or corrupt"),
    ("truncated header", GFNetForSequenceClassification, "truncated_header", {}, OSError, r"truncated or corrupt"),
    ("no weights file", GFNetForSequenceClassification, "no_weights", {}, OSError, r"no file named model.safetensors"),
    ("invalid config.json", GFNetForSequenceClassification, "bad_json", {}, OSError, r"not a valid JSON file"),
    ("invalid weight index", GFNetForSequenceClassification, "bad_index", {}, OSError,
     r"Cannot read the weight index .*model.safetensors.index.json \(.*\): it must be JSON with a `weight_map` "
     r"from weight names to shard files"),
    ("weight index without a map", AutoModelForSequenceClassification, "index_without_map", {}, OSError,
     r"Cannot read the weight index .*: it must be JSON with a `weight_map`"),
    ("shard names not strings", GFNetForSequenceClassification, "index_of_numbers", {}, OSError,
     r"Cannot read the weight index .*\(TypeError: shard names must be strings, got \['5'\]\)"),
    ("missing shard", GFNetForSequenceClassification, "missing_shard", {}, OSError,
     r"lists the shard model-00002-of-00002.safetensors, which is not in .*missing_shard"),
    ("missing folder", GFNetForSequenceClassification, "missing", {}, OSError,
     r"No checkpoint folder at .*missing: the directory does not exist"),
    ("another family", GFNetForSequenceClassification, "afno", {}, ValueError,
     r"holds a 'afno' checkpoint, but GFNetForSequenceClassification loads 'gfnet' checkpoints only.*"
     r"AutoModelForSequenceClassification.from_pretrained"),
    ("BERT checkpoint", GFNetModel, "bert", {}, ValueError, r"holds a 'bert' checkpoint, .*AutoModel.from_pretrained"),
    ("config of another family", GFNetForSequenceClassification, "gfnet", dict(config=tiny_config("afno")), ValueError,
     r"`config` is a 'afno' config, but GFNetForSequenceClassification needs a 'gfnet' one \(GFNetConfig\)"),
    ("Auto class with a config of another family", AutoModelForSequenceClassification, "gfnet",
     dict(config=tiny_config("afno")), ValueError,
     r"`config` is a 'afno' config, but .*gfnet holds a 'gfnet' checkpoint; .*Pass a 'gfnet' config, or none"),
    ("image size for a text checkpoint", AutoModelForSequenceClassification, "gfnet", dict(image_size=16), ValueError,
     r"`image_size`=16 applies to image checkpoints, but .*gfnet holds a text model \(its config has no image_size\)"),
    ("wider model", GFNetForSequenceClassification, "gfnet", dict(hidden_size=64, intermediate_size=128), ValueError,
     r"the checkpoint has hidden_size=32, intermediate_size=64, the requested config hidden_size=64, "
     r"intermediate_size=128.*`ignore_mismatched_sizes=True`"),
    ("other num_labels", GFNetForSequenceClassification, "gfnet", dict(num_labels=5), ValueError,
     r"the checkpoint has num_labels=3, the requested config num_labels=5"),
    ("other config object", GFNetForSequenceClassification, "gfnet",
     dict(config=tiny_config("gfnet", max_position_embeddings=32)), ValueError,
     r"checkpoint has max_position_embeddings=24, the requested config max_position_embeddings=32"),
    ("other id2label", GFNetForSequenceClassification, "gfnet", dict(id2label={i: str(i) for i in range(5)}),
     ValueError, r"the checkpoint has num_labels=3, the requested config num_labels=5"),
    ("config.json not of its weights", GFNetForSequenceClassification, "edited_config", {}, ValueError,
     r"do not fit the GFNetForSequenceClassification that its own config.json describes"),
    ("config.json not of its weights", AutoModelForSequenceClassification, "edited_config", {}, ValueError,
     r"do not fit the GFNetForSequenceClassification that its own config.json describes: the config was edited "
     r"after saving, or was saved by a version .*`ignore_mismatched_sizes=True` would re-initialise those weights"),
    # Keyword overrides are set on the loaded config after its own checks; the model constructor checks again.
    ("unknown pooling", AutoModelForSequenceClassification, "gfnet", dict(pooling="bogus"), ValueError,
     r"`pooling` must be one of \['cls', 'mean', 'max', 'attention'\], got 'bogus'"),
    ("dropout of 2", GFNetForSequenceClassification, "gfnet", dict(hidden_dropout_prob=2.0), ValueError,
     r"`hidden_dropout_prob` must be a number in \[0, 1\), got 2.0"),
]


def test_from_pretrained_of_a_missing_relative_folder(tmp_path, monkeypatch):
    """A path that starts at the working directory or its parent names a folder, never a hub repository."""
    monkeypatch.chdir(tmp_path)
    for path in ("./missing", "../missing"):
        shown = re.escape(path.removeprefix("./"))
        with pytest.raises(OSError, match=rf"No checkpoint folder at {shown}: the directory does not exist"):
            GFNetModel.from_pretrained(path)


@pytest.mark.parametrize("name,loader,folder,kwargs,error,message", FROM_PRETRAINED_ROWS,
                         ids=[row[0] for row in FROM_PRETRAINED_ROWS])
def test_from_pretrained(checkpoints, name, loader, folder, kwargs, error, message):
    with pytest.raises(error, match=message):
        loader.from_pretrained(checkpoints / folder, **kwargs)


def test_weights_that_do_not_fit_a_config_given_as_a_path_name_the_fields(checkpoints, tmp_path):
    tiny_config("gfnet", max_position_embeddings=32, num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"the checkpoint has max_position_embeddings=24, the requested config "
                                         r"max_position_embeddings=32"):
        GFNetForSequenceClassification.from_pretrained(checkpoints / "gfnet", config=str(tmp_path))


def test_a_weight_index_left_beside_a_single_weights_file_is_ignored(tmp_path):
    """Saving sharded and then unsharded into one folder leaves the old index (transformers removes only the shards);
    transformers then loads model.safetensors, and so does the pre-load check."""
    model = GFNetForSequenceClassification(tiny_config("gfnet")).eval()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    input_ids = torch.randint(5, 99, (1, 6))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(input_ids).logits, model(input_ids).logits)


# Converters of original checkpoints (GFNet, AFNO-transformer, FourCastNet) on files that are not such checkpoints.


def original_gfnet_keys():
    """The keys (with small, consistent shapes) an original GFNet checkpoint has, as far as the converters look."""
    return {
        "patch_embed.proj.weight": torch.randn(8, 3, 4, 4), "patch_embed.proj.bias": torch.randn(8),
        "pos_embed": torch.randn(1, 16, 8), "blocks.0.mlp.fc1.weight": torch.randn(16, 8),
        "blocks.0.filter.complex_weight": torch.randn(4, 3, 8, 2), "norm.weight": torch.randn(8),
        "head.weight": torch.randn(10, 8), "head.bias": torch.randn(10),
    }


def original_afno_keys():
    state_dict = original_gfnet_keys()
    del state_dict["blocks.0.filter.complex_weight"]
    state_dict["blocks.0.filter.w1"] = torch.randn(2, 2, 4, 4)
    return state_dict


def write_checkpoint(folder, kind):
    """A file of `kind` in `folder`; returns its path."""
    if kind == "missing":
        return folder / "missing.pth"
    if kind == "directory":
        return folder
    path = folder / {"truncated safetensors": "weights.safetensors", "fourierformers": "model.safetensors"}.get(
        kind, "checkpoint.pth")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "truncated torch.save":
        torch.save({"model": original_gfnet_keys()}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "truncated safetensors":
        save_file(original_gfnet_keys(), path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "list":
        torch.save([torch.zeros(1)], path)
    elif kind == "optimizer only":
        torch.save({"optimizer": {"lr": 0.1}}, path)
    elif kind == "unsafe object":
        torch.save({"model": original_gfnet_keys(), "options": SimpleNamespace(lr=0.1)}, path)
    elif kind == "fourierformers":
        GFNetForImageClassification(tiny_config("gfnet", **IMAGE)).save_pretrained(folder)
    elif kind == "GFNet":
        torch.save({"model": original_gfnet_keys()}, path)
    elif kind == "AFNO":
        torch.save({"model": original_afno_keys()}, path)
    return path


CONVERTERS = {
    "GFNet": convert_original_gfnet.convert_gfnet_checkpoint,
    "AFNO": convert_original_afno.convert_afno_checkpoint,
    "FourCastNet": lambda path: convert_original_afno.convert_fourcastnet_checkpoint(path, image_size=(16, 16)),
}
FILE_ROWS = [
    ("missing", FileNotFoundError, r"Checkpoint file .*missing.pth does not exist; pass a torch.save file \(.pth, "),
    ("directory", ValueError, r"is a directory; pass the checkpoint file itself, a torch.save file"),
    ("empty", ValueError, r"Checkpoint file .* is empty; pass a torch.save file \(.pth, .pt, .tar\) or a .safetensors"),
    ("text", ValueError, r"checkpoint.pth is not a checkpoint file: torch.save writes a zip archive .* Pass a "
                         r"torch.save file \(.pth, .pt, .tar\) or a .safetensors file"),
    ("truncated torch.save", ValueError, r"Cannot read .*checkpoint.pth as a torch.save file .*: the file is "
                                         r"truncated"),
    ("truncated safetensors", ValueError, r"Cannot read .*weights.safetensors .*\(SafetensorError: .*truncated"),
    ("list", ValueError, r"holds a list, not a state dict or checkpoint dict"),
    # torch names the type it refuses at the end of a long message, which was cut before it
    ("unsafe object", ValueError, r"(?s)Cannot read .*checkpoint.pth .*UnpicklingError: .*types.SimpleNamespace"),
    ("optimizer only", ValueError, r"not a model state dict: .*under one of \['model', 'model_state', 'state_dict'\]"),
    ("fourierformers", ValueError, r"not an original .* It is a fourierformers checkpoint already: load its folder"),
]
FAMILY_ROWS = [
    ("GFNet", "AFNO", r"not an original GFNet checkpoint: it has no \['blocks.0.filter.complex_weight'\]"),
    ("AFNO", "GFNet", r"not an original AFNO-transformer checkpoint: it has no \['blocks.0.filter.w1'\]"),
    ("FourCastNet", "AFNO", r"head has a bias: it is an AFNO-transformer classifier, not FourCastNet"),
]


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("kind,error,message", FILE_ROWS, ids=[row[0] for row in FILE_ROWS])
def test_original_converter_on_a_bad_file(tmp_path, converter, kind, error, message):
    with pytest.raises(error, match=message):
        CONVERTERS[converter](write_checkpoint(tmp_path, kind))


@pytest.mark.parametrize("zip_format", [True, False])
def test_original_converter_reads_both_torch_save_formats(tmp_path, zip_format):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": original_gfnet_keys()}, path, _use_new_zipfile_serialization=zip_format)
    assert original_checkpoint.load_original_state_dict(path).keys() == original_gfnet_keys().keys()


@pytest.mark.slow
@pytest.mark.parametrize("script,kind,message", [
    ("convert_original_gfnet.py", "AFNO", r"not an original GFNet checkpoint"),
    ("convert_original_afno.py", "text", r"is not a checkpoint file"),
    ("convert_transformers_fnet.py", "directory", r"is not a transformers checkpoint folder"),
    ("convert_transformers_fnet.py", "FNet with a broken index", r"Cannot read the weight index"),
])
def test_converter_commands_end_a_refusal_with_its_message_not_a_traceback(tmp_path, script, kind, message):
    if kind == "FNet with a broken index":
        checkpoint = tmp_path / "fnet"
        FNetConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                   architectures=["FNetModel"]).save_pretrained(checkpoint)
        (checkpoint / "model.safetensors.index.json").write_text("{not json")
    else:
        checkpoint = write_checkpoint(tmp_path, kind)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), str(checkpoint), str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert re.fullmatch(rf"{script}: error: .*{message}.*\n", result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("converter,kind,message", FAMILY_ROWS, ids=[f"{row[1]} to {row[0]}" for row in FAMILY_ROWS])
def test_original_converter_on_another_family(tmp_path, converter, kind, message):
    with pytest.raises(ValueError, match=message):
        CONVERTERS[converter](write_checkpoint(tmp_path, kind))


@pytest.mark.parametrize("script", [convert_original_gfnet, convert_original_afno])
def test_original_converter_command_line_refuses_a_foreign_output_dir(tmp_path, script):
    """Checked before converting: the input need not even exist."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"holds no saved model \(a config.json .*: \['notes.txt'\].*--overwrite"):
        script.main([str(tmp_path / "missing.pth"), str(tmp_path / "out")])
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("script", [convert_original_gfnet, convert_original_afno])
def test_original_converter_never_replaces_the_folder_of_its_input(tmp_path, script):
    """A folder with a config.json is not a saved model unless the config names a model_type and weights lie beside
    it; and the folder holding the input checkpoint is refused even with --overwrite."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"name": "my project"}')
    (project / "checkpoint.pth").write_bytes(b"original weights")
    before = snapshot(project)
    with pytest.raises(ValueError, match=r"holds no saved model \(a config.json with a model_type, and weights\)"):
        script.main([str(tmp_path / "elsewhere.pth"), str(project)])
    for output_dir in (project, tmp_path):
        with pytest.raises(ValueError, match=r"checkpoint.pth lies in the output directory .* pass another output"):
            script.main([str(project / "checkpoint.pth"), str(output_dir), "--overwrite"])
    assert snapshot(project) == before


@pytest.mark.parametrize("flags,message", [
    (["--image-size", "64", "64"], r"--image-size is FourCastNet's training image size \(with --fourcastnet\)"),
    (["--fourcastnet", "--double-skip"], r"--double-skip and --drop-path-rate are for AFNO checkpoints"),
    (["--fourcastnet", "--drop-path-rate", "0.1"], r"--double-skip and --drop-path-rate are for AFNO checkpoints"),
])
def test_afno_converter_refuses_flags_that_do_not_apply(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        convert_original_afno.main([str(tmp_path / "in.pth"), str(tmp_path / "out"), *flags])
    assert re.search(message, capsys.readouterr().err)


@pytest.fixture(scope="module")
def fnet_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fnet")
    save_tiny_fnet("FNetForSequenceClassification", root / "fnet")
    shutil.copytree(root / "fnet", root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    shutil.copytree(root / "fnet", root / "no_weights")
    (root / "no_weights" / "model.safetensors").unlink()
    (root / "no_config").mkdir()
    (root / "file.json").write_text("{}")
    GFNetModel(tiny_config("gfnet")).save_pretrained(root / "gfnet")
    BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "bert")
    (root / "busy").mkdir()
    (root / "busy" / "notes.txt").write_text("keep")
    (root / "untyped").mkdir()
    (root / "untyped" / "config.json").write_text('{"hidden_size": 32}')
    return root


FNET_ROWS = [
    ("missing folder", "missing", {}, FileNotFoundError, r"FNet checkpoint folder .*missing does not exist"),
    ("a file", "file.json", {}, ValueError, r"is not a transformers checkpoint folder: pass the folder holding config"),
    ("no config.json", "no_config", {}, ValueError, r"not a transformers checkpoint folder"),
    ("GFNet checkpoint", "gfnet", {}, ValueError,
     r"holds a 'gfnet' checkpoint; this converter reads transformers FNet checkpoints \(model_type 'fnet', "),
    ("BERT checkpoint", "bert", {}, ValueError, r"holds a 'bert' checkpoint; .*architectures \['FNetForMaskedLM'"),
    ("config without a model_type", "untyped", {}, ValueError,
     r"untyped holds a config.json without a model_type; this converter reads transformers FNet checkpoints"),
    ("truncated weights", "truncated", {}, ValueError, r"Cannot read .*model.safetensors as .*truncated"),
    ("no weights", "no_weights", {}, ValueError, r"No FNet weights in .*: expected model.safetensors or pytorch_model"),
    ("unknown head", "fnet", dict(head="next_sentence"), ValueError,
     r"Unknown head 'next_sentence'; allowed: \['masked_lm', 'model', 'multiple_choice', 'question_answering', "
     r"'sequence_classification', 'token_classification'\]"),
    ("attention layer 2 of 2", "fnet", dict(attention_layers=[2]), ValueError,
     r"Attention layer index 2 is out of range: the model has layers 0..1 \(or -2..-1\)"),
    ("output is a file", "fnet", dict(output_dir="file.json"), ValueError, r"file.json is an existing file"),
    ("output is the input", "fnet", dict(output_dir="fnet", overwrite=True), ValueError,
     r"The input .*fnet lies in the output directory .*fnet, which the run replaces when it finishes"),
    ("output holds other files", "fnet", dict(output_dir="busy"), ValueError,
     r"is not empty and holds no saved model \(a config.json with a model_type, and weights\) nor an example run's "
     r"all_results.json: \['notes.txt'\]"),
]


@pytest.mark.parametrize("name,folder,options,error,message", FNET_ROWS, ids=[row[0] for row in FNET_ROWS])
def test_fnet_converter(fnet_folders, name, folder, options, error, message):
    if "output_dir" in options:
        options = {**options, "output_dir": fnet_folders / options["output_dir"]}
    with pytest.raises(error, match=message):
        convert_transformers_fnet.convert_fnet_checkpoint(fnet_folders / folder, **options)
    assert [path.name for path in (fnet_folders / "busy").iterdir()] == ["notes.txt"]


# Example command lines on missing or malformed user data, run in-process (`main(argv)`): every row fails before
# training and leaves no output directory behind.


def write_png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_data")
    texts = [f"sentence number {index}" for index in range(20)]
    files = {
        "reviews.csv": "sentence,label\n" + "".join(f"{t},{'pos' if i % 2 else 'neg'}\n" for i, t in enumerate(texts)),
        "reviews.jsonl": "".join(json.dumps({"sentence": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)),
        "other_columns.csv": "text,other\n" + "".join(f"{t},1\n" for t in texts),
        "no_text_column.csv": "label\npos\nneg\n",
        "mixed_labels.jsonl": "".join(json.dumps({"sentence": t, "label": "pos" if i else 1}) + "\n"
                                      for i, t in enumerate(texts)),
        "mixed_labels_bom.jsonl": "\ufeff" + "".join(json.dumps({"sentence": t, "label": "pos" if i else 1}) + "\n"
                                                  for i, t in enumerate(texts)),
        "mixed_labels.json": json.dumps([{"sentence": t, "label": "pos" if i else 1} for i, t in enumerate(texts)]),
        "boolean_and_number_labels.jsonl": "".join(json.dumps({"sentence": t, "label": i if i else True}) + "\n"
                                                   for i, t in enumerate(texts)),
        "mixed_tags.jsonl": "".join(json.dumps({"tokens": ["New", "York"], "ner_tags": ["B-loc", "I-loc" if i else 2]})
                                    + "\n" for i in range(4)),
        "empty.csv": "",
        "header_only.csv": "sentence,label\n",
        "one_row.csv": "sentence,label\nhello,pos\n",
        "float_labels.csv": "sentence,label\n" + "".join(f"{t},{i / 7:.3f}\n" for i, t in enumerate(texts)),
        "number_texts.csv": "sentence,label\n" + "".join(f"{i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)),
        "one_class.csv": "sentence,label\n" + "".join(f"{t},pos\n" for t in texts),
        "unseen_label.csv": "sentence,label\nhello,neutral\n",
        "empty_labels.csv": "sentence,label\n" + "".join(f"{t},{'pos' * (i % 2)}\n" for i, t in enumerate(texts)),
        "notes.txt": "one line\n",
        "words_as_text.jsonl": "".join(json.dumps({"tokens": "New York", "ner_tags": "B-loc I-loc"}) + "\n"
                                       for _ in range(4)),
        "number_words.jsonl": "".join(json.dumps({"tokens": 5, "ner_tags": ["O"]}) + "\n" for _ in range(4)),
        "tags_too_few.jsonl": "".join(json.dumps({"tokens": ["New", "York"], "ner_tags": ["B-loc"]}) + "\n"
                                      for _ in range(4)),
        "no_tags.jsonl": "".join(json.dumps({"tokens": ["New", "York"]}) + "\n" for _ in range(4)),
        "list_labels.jsonl": "".join(json.dumps({"sentence": t, "label": ["sports", "politics"]}) + "\n"
                                     for t in texts),
        "ratings.csv": "sentence,label\n" + "".join(f"{t},{i / 7:.3f}\n" for i, t in enumerate(texts)),
        "unrated.csv": "sentence,label\nhello,?\n",
        "one_unrated.csv": "sentence,label\n" + "".join(f"{t},{'?' if i == 3 else i / 7}\n"
                                                   for i, t in enumerate(texts)),
        "nan_ratings.jsonl": "".join(json.dumps({"sentence": t, "label": float("nan") if i == 3 else i / 7}) + "\n"
                                     for i, t in enumerate(texts)),
        "null_tag.jsonl": "".join(json.dumps({"tokens": ["New", "York"], "ner_tags": ["B-loc", None]}) + "\n"
                                  for _ in range(4)),
        "blank_lines.txt": "\n   \n\n",
        "empty.txt": "",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me\n".encode("latin-1") * 4)
    (root / "latin1.jsonl").write_bytes('{"sentence": "caf\u00e9 cr\u00e8me", "label": "pos"}\n'.encode("latin-1") * 4)
    write_png(root / "one_class" / "cat" / "a.png", 10)
    write_png(root / "one_class" / "cat" / "b.png", 20)
    write_png(root / "loose_images" / "a.png", 10)
    (root / "empty_class" / "cat").mkdir(parents=True)
    write_png(root / "empty_class" / "dog" / "a.png", 10)
    (root / "no_images" / "cat").mkdir(parents=True)
    (root / "no_images" / "dog").mkdir(parents=True)
    (root / "no_images" / "dog" / "readme.txt").write_text("not an image")
    write_png(root / "images" / "cat" / "a.png", 10)
    write_png(root / "images" / "dog" / "b.png", 200)
    write_png(root / "more_classes" / "cat" / "a.png", 10)
    write_png(root / "more_classes" / "bird" / "b.png", 100)
    write_png(root / "nested" / "cat" / "a.png", 10)
    write_png(root / "nested" / "dog" / "puppies" / "b.png", 200)
    write_png(root / "broken" / "cat" / "a.png", 10)
    write_png(root / "high_depth" / "cat" / "a.png", 10)
    (root / "high_depth" / "dog").mkdir()
    ramp = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)  # a 16-bit image (PIL mode I;16)
    Image.fromarray(ramp).save(root / "high_depth" / "dog" / "b.png")
    (root / "broken" / "dog").mkdir(parents=True)
    (root / "broken" / "dog" / "b.png").write_bytes(b"not a png")
    return root


TEXT = run_text_classification
EXAMPLE_ROWS = [
    (TEXT, ["--train_file", "{data}/missing.csv"], FileNotFoundError, r"`--train_file` .*missing.csv does not exist"),
    (TEXT, ["--train_file", "{data}/notes.txt"], ValueError,
     r"`--train_file` must be a .csv, .tsv, .json, .jsonl file, got .*notes.txt"),
    (TEXT, ["--train_file", "{data}/empty.csv"], ValueError, r"`--train_file` .*empty.csv is an empty file"),
    (TEXT, ["--train_file", "{data}/header_only.csv"], ValueError,
     r"No examples could be read from .*header_only.csv.*needs a header and at least one row"),
    (TEXT, ["--train_file", "{data}/header_only.csv", "--validation_file", "{data}/reviews.csv"], ValueError,
     r"No examples could be read from `--train_file` .*header_only.csv: a CSV / TSV file needs a header"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/header_only.csv"], ValueError,
     r"No examples could be read from `--validation_file` .*header_only.csv: a CSV / TSV file needs a header"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/other_columns.csv"], ValueError,
     r"Column 'sentence' \(`--text_column_name`\) not found in the validation data, whose columns are \['text', 'oth"),
    (TEXT, ["--train_file", "{data}/number_texts.csv"], ValueError,
     r"Column 'sentence' \(`--text_column_name`\) of the train data must hold texts, but holds int64 values such as "
     r"\d+: pass"),
    # the validation file's columns have types of their own: they failed in the tokenizer or the loss
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/number_texts.csv"], ValueError,
     r"Column 'sentence' \(`--text_column_name`\) of the validation data must hold texts, but holds int64 values"),
    (TEXT, ["--train_file", "{data}/ratings.csv", "--validation_file", "{data}/unrated.csv", "--task", "regression"],
     ValueError, r"`--task regression` needs numeric labels, but column 'label' of the validation data holds .*string "
                 r"values such as '\?'"),
    (TEXT, ["--train_file", "{data}/nan_ratings.jsonl", "--task", "regression"], ValueError,
     r"`--task regression` needs finite labels, but column 'label' of the (train|validation) data holds nan for the "
     r"text 'sentence number 3'"),
    (TEXT, ["--train_file", "{data}/one_unrated.csv", "--task", "regression"], ValueError,
     r"needs numeric labels, but column 'label' of the (train|validation) data holds .*string values such as '\?'"),
    (TEXT, ["--train_file", "{data}/list_labels.jsonl"], ValueError,
     r"Column 'label' \(`--label_column_name`\) of the train data must hold one label per text, but holds values "
     r"such as \['sports', 'politics'\]"),
    (TEXT, ["--train_file", "{data}/mixed_labels.jsonl"], ValueError,
     r"Column 'label' of `--train_file` .*mixed_labels.jsonl holds numbers \(e.g. line 1\) and strings \(e.g. line 2"),
    # behind a byte-order mark, in a JSON array, booleans among numbers, tags inside lists: read as other classes
    (TEXT, ["--train_file", "{data}/mixed_labels_bom.jsonl"], ValueError,
     r"Column 'label' of `--train_file` .*mixed_labels_bom.jsonl holds numbers \(e.g. line 1\) and strings"),
    (TEXT, ["--train_file", "{data}/mixed_labels.json"], ValueError,
     r"Column 'label' of `--train_file` .*mixed_labels.json holds numbers \(e.g. item 1\) and strings \(e.g. item 2"),
    (TEXT, ["--train_file", "{data}/boolean_and_number_labels.jsonl"], ValueError,
     r"Column 'label' of `--train_file` .*jsonl holds booleans \(e.g. line 1\) and numbers \(e.g. line 2\)"),
    (run_token_classification, ["--train_file", "{data}/mixed_tags.jsonl"], ValueError,
     r"Column 'ner_tags' of `--train_file` .*mixed_tags.jsonl holds strings \(e.g. line 1\) and numbers \(e.g. line"),
    (TEXT, ["--train_file", "{data}/latin1.jsonl"], ValueError,
     r"`--train_file` .*latin1.jsonl is not UTF-8 text \(.*\); save it as UTF-8"),
    (TEXT, ["--train_file", "{data}/one_row.csv"], ValueError,
     r"`--train_file` .*one_row.csv has 1 examples; at least 2 are needed \(a validation split is cut from it\)"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/reviews.jsonl"], ValueError,
     r"`--train_file` and `--validation_file` must have the same format, got \['.csv', '.jsonl'\]"),
    (TEXT, ["--train_file", "{data}/other_columns.csv"], ValueError,
     r"Column 'sentence' \(`--text_column_name`\) not found in the train data, whose columns are \['text', 'other'\]"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/no_text_column.csv"], ValueError,
     r"Column 'sentence' \(`--text_column_name`\) not found in the validation data, whose columns are \['label'\]"),
    (TEXT, ["--train_file", "{data}/empty_labels.csv"], ValueError,
     r"Column 'label' \(`--label_column_name`\) of the (train|validation) data has \d+ empty values"),
    (TEXT, ["--train_file", "{data}/float_labels.csv"], ValueError,
     r"Column 'label' \(`--label_column_name`\) holds floating-point values .*use `--task regression`"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--task", "regression"], ValueError,
     r"`--task regression` needs numeric labels, but column 'label' of the train data holds .*string values such as "
     r"'(pos|neg)'"),
    (TEXT, ["--train_file", "{data}/one_class.csv"], ValueError,
     r"training data has 1 class \(\['pos'\]\); classification needs at least two"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--validation_file", "{data}/unseen_label.csv"], ValueError,
     r"Labels \['neutral'\] .* occur in the validation data but not in the training data, whose classes are "
     r"\['neg', 'pos'\]"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--max_train_samples", "0"], ValueError,
     r"`--max_train_samples` must be a positive number of examples, got 0"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--config_overrides", "hidden_sise=64"], ValueError,
     r"Unknown config fields in `--config_overrides` for gfnet: \['hidden_sise'\]"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--config_overrides", "num_labels=3"], ValueError,
     r"`--config_overrides` sets \['num_labels'\], which the example takes from the data"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--config_overrides", "hidden_size"], ValueError,
     r"`--config_overrides` entries must look like field=value, got 'hidden_size'"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--config_overrides", "hidden_size=0"], ValueError,
     r"`hidden_size` must be a positive integer, got 0"),
    (TEXT, ["--validation_file", "{data}/reviews.csv"], ValueError,
     r"`--validation_file` needs `--train_file`, .*the default dataset would be used and `--validation_file` ignored"),
    (run_token_classification, ["--validation_file", "{data}/missing.jsonl"], ValueError,
     r"`--validation_file` needs `--train_file`"),
    (run_image_classification, ["--validation_dir", "{data}/images"], ValueError,
     r"`--validation_dir` needs `--train_dir`"),
    (run_token_classification, ["--train_file", "{data}/missing.jsonl"], FileNotFoundError, r"does not exist"),
    (run_token_classification, ["--train_file", "{data}/words_as_text.jsonl"], ValueError,
     r"The row of the train data with words 'New York' must hold a list of words \(`--tokens_column_name` 'tokens'\) "
     r"and a list of tags"),
    (run_token_classification, ["--train_file", "{data}/number_words.jsonl"], ValueError,
     r"The row of the train data with words 5 must hold a list of words"),
    (run_token_classification, ["--train_file", "{data}/tags_too_few.jsonl"], ValueError,
     r"The row of the (train|validation) data with words \['New', 'York'\] has 2 words \(`--tokens_column_name` "
     r"'tokens'\) but 1 tags \(`--tags_column_name` 'ner_tags'\); every word needs exactly one tag"),
    (run_token_classification, ["--train_file", "{data}/null_tag.jsonl"], ValueError,
     r"The row of the (train|validation) data with words \['New', 'York'\] has a missing tag \(null, "
     r"`--tags_column_name` 'ner_tags'\) at position 1; every word needs a tag"),
    (run_token_classification, ["--train_file", "{data}/no_tags.jsonl"], ValueError,
     r"Column 'ner_tags' \(`--tags_column_name`\) not found in the train data, whose columns are \['tokens'\]"),
    (run_mlm, ["--no_default_corpus"], ValueError, r"No corpus: give --train_files or leave out --no_default_corpus"),
    (TEXT, ["--train_file", "{data}/reviews.csv", "--config_overrides", "condition_type=adaln_zero,condition_size=8"],
     ValueError, r"condition_type='adaln_zero', which needs a `condition` with every input; the examples have no"),
    (run_mlm, ["--no_default_corpus", "--train_files", "{data}/missing.txt"], FileNotFoundError,
     r"`--train_files` .*missing.txt does not exist"),
    (run_mlm, ["--no_default_corpus", "--train_files", "{data}/empty.txt"], ValueError, r"empty.txt is an empty file"),
    (run_mlm, ["--train_files", "{data}/notes.txt", "{data}/latin1.txt"], ValueError,
     r"`--train_files` .*latin1.txt is not UTF-8 text \(.*\); save it as UTF-8"),
    (run_mlm, ["--no_default_corpus", "--train_files", "{data}/blank_lines.txt"], ValueError,
     r"`--train_files` .* hold 0 non-empty lines; at least 2 are needed \(one example per line"),
    (run_image_classification, ["--train_dir", "{data}/missing"], FileNotFoundError,
     r"`--train_dir` .*missing is not a directory; pass a folder with one sub-folder per class"),
    (run_image_classification, ["--train_dir", "{data}/images", "--validation_dir", "{data}/more_classes"], ValueError,
     r"Classes \['bird'\] occur in `--validation_dir` but not in `--train_dir`, whose classes are \['cat', 'dog'\]"),
    (run_image_classification, ["--train_dir", "{data}/loose_images"], ValueError,
     r"`--train_dir` .*loose_images holds images directly \(\['a.png'\]\); put them in one sub-folder per class"),
    (run_image_classification, ["--train_dir", "{data}/one_class"], ValueError,
     r"needs at least two class sub-folders with images \(.png, .jpg, .*found classes \['cat'\]"),
    (run_image_classification, ["--train_dir", "{data}/empty_class"], ValueError,
     r"found classes \['cat', 'dog'\], of which \['cat'\] hold no images"),
    (run_image_classification, ["--train_dir", "{data}/no_images"], ValueError, r"of which \['cat', 'dog'\] hold no"),
    # imagefolder labels an image by its own folder: the puppies became a class of their own, or labels were lost
    (run_image_classification, ["--train_dir", "{data}/nested"], ValueError,
     r"class folder 'dog' holds images in sub-folders \(.*puppies/b.png\); .* must lie directly in .*nested/dog"),
    (run_image_classification, ["--train_dir", "{data}/images", "--validation_dir", "{data}/broken"], ValueError,
     r"`--validation_dir`: .*broken/dog/b.png is not a readable image \(cannot identify image file"),
    # the conversion to RGB clipped a 16-bit ramp to white (one black pixel): trained on, without an error
    (run_image_classification, ["--train_dir", "{data}/high_depth"], ValueError,
     r"`--train_dir`: .*dog/b.png has 16-bit, 32-bit or floating-point pixels \(PIL mode 'I;16'\), which the "),
    (run_image_classification, ["--config_overrides", "image_size=2.5"], ValueError,
     r"`image_size` must be a positive integer or a list of 2 positive integers .*got 2.5"),
    (run_image_classification, ["--train_dir", "{data}/images", "--validation_dir", "{data}/missing"],
     FileNotFoundError, r"`--validation_dir` .*missing is not a directory"),
    # Saved models and the run's phases, checked before any data is read.
    (TEXT, ["--model_name_or_path", "{data}/missing"], FileNotFoundError,
     r"`--model_name_or_path` .*missing is not a folder; pass a folder written by `save_pretrained`"),
    (run_token_classification, ["--tokenizer_name", "{data}/reviews.csv"], FileNotFoundError,
     r"`--tokenizer_name` .*reviews.csv is not a folder"),
    (run_image_classification, ["--model_name_or_path", "{data}/missing"], FileNotFoundError,
     r"`--model_name_or_path` .*missing is not a folder"),
    (TEXT, ["--do_eval"], ValueError,
     r"`--do_eval` / `--do_predict` without `--do_train` evaluate a saved model: pass its folder with "
     r"`--model_name_or_path`"),
    (run_image_classification, ["--do_predict"], ValueError, r"without `--do_train` evaluate a saved model"),
    (TEXT, ["--do_eval", "--model_name_or_path", "{data}", "--config_overrides", "pooling=max"], ValueError,
     r"`--config_overrides` would change the model that `--do_eval` / `--do_predict` evaluate without `--do_train`"),
    (TEXT, ["--do_train", "false"], ValueError, r"Nothing to do: give `--do_train`, `--do_eval` or `--do_predict`"),
    (run_mlm, ["--do_predict"], ValueError, r"This example has no predictions to write .*leave out `--do_predict`"),
    # Values that only failed later naming something else, or ran and reported a meaningless result.
    (TEXT, ["--max_seq_length", "0"], ValueError, r"`--max_seq_length` must be at least 3 \(\[CLS\], \[SEP\] and one "),
    (run_token_classification, ["--max_seq_length", "2"], ValueError, r"`--max_seq_length` must be at least 3"),
    (TEXT, ["--vocab_size", "0"], ValueError, r"`--vocab_size` must be a positive number of tokens, got 0"),
    (run_mlm, ["--mlm_probability", "0"], ValueError, r"`--mlm_probability` must be in \(0, 1\], .*got 0.0"),
    # the fill-mask pipeline does not truncate: a sentence longer than the model failed after training
    (run_mlm, ["--no_default_corpus", "--train_files", "{data}/notes.txt", "{data}/reviews.csv", "--max_seq_length",
               "16", "--pipeline_inputs", "a [MASK] " + "word " * 20], ValueError,
     r"`--pipeline_inputs` sentence 'a \[MASK\] word .* has 2\d tokens, more than the model's "
     r"max_position_embeddings=16"),
    (TEXT, ["--gradient_accumulation_steps", "0"], ValueError,
     r"`--gradient_accumulation_steps` must be a positive integer, got 0"),
    (TEXT, ["--num_train_epochs", "0"], ValueError,
     r"Training would take no step: `--num_train_epochs` is 0.0 and `--max_steps` -1"),
]


@pytest.mark.parametrize(
    "script,arguments,error,message", EXAMPLE_ROWS,
    ids=[f"{row[0].__name__}-{index}" for index, row in enumerate(EXAMPLE_ROWS)],
)
def test_example_command_line(tmp_path, user_data, script, arguments, error, message):
    output_dir = tmp_path / "out"
    argv = ["--output_dir", str(output_dir), "--use_cpu", *(a.replace("{data}", str(user_data)) for a in arguments)]
    with pytest.raises(error, match=message):
        script.main(argv)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_image_folders_skip_hidden_files_as_imagefolder_does_and_decode_every_image(tmp_path):
    """Files under names starting with "." or "__" (notebook checkpoints, macOS companions) are not data; a
    truncated JPEG, which PIL's verify() passes, is refused before training rather than in it."""
    for path, value in [("cat/a.png", 10), ("dog/b.png", 200), ("dog/.ipynb_checkpoints/b-checkpoint.png", 200),
                        ("__MACOSX/dog/c.png", 30), ("._top.png", 40)]:
        write_png(tmp_path / "folder" / path, value)
    (tmp_path / "folder" / "dog" / "._b.png").write_bytes(b"macOS metadata, not an image")
    assert run_image_classification.check_image_folder("--train_dir", tmp_path / "folder") == ["cat", "dog"]
    (tmp_path / "truncated" / "cat").mkdir(parents=True)
    write_png(tmp_path / "truncated" / "dog" / "a.png", 10)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    image.save(tmp_path / "truncated" / "cat" / "a.jpg", quality=95)
    whole = (tmp_path / "truncated" / "cat" / "a.jpg").read_bytes()
    (tmp_path / "truncated" / "cat" / "a.jpg").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(ValueError, match=r"`--train_dir`: .*cat/a.jpg is not a readable image \(image file is trunc"):
        run_image_classification.check_image_folder("--train_dir", tmp_path / "truncated")


def test_image_folders_read_every_image_under_its_class_folder_name(tmp_path, caplog):
    """imagefolder took the labels from a metadata.csv beside the class folders (here the folders' names swapped:
    the model learnt them, then failed after training), or failed with a KeyError on one without labels; `[`, `*`
    and `?` in a file or folder name are wildcards to datasets (a class folder 'dog [v2]' lost every image); a
    validation folder at another depth than the training folder lost its labels."""
    train = [("cat/a.png", 10), ("cat/b[1].png", 20), ("cat/b*.png", 30), ("dog [v2]/c.png", 200),
             ("dog [v2]/d.png", 210)]
    for path, value in train:
        write_png(tmp_path / "train" / path, value)
    (tmp_path / "train" / "metadata.csv").write_text(
        "file_name,label\ncat/a.png,dog\ndog [v2]/c.png,cat\ndog [v2]/d.png,cat\n")
    for path, value in [("cat/e.png", 40), ("dog [v2]/f.png", 220)]:
        write_png(tmp_path / "deeper" / "validation" / path, value)
    arguments = run_image_classification.DataArguments(
        train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "deeper" / "validation"))
    with caplog.at_level(logging.WARNING):
        raw = run_image_classification.load_raw_data(arguments, training=True)
    assert re.search(r"Ignoring .*train/metadata.csv in `--train_dir`: the labels are the names of the", caplog.text)
    names = raw["train"].features["label"].names
    assert names == ["cat", "dog [v2]"] and (raw["train"].num_rows, raw["validation"].num_rows) == (5, 2)
    values = {split: sorted((names[row["label"]], row["image"].getpixel((0, 0))[0]) for row in raw[split])
              for split in raw}
    assert values["train"] == sorted(("dog [v2]" if value > 100 else "cat", value) for _, value in train)
    assert values["validation"] == [("cat", 40), ("dog [v2]", 220)]


def save_word_tokenizer(folder, words):
    """A WordPiece tokenizer of the special tokens but [MASK] and `words`, saved in `folder`."""
    vocabulary = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocabulary, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)


def test_mlm_refuses_a_tokenizer_without_a_mask_token(tmp_path):
    """Masked-LM training puts the mask token in place of the tokens to predict; without one it failed with a
    TypeError from the pipeline-input check."""
    save_word_tokenizer(tmp_path / "tokenizer", ["a", "film"])
    with pytest.raises(ValueError, match=r"tokenizer of .*tokenizer has no mask token \(`mask_token` is None\)"):
        run_mlm.main(["--output_dir", str(tmp_path / "out"), "--tokenizer_name", str(tmp_path / "tokenizer"),
                      "--use_cpu"])
    assert not (tmp_path / "out").exists()


def test_examples_refuse_a_tokenizer_larger_than_the_models_vocabulary(tmp_path, user_data):
    """Ids past the model's vocabulary have no embedding: the first batch holding one failed during training."""
    save_word_tokenizer(tmp_path / "tokenizer", [f"w{index}" for index in range(20)])
    model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet", vocab_size=10)).save_pretrained(
        tmp_path / "model")
    with pytest.raises(ValueError, match=r"The tokenizer has 24 tokens, but the model's vocab_size is 10: ids from 10"):
        run_text_classification.main([
            "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(tmp_path / "model"), "--tokenizer_name",
            str(tmp_path / "tokenizer"), "--train_file", f"{user_data}/reviews.csv", "--use_cpu",
        ])
    assert not (tmp_path / "out").exists()


# Output directories: written all at once or not at all.

TINY_RUN = [
    "--text_column_name", "sentence", "--config_overrides", "hidden_size=32,intermediate_size=64,num_hidden_layers=1",
    "--vocab_size", "120", "--max_seq_length", "16", "--num_train_epochs", "1", "--use_cpu",
    "--pipeline_inputs", "sentence number 3",
]


def earlier_output(output_dir):
    """What an earlier run left in `output_dir`; returns a snapshot (name -> bytes) to compare with."""
    output_dir.mkdir()
    (output_dir / "config.json").write_text('{"model_type": "gfnet"}')
    (output_dir / "model.safetensors").write_bytes(b"weights")
    (output_dir / "earlier.txt").write_text("from the earlier run")
    return snapshot(output_dir)


def snapshot(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def siblings(output_dir):
    return sorted(path.name for path in output_dir.parent.iterdir() if path.name.startswith(output_dir.name + "."))


def fail(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("earlier", [False, True], ids=["new output_dir", "earlier output_dir"])
def test_failed_example_leaves_output_dir_as_it_was(tmp_path, user_data, monkeypatch, earlier):
    """The run trains, evaluates and saves, then fails in its last step (the pipeline on the saved model)."""
    output_dir = tmp_path / "out"
    before = earlier_output(output_dir) if earlier else None
    monkeypatch.setattr(run_text_classification, "pipeline", fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_text_classification.main(["--output_dir", str(output_dir), "--train_file", f"{user_data}/reviews.csv",
                                      *TINY_RUN])
    assert (snapshot(output_dir) if output_dir.exists() else None) == before
    assert siblings(output_dir) == []


def test_example_replaces_an_earlier_output_dir_when_it_succeeds(tmp_path, user_data):
    output_dir = tmp_path / "out"
    earlier_output(output_dir)
    metrics = run_text_classification.main(
        ["--output_dir", str(output_dir), "--train_file", f"{user_data}/reviews.csv", *TINY_RUN]
    )
    assert 0 <= metrics["eval_accuracy"] <= 1
    files = set(snapshot(output_dir))
    assert {"config.json", "model.safetensors", "tokenizer.json", "all_results.json"} <= files
    assert "earlier.txt" not in files
    assert siblings(output_dir) == []
    assert AutoModelForSequenceClassification.from_pretrained(output_dir).config.id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize("script,flag,inside", [
    (run_text_classification, "--train_file", "reviews.csv"),
    (run_text_classification, "--validation_file", "reviews.csv"),
    (run_token_classification, "--train_file", "ner.jsonl"),
    (run_mlm, "--train_files", "corpus.txt"),
    (run_image_classification, "--train_dir", "images"),
    (run_image_classification, "--validation_dir", "images"),
], ids=lambda value: getattr(value, "__name__", value))
@pytest.mark.parametrize("where", ["output_dir", "work_dir"])
def test_example_refuses_data_inside_its_output_dir(tmp_path, user_data, script, flag, inside, where):
    """Every run replaces `--output_dir` (and first clears its work directory): data read from there was deleted
    by the run that read it."""
    output_dir = tmp_path / "out"
    earlier_output(output_dir)
    folder = output_dir if where == "output_dir" else work_dir_for(output_dir)
    folder.mkdir(exist_ok=True)
    (folder / inside).write_text("data")
    before = snapshot(folder)
    others = ["--train_file", f"{user_data}/reviews.csv"] if flag == "--validation_file" else []
    if script is run_image_classification and flag == "--validation_dir":
        others = ["--train_dir", str(user_data)]
    with pytest.raises(ValueError, match=rf"`{flag}` .*{inside} lies in `--output_dir` .*the data would be deleted"):
        script.main(["--output_dir", str(output_dir), *others, flag, str(folder / inside), "--use_cpu"])
    assert snapshot(folder) == before


def test_failed_example_keeps_its_checkpoints_for_resuming(tmp_path, user_data, monkeypatch):
    output_dir = tmp_path / "out"
    run = ["--output_dir", str(output_dir), "--train_file", f"{user_data}/reviews.csv", *TINY_RUN,
           "--save_strategy", "steps", "--save_steps", "1", "--per_device_train_batch_size", "8"]
    with monkeypatch.context() as patch:
        patch.setattr(run_text_classification, "pipeline", fail)
        with pytest.raises(RuntimeError, match="injected failure"):
            run_text_classification.main(run)
    work_dir = work_dir_for(output_dir)
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert not output_dir.exists() and checkpoints
    # The tokenizer the failed run trained is in the work directory too.
    run_text_classification.main([*run, "--resume_from_checkpoint", str(checkpoints[-1]), "--tokenizer_name",
                                  str(work_dir)])
    assert (output_dir / "model.safetensors").is_file() and not work_dir.exists()


@pytest.mark.parametrize("earlier", [False, True], ids=["new output_dir", "earlier output_dir"])
def test_failed_fnet_conversion_leaves_output_dir_as_it_was(tmp_path, fnet_folders, monkeypatch, earlier):
    """The model is saved, then copying the tokenizer files fails."""
    output_dir = tmp_path / "out"
    before = earlier_output(output_dir) if earlier else None
    monkeypatch.setattr(convert_transformers_fnet, "shutil", SimpleNamespace(copyfile=fail))
    with pytest.raises(RuntimeError, match="injected failure"):
        convert_transformers_fnet.convert_fnet_checkpoint(fnet_folders / "fnet", output_dir)
    assert (snapshot(output_dir) if output_dir.exists() else None) == before
    assert siblings(output_dir) == []


@pytest.mark.parametrize("earlier", [False, True], ids=["new output_dir", "earlier output_dir"])
def test_failed_original_conversion_leaves_output_dir_as_it_was(tmp_path, monkeypatch, earlier):
    """`save_converted` of the GFNet / AFNO converters: the model is saved, then its image processor fails."""
    output_dir = tmp_path / "out"
    before = earlier_output(output_dir) if earlier else None
    failing_processor = SimpleNamespace(save_pretrained=fail)
    monkeypatch.setattr(original_checkpoint, "image_processor_for", lambda config: failing_processor)
    model = GFNetForImageClassification(tiny_config("gfnet", **IMAGE))
    with pytest.raises(RuntimeError, match="injected failure"):
        original_checkpoint.save_converted(model, output_dir)
    assert (snapshot(output_dir) if output_dir.exists() else None) == before
    assert siblings(output_dir) == []


def test_atomic_directory_publishes_only_complete_results(tmp_path):
    output_dir = tmp_path / "out"
    before = earlier_output(output_dir)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(output_dir) as work_dir:
            (work_dir / "config.json").write_text("{}")
            raise KeyboardInterrupt  # an interrupted run is no different from a failed one
    assert snapshot(output_dir) == before and siblings(output_dir) == []
    with atomic_directory(output_dir) as work_dir:
        (work_dir / "config.json").write_text('{"new": true}')
    assert snapshot(output_dir) == {"config.json": b'{"new": true}'} and siblings(output_dir) == []
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"holds no saved model .*\['notes.txt'\].*overwrite=True"):
        with atomic_directory(tmp_path / "busy"):
            pass
    with atomic_directory(tmp_path / "busy", overwrite=True) as work_dir:
        (work_dir / "config.json").write_text("{}")
    assert snapshot(tmp_path / "busy") == {"config.json": b"{}"}


def test_rgb_pixels_for_a_one_channel_model_name_the_pipeline_conversion():
    """An image pipeline converts every image to RGB, so a one-channel model fails there on its channel count; the
    error says where the three channels came from."""
    model = cached_model("gfnet", "ForImageClassification", **IMAGE, num_channels=1)
    message = r"num_channels=1, .*got \(2, 3, 16, 16\) \(image pipelines convert images to RGB\)"
    with pytest.raises(ValueError, match=message):
        model(pixel_values=torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("fraction", [float("nan"), float("inf"), 0.0, 1.5, "half"])
@pytest.mark.parametrize("kept_modes", ["afno_transformer_kept_modes", "fourcastnet_kept_modes"])
def test_afno_converter_names_a_bad_hard_thresholding_fraction(kept_modes, fraction):
    """NaN and infinity used to fail in int() ('cannot convert float NaN to integer', an OverflowError)."""
    with pytest.raises(ValueError, match=r"`hard_thresholding_fraction` \(--hard-thresholding-fraction\) must be a "
                                         r"number in \(0, 1\]"):
        getattr(convert_original_afno, kept_modes)((8, 8), fraction)


def test_unpadded_strides_larger_than_the_patch_warn_that_pixels_are_skipped(caplog):
    """Such a model runs (older checkpoints have them), but its patches skip the pixels between them."""
    with caplog.at_level(logging.WARNING, logger="fourierformers.configuration.configuration_spectral"):
        config = tiny_config("gfnet", image_size=18, patch_size=2, patch_stride=4)
    assert config.grid_shape == (5, 5)
    assert any("`patch_stride` (4, 4) is larger than `patch_size` (2, 2)" in record.getMessage()
               for record in caplog.records)


def test_a_wrapped_input_embedding_still_runs():
    """The check of a config changed after building reads the embedding's size where it has one: a replaced or
    wrapped embedding (set_input_embeddings, adapters) has none to read."""

    class Wrapped(torch.nn.Module):
        def __init__(self, embedding):
            super().__init__()
            self.embedding = embedding

        def forward(self, input_ids):
            return self.embedding(input_ids)

    model = model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet")).eval()
    input_ids = ids()
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
        model.set_input_embeddings(Wrapped(model.get_input_embeddings()))
        torch.testing.assert_close(model(input_ids=input_ids).logits, expected)


def test_resize_token_embeddings_takes_numpy_integers_and_refuses_bools():
    model = model_class("gfnet", "Model")(tiny_config("gfnet"))
    assert model.resize_token_embeddings(np.int64(120)).num_embeddings == 120
    with pytest.raises(ValueError, match=r"`new_num_tokens` must be a positive integer \(or None\), got True"):
        model.resize_token_embeddings(True)
    # transformers divided by it (0: ZeroDivisionError) and rounded down for a negative one (fewer rows than asked)
    for multiple in (0, -8, 2.5):
        with pytest.raises(ValueError, match=rf"`pad_to_multiple_of` must be a positive integer .*, got {multiple}"):
            model.resize_token_embeddings(60, pad_to_multiple_of=multiple)
    assert model.resize_token_embeddings(60, pad_to_multiple_of=np.int64(16)).num_embeddings == 64


def test_resizing_a_text_model_to_an_image_size_is_refused():
    with pytest.raises(ValueError, match=r"resize_model_to_image_size takes an image model .*got a GFNetModel"):
        resize_model_to_image_size(cached_model("gfnet", "Model"), 32)
