"""Hybrid layouts: the compact alternating pattern, adaptive / multiscale / cascade entries in every family, and the
eager / sdpa attention implementations inside any layout."""

import copy
import json
from unittest import mock

import pytest
import torch
from conftest import CONFIG_CLASSES, FAMILIES, Wrapper, model_class, tiny_config
from transformers import AttentionInterface, AutoModel, AutoModelForSequenceClassification, modeling_utils
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from fourierformers import AdaptiveMixer, CascadeMixer, FourierMixer, GlobalFilter, MultiscaleMixer, SelfAttention
from fourierformers.configuration.mixer_layout import MIXER_TYPES
from fourierformers.hybrid_layers import run_mixer

STRATEGIES = {
    "adaptive_soft": {"strategy": "adaptive", "mixers": ["fourier", "attention"], "gate": "soft"},
    "adaptive_hard": {"strategy": "adaptive", "mixers": ["global_filter", "afno", "attention"], "gate": "hard"},
    "multiscale_add": {"strategy": "multiscale", "mixers": ["global_filter", "afno"], "fusion": "add"},
    "multiscale_concat": {"strategy": "multiscale", "mixers": ["fourier", "attention"], "fusion": "concat"},
    "multiscale_weighted": {"strategy": "multiscale", "mixers": ["afno", "attention"], "fusion": "weighted"},
    "cascade": {"strategy": "cascade", "mixers": ["fourier", "global_filter"], "share_norm": False},
    "cascade_shared_norm": {"strategy": "cascade", "mixers": ["attention", "afno"], "share_norm": True},
}


def hybrid_config(family, strategy, **overrides):
    """A tiny 2-layer config whose first layer is the strategy entry and second the family's own mixer."""
    return tiny_config(family, mixer_layout=[STRATEGIES[strategy], CONFIG_CLASSES[family].default_mixer], **overrides)


def text_batch(batch_size=3, seq_length=9, vocab_size=99):
    input_ids = torch.randint(4, vocab_size, (batch_size, seq_length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    return input_ids, attention_mask


family_and_strategy = pytest.mark.parametrize(
    "family,strategy", [(family, strategy) for family in FAMILIES for strategy in STRATEGIES]
)


@pytest.mark.parametrize("family", FAMILIES)
def test_pattern_expands_to_one_entry_per_layer(family, tmp_path):
    pattern = [CONFIG_CLASSES[family].default_mixer, STRATEGIES["adaptive_soft"]]
    config = tiny_config(family, num_hidden_layers=4, mixer_layout={"pattern": pattern})
    assert config.mixer_layout == pattern * 2
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["mixer_layout"]
    assert saved == pattern * 2
    assert type(config).from_pretrained(tmp_path).mixer_layout == pattern * 2
    # each layer's entry is its own: changing one changed every repeat, and the caller's pattern
    config.mixer_layout[1]["mixers"].reverse()
    assert config.mixer_layout[3] == pattern[1] and config.mixer_layout[1] != pattern[1]


def test_strategy_defaults_are_filled_in():
    config = tiny_config("gfnet", mixer_layout={"pattern": [{"strategy": "cascade", "mixers": ["fourier", "afno"]}]})
    assert config.mixer_layout[0]["share_norm"] is False
    config = tiny_config("afno", mixer_layout=[{"strategy": "adaptive", "mixers": ["fourier", "afno"]}, "afno"])
    assert config.mixer_layout[0]["gate"] == "soft"


@pytest.mark.parametrize(
    "layout,message",
    [
        (["fourier", "convolution"], str(list(MIXER_TYPES))),
        ("fourier", "must be a list"),
        (["fourier"], "has 1 entries but `num_hidden_layers` is 2"),
        ({"pattern": ["fourier", "afno", "attention"]}, "does not divide num_hidden_layers=2"),
        ({"pattern": []}, "non-empty list"),
        ({"layers": ["fourier"]}, "compact alternating form"),
        ([{"strategy": "mixture", "mixers": ["fourier", "afno"]}, "afno"], "'strategy' in ['adaptive'"),
        ([{"strategy": "adaptive", "mixers": ["fourier"]}, "afno"], "at least two different mixer names from"),
        ([{"strategy": "adaptive", "mixers": ["fourier", "fourier"]}, "afno"], "at least two different"),
        ([{"strategy": "cascade", "mixers": ["fourier", "none"]}, "afno"], "['fourier', 'global_filter', 'afno'"),
        ([{"strategy": "cascade", "mixers": ["fourier", "conv"]}, "afno"], "'attention']"),
        ([{"strategy": "adaptive", "mixers": ["fourier", "afno"], "gate": "gumbel"}, "afno"], "['soft', 'hard']"),
        ([{"strategy": "multiscale", "mixers": ["fourier", "afno"], "fusion": "max"}, "afno"], "'concat'"),
        ([{"strategy": "cascade", "mixers": ["fourier", "afno"], "share_norm": "yes"}, "afno"], "[False, True]"),
        ([{"strategy": "multiscale", "mixers": ["fourier", "afno"], "gate": "soft"}, "afno"], "unknown keys"),
    ],
)
@pytest.mark.parametrize("family", FAMILIES)
def test_bad_layouts_are_rejected_with_the_valid_choices(family, layout, message):
    with pytest.raises(ValueError, match=None) as error:
        tiny_config(family, mixer_layout=layout)
    assert message in str(error.value)


def test_attention_heads_are_checked_inside_strategies():
    layout = [{"strategy": "multiscale", "mixers": ["fourier", "attention"]}, "fourier"]
    with pytest.raises(ValueError, match="num_attention_heads"):
        tiny_config("gfnet", mixer_layout=layout, num_attention_heads=5)


@family_and_strategy
def test_forward_shapes_and_every_parameter_gets_a_gradient(family, strategy):
    config = hybrid_config(family, strategy)
    model = model_class(family, "ForSequenceClassification")(config)
    input_ids, attention_mask = text_batch()
    output = model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2]))
    assert output.logits.shape == (3, config.num_labels)
    output.loss.backward()
    mixer = model.base_model.layers[0].mixer
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
    trained = range(len(mixer.mixers))
    if isinstance(mixer, AdaptiveMixer) and mixer.gate_type == "hard":
        # A hard gate gives each example only its chosen mixer; the others get exactly zero gradient.
        trained = set(mixer.last_choices.tolist())
        assert mixer.gate.weight.grad.abs().sum() > 0
    for index, child in enumerate(mixer.mixers):
        if not any(True for _ in child.parameters()):
            continue
        reached = [parameter.grad.abs().sum() > 0 for parameter in child.parameters()]
        assert all(reached) if index in trained else not any(reached), f"{type(child).__name__} at {index}"
    for name, parameter in mixer.named_parameters():
        if not name.startswith("mixers."):
            assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("strategy", ["adaptive_soft", "multiscale_concat", "cascade_shared_norm"])
def test_wrapped_mixers_are_called_as_the_mixers_themselves(strategy):
    """PEFT's `modules_to_save=["mixer"]` wraps every mixer: an attention or strategy mixer, recognised by its type,
    was called as a spectral one (`fft_shape` passed to attention, a strategy's (out, weights) taken as its output)."""
    config = tiny_config("fnet_hybrid", num_hidden_layers=3, mixer_layout=[STRATEGIES[strategy], "attention", "afno"])
    model = model_class("fnet_hybrid", "Model")(config).eval()
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, output_attentions=True)
        for layer in model.layers:
            layer.mixer = Wrapper(layer.mixer)
        wrapped = model(input_ids, attention_mask=attention_mask, output_attentions=True)
    torch.testing.assert_close(wrapped.last_hidden_state, expected.last_hidden_state, rtol=0, atol=0)
    for ours, theirs in zip(wrapped.attentions, expected.attentions):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_a_mixer_of_ones_own_is_called_as_a_spectral_mixer():
    """Without the call-convention attributes a mixer gets the spectral mixers' call, `(x, mask, fft_shape=...)`."""
    class Scale(torch.nn.Module):
        def forward(self, x, mask, fft_shape=None):
            return 2 * x

    model = model_class("gfnet", "Model")(tiny_config("gfnet")).eval()
    model.layers[0].mixer = Scale()
    input_ids, attention_mask = text_batch()
    assert model(input_ids, attention_mask=attention_mask).last_hidden_state.isfinite().all()


@pytest.mark.parametrize("side", ["right", "left"])
@family_and_strategy
def test_outputs_do_not_depend_on_padding(family, strategy, side):
    model = model_class(family, "Model")(hybrid_config(family, strategy)).eval()
    input_ids, attention_mask = text_batch(seq_length=12)
    if side == "left":
        lengths = attention_mask.sum(1)
        input_ids = torch.stack([row.roll(int(12 - n)) for row, n in zip(input_ids, lengths)])
        attention_mask = torch.stack([row.roll(int(12 - n)) for row, n in zip(attention_mask, lengths)])
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask)
        for row in range(input_ids.shape[0]):
            real = attention_mask[row].bool()
            alone = model(input_ids[row : row + 1, real])
            torch.testing.assert_close(
                batched.last_hidden_state[row, real], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(batched.pooler_output[row], alone.pooler_output[0], atol=1e-5, rtol=1e-5)


@family_and_strategy
def test_save_and_load_through_the_auto_classes(family, strategy, tmp_path):
    model = model_class(family, "ForSequenceClassification")(hybrid_config(family, strategy)).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.config.mixer_layout[0] == STRATEGIES[strategy]
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids, attention_mask=attention_mask).logits,
            model(input_ids, attention_mask=attention_mask).logits,
            atol=0,
            rtol=0,
        )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradient_checkpointing_gives_the_same_gradients(strategy):
    family = "gfnet"
    reference = model_class(family, "ForSequenceClassification")(hybrid_config(family, strategy))
    checkpointed = model_class(family, "ForSequenceClassification")(hybrid_config(family, strategy))
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.base_model.layers[0].gradient_checkpointing
    input_ids, attention_mask = text_batch()
    labels = torch.tensor([0, 1, 2])
    for model in (reference, checkpointed):
        model.train()
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    for (name, expected), actual in zip(reference.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(actual.grad, expected.grad, atol=1e-6, rtol=1e-5, msg=name)


def seed_cascade(block, x):
    """spectrans' `CascadeBlock` mixing written out with the block's weights: `h_0 = x`,
    `h_k = h_{k-1} + M_k(LN_k(h_{k-1}))`; returns h_K."""
    cascade, h = block.mixer, x
    for index, child in enumerate(cascade.mixers):
        norm = cascade.norms[0 if cascade.share_norm else index]
        h = h + run_mixer(child, norm(h), None)[0]
    return h


CASCADE_BLOCKS = {
    # block style -> (config fields, the whole block written out from h_K)
    "pre-norm": (dict(norm_first=True), lambda block, x, h: h + block.mlp(block.mlp_norm(h))),
    "pre-norm, one residual": (dict(norm_first=True, mixer_residual=False),
                               lambda block, x, h: x + block.mlp(block.mlp_norm(h - x))),
    "post-norm": (dict(norm_first=False),
                  lambda block, x, h: block.mlp_norm(block.mixer_norm(h) + block.mlp(block.mixer_norm(h)))),
}


@pytest.mark.parametrize("style", CASCADE_BLOCKS)
@pytest.mark.parametrize("strategy", ["cascade", "cascade_shared_norm"])
@pytest.mark.parametrize("family", FAMILIES)
def test_cascade_block_is_the_seed_formula(family, strategy, style):
    """A pre-norm block feeds the cascade its input itself, so it computes spectrans' CascadeBlock exactly (no extra
    LayerNorm in front, no mixer norm built); a post-norm block normalises h_K as it does any mixer's residual."""
    fields, block_formula = CASCADE_BLOCKS[style]
    model = model_class(family, "Model")(hybrid_config(family, strategy, **fields)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # LayerNorms away from the identity, filters away from zero
            parameter.add_(torch.randn_like(parameter) * 0.2)
    block = model.layers[0]
    assert (block.mixer_norm is None) == fields["norm_first"]
    x = torch.randn(3, 9, 32) * 2 + 1
    with torch.no_grad():
        torch.testing.assert_close(block(x)[0], block_formula(block, x, seed_cascade(block, x)), atol=1e-5, rtol=1e-5)


def small_mixers(fft_shape=(16,), hidden_size=8):
    return [
        GlobalFilter(hidden_size, fft_shape),
        FourierMixer(fft_shape),
        SelfAttention(hidden_size, num_heads=2),
    ]


def hard_gate():
    """A hard gate over `small_mixers()` with a random filter and gate weights large enough to spread its choices."""
    mixer = AdaptiveMixer(small_mixers(), hidden_size=8, gate="hard")
    torch.nn.init.normal_(mixer.mixers[0].complex_weight)
    torch.nn.init.normal_(mixer.gate.weight, std=3.0)
    return mixer


def padded_batch(batch_size, lengths):
    """x: (B, 10, 8) and its mask, with row r padded after `lengths[r]` tokens."""
    mask = torch.ones(batch_size, 10, dtype=torch.bool)
    for row, length in lengths.items():
        mask[row, length:] = False
    return torch.randn(batch_size, 10, 8), mask


def test_hard_gate_returns_exactly_the_chosen_mixer_and_still_trains_the_gate():
    mixer = hard_gate()
    x, mask = padded_batch(6, {0: 7})
    out, _ = mixer(x, mask)
    choices = mixer.last_choices
    assert choices.shape == (6,) and mixer.last_gate_probs.shape == (6, 3)
    torch.testing.assert_close(mixer.last_gate_probs.sum(-1), torch.ones(6))
    for row, choice in enumerate(choices.tolist()):
        expected = mixer.mixers[choice](x[row : row + 1], mask[row : row + 1])
        expected = expected[0] if isinstance(expected, tuple) else expected
        torch.testing.assert_close(out[row : row + 1], expected, atol=1e-6, rtol=1e-6)
    out.square().sum().backward()
    assert mixer.gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_hard_gate_in_inference_runs_each_child_on_its_examples_only(mode):
    """Without autograd each child sees only the rows that chose it, and the outputs are those of the full path."""
    mixer = hard_gate().eval()
    x, mask = padded_batch(12, {0: 7, 5: 3})
    full, _ = mixer(x, mask)  # autograd on: every child on the whole batch
    seen = {}
    for index, child in enumerate(mixer.mixers):
        child.register_forward_hook(lambda module, args, output, index=index: seen.__setitem__(index, args[0].shape[0]))
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
        sparse, _ = mixer(x, mask)
    counts = torch.bincount(mixer.last_choices, minlength=3).tolist()
    assert len(seen) >= 2 and all(seen[index] == counts[index] for index in seen)
    assert sum(seen.values()) == 12 and set(seen) == {index for index, count in enumerate(counts) if count}
    torch.testing.assert_close(sparse, full.detach(), atol=1e-6, rtol=1e-6)


def test_hard_gate_in_training_mode_without_autograd_runs_every_child_on_the_whole_batch():
    """Reentrant gradient checkpointing runs its first forward without autograd, then recomputes with it: both
    must take the full path, or the children's dropout draws differ between the two."""
    mixer = hard_gate()
    x, mask = padded_batch(12, {0: 7})
    seen = []
    for child in mixer.mixers:
        child.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    with torch.no_grad():
        mixer(x, mask)
    assert seen == [12, 12, 12]


def test_gate_record_is_kept_from_the_last_eager_forward_through_function_transforms():
    """Inside vmap the record was a batched tensor that outlived its transform: reading it later raised."""
    mixer = hard_gate()
    x, mask = padded_batch(6, {0: 7})
    mixer(x, mask)
    probs, choices = mixer.last_gate_probs, mixer.last_choices
    torch.func.vmap(lambda example: mixer(example[None])[0])(x)
    assert mixer.last_gate_probs is probs and mixer.last_choices is choices
    assert mixer.last_gate_probs.argmax(-1).tolist() == choices.tolist()


def test_hard_gate_in_inference_under_autocast_matches_the_full_path():
    """Under autocast the attention child returns bfloat16 while the input stays float32."""
    mixer = hard_gate().eval()
    x, _ = padded_batch(12, {})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = mixer(x)
        with torch.no_grad():
            sparse, _ = mixer(x)
    assert 2 in mixer.last_choices.tolist() and sparse.dtype == full.dtype
    torch.testing.assert_close(sparse, full.detach())


def test_soft_gate_is_the_probability_weighted_sum():
    mixer = AdaptiveMixer(small_mixers(), hidden_size=8, gate="soft")
    torch.nn.init.normal_(mixer.mixers[0].complex_weight)
    x = torch.randn(4, 10, 8)
    out, _ = mixer(x)
    expected = sum(
        mixer.last_gate_probs[:, k, None, None] * (child(x)[0] if isinstance(child, SelfAttention) else child(x))
        for k, child in enumerate(mixer.mixers)
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_add_fusion_is_the_sum_of_the_children():
    mixer = MultiscaleMixer(small_mixers(), hidden_size=8, fusion="add")
    torch.nn.init.normal_(mixer.mixers[0].complex_weight)
    x = torch.randn(4, 10, 8)
    out, _ = mixer(x)
    expected = sum(child(x)[0] if isinstance(child, SelfAttention) else child(x) for child in mixer.mixers)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_multiscale_returns_the_attention_weights_of_a_child_before_others():
    layout = [{"strategy": "multiscale", "mixers": ["attention", "fourier"]}] * 2
    model = model_class("fnet_hybrid", "Model")(tiny_config("fnet_hybrid", mixer_layout=layout)).eval()
    with torch.no_grad():
        attentions = model(torch.randint(5, 99, (2, 5)), output_attentions=True).attentions
    assert [tuple(weights.shape) for weights in attentions] == [(2, 4, 5, 5)] * 2


def test_recorded_gate_probabilities_hold_no_graph():
    """`last_gate_probs` / `last_choices` are for inspection: kept with their graph, they would keep every
    activation of the step alive until the next forward."""
    layout = [{"strategy": "adaptive", "mixers": ["attention", "fourier"], "gate": "soft"}] * 2
    model = model_class("fnet_hybrid", "Model")(tiny_config("fnet_hybrid", mixer_layout=layout)).train()
    model(torch.randint(5, 99, (2, 5)))
    for mixer in (module for module in model.modules() if isinstance(module, AdaptiveMixer)):
        assert not mixer.last_gate_probs.requires_grad and mixer.last_gate_probs.grad_fn is None


def test_weighted_fusion_is_the_softmax_weighted_sum():
    """Off its uniform start (where softmax and other normalisations agree for two children)."""
    mixer = MultiscaleMixer(small_mixers(), hidden_size=8, fusion="weighted")
    torch.nn.init.normal_(mixer.mixers[0].complex_weight)
    with torch.no_grad():
        mixer.fusion_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(4, 10, 8)
    out, _ = mixer(x)
    weights = mixer.fusion_logits.softmax(0)
    expected = sum(
        weight * (child(x)[0] if isinstance(child, SelfAttention) else child(x))
        for weight, child in zip(weights, mixer.mixers)
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_gate_choices_of_a_model_are_recorded(family):
    model = model_class(family, "Model")(hybrid_config(family, "adaptive_hard")).eval()
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        model(input_ids, attention_mask=attention_mask)
    gate = model.layers[0].mixer
    assert gate.last_choices.shape == (3,)
    assert int(gate.last_choices.max()) < len(gate.mixers)


ATTENTION_LAYOUTS = {
    "plain": ["attention", "fourier"],
    "adaptive": [STRATEGIES["adaptive_hard"], "attention"],
    "multiscale": [STRATEGIES["multiscale_concat"], "global_filter"],
    "cascade": [STRATEGIES["cascade_shared_norm"], "afno"],
}


@pytest.mark.parametrize("layout", ATTENTION_LAYOUTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_eager_and_sdpa_give_equal_outputs_and_eager_returns_attentions(family, layout):
    config = tiny_config(family, mixer_layout=ATTENTION_LAYOUTS[layout])
    num_attention_layers = sum("attention" in json.dumps(entry) for entry in config.mixer_layout)
    sdpa = AutoModel.from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    eager = AutoModel.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        expected = sdpa(input_ids, attention_mask=attention_mask).last_hidden_state
        with mock.patch("torch.nn.functional.scaled_dot_product_attention", side_effect=AssertionError("sdpa")):
            output = eager(input_ids, attention_mask=attention_mask, output_attentions=True)
    torch.testing.assert_close(output.last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    assert len(output.attentions) == num_attention_layers
    for weights in output.attentions:
        assert weights.shape == (3, config.num_attention_heads, 9, 9)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, config.num_attention_heads, 9))
        padded_keys = ~attention_mask.bool()[:, None, None, :].expand_as(weights)
        assert weights[padded_keys].abs().max() == 0


def test_unknown_attention_implementation_is_rejected():
    layer = SelfAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r"\['eager', 'sdpa'\]"):
        layer(torch.randn(1, 4, 8), attn_implementation="flash")


@pytest.mark.parametrize("name", ["registered_attention", "some-org/some-kernel:attention"])
def test_a_registered_attention_function_or_hub_kernel_is_refused_when_building_or_switching(name, monkeypatch):
    """transformers accepts a name registered with AttentionInterface, or a hub kernel (`org/repo:function`, which
    it downloads and registers; simulated here); our layers would fail on it at the first forward, so building and
    `set_attn_implementation` refuse it, naming the two they run."""
    monkeypatch.setattr(modeling_utils, "lazy_import_flash_attention",
                        lambda kernel, **kwargs: AttentionInterface.register(kernel, sdpa_attention_forward))
    if name == "registered_attention":
        AttentionInterface.register(name, sdpa_attention_forward)
    try:
        with pytest.raises(ValueError, match=rf"must be one of \['eager', 'sdpa'\] for FNetHybridModel .*got '{name}'"):
            AutoModel.from_config(tiny_config("fnet_hybrid"), attn_implementation=name)
        model = AutoModel.from_config(tiny_config("fnet_hybrid"))
        with pytest.raises(ValueError, match=rf"got '{name}'"):
            model.set_attn_implementation(name)
        assert model.config._attn_implementation == "sdpa"
    finally:
        AttentionInterface._global_mapping.pop(name, None)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bfloat16_weights_give_close_outputs(strategy):
    model = model_class("afno", "Model")(hybrid_config("afno", strategy)).eval()
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
        output = model.to(torch.bfloat16)(input_ids, attention_mask=attention_mask).last_hidden_state
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected, atol=0.1, rtol=0.05)


def test_attention_implementation_can_be_switched_after_loading():
    model = model_class("fnet_hybrid", "Model")(tiny_config("fnet_hybrid")).eval()
    input_ids, attention_mask = text_batch()
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
        model.set_attn_implementation("eager")
        with mock.patch("torch.nn.functional.scaled_dot_product_attention", side_effect=AssertionError("sdpa")):
            output = model(input_ids, attention_mask=attention_mask).last_hidden_state
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make_mixer",
    [
        lambda children: AdaptiveMixer(children, hidden_size=8, gate="hard"),
        lambda children: MultiscaleMixer(children, hidden_size=8, fusion="concat"),
        lambda children: CascadeMixer(children, hidden_size=8),
    ],
    ids=["adaptive", "multiscale", "cascade"],
)
def test_composite_mixers_work_on_image_grids_and_keep_padding_out(make_mixer):
    mixer = make_mixer(small_mixers(fft_shape=(5, 6)))
    torch.nn.init.normal_(mixer.mixers[0].complex_weight)
    x = torch.randn(2, 4, 6, 8)  # (B, H, W, D), a grid smaller than the FFT size
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[1, 3:] = False
    garbage = x.clone()
    garbage[1, 3:] = 1e3
    out, _ = mixer(x, mask)
    assert out.shape == x.shape
    torch.testing.assert_close(mixer(garbage, mask)[0][mask], out[mask], atol=1e-5, rtol=1e-5)
