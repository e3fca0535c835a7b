"""Shared runners over every family x head: the conventions transformers users rely on."""

import copy

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorWithFlattening,
)
from transformers.testing_utils import CaptureLogger

from conftest import CONFIG_CLASSES, FAMILIES, Wrapper, model_class, tiny_config, tiny_config_of
from fourierformers import GFNetPreTrainedModel
from fourierformers.dropout import Dropout
from fourierformers.spectral_layers import AttentionPooling, DropPath, sinusoidal_position_table

HEADS = {
    "Model": AutoModel,
    "ForSequenceClassification": AutoModelForSequenceClassification,
    "ForTokenClassification": AutoModelForTokenClassification,
    "ForMaskedLM": AutoModelForMaskedLM,
    "ForQuestionAnswering": AutoModelForQuestionAnswering,
    "ForMultipleChoice": AutoModelForMultipleChoice,
}
CASES = [(family, head) for family in FAMILIES for head in HEADS]
CASE_IDS = [f"{family}-{head}" for family, head in CASES]
BATCH, LENGTH, CHOICES = 3, 10, 2


def make_inputs(config, batch=BATCH, length=LENGTH, head=None):
    """A padded batch (rows 1 and 2 end in padding); for a multiple-choice head the same built for batch x CHOICES
    sequences and shaped (batch, CHOICES, length)."""
    rows = batch * CHOICES if head == "ForMultipleChoice" else batch
    input_ids = torch.randint(5, config.vocab_size, (rows, length))
    attention_mask = torch.ones(rows, length, dtype=torch.long)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    input_ids[attention_mask == 0] = config.pad_token_id
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 3:] = min(1, config.type_vocab_size - 1) if config.type_vocab_size else 0
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if head == "ForMultipleChoice":
        inputs = {name: tensor.reshape(batch, CHOICES, length) for name, tensor in inputs.items()}
    return inputs


def sequences(inputs):
    """`make_inputs`'s inputs as the (sequences, length) batch a backbone runs: multiple-choice ones flattened."""
    return {name: tensor.reshape(-1, tensor.shape[-1]) for name, tensor in inputs.items()}


def make_labels(config, head, batch=BATCH, length=LENGTH):
    if head == "ForSequenceClassification":
        return torch.randint(0, config.num_labels, (batch,))
    if head == "ForTokenClassification":
        return torch.randint(0, config.num_labels, (batch, length))
    if head == "ForMaskedLM":
        labels = torch.full((batch, length), -100)
        labels[:, ::3] = torch.randint(0, config.vocab_size, labels[:, ::3].shape)
        return labels
    if head == "ForMultipleChoice":
        return torch.randint(0, CHOICES, (batch,))
    return None


def label_kwargs(config, head, batch=BATCH, length=LENGTH):
    """The keyword arguments that make `head` compute its loss (none for the backbone)."""
    if head == "ForQuestionAnswering":
        start = torch.randint(0, length, (batch,))
        return dict(start_positions=start, end_positions=torch.minimum(start + 2, torch.tensor(length - 1)))
    labels = make_labels(config, head, batch, length)
    return {} if labels is None else dict(labels=labels)


def main_output(outputs, head):
    if head == "Model":
        return outputs.last_hidden_state
    if head == "ForQuestionAnswering":
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)  # (B, T, 2)
    return outputs.logits


def build(family, head, **overrides):
    return model_class(family, head)(tiny_config(family, **overrides)).eval()


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_output_shapes(family, head):
    model = build(family, head)
    config = model.config
    outputs = model(**make_inputs(config, head=head))
    expected = {
        "Model": (BATCH, LENGTH, config.hidden_size),
        "ForSequenceClassification": (BATCH, config.num_labels),
        "ForTokenClassification": (BATCH, LENGTH, config.num_labels),
        "ForMaskedLM": (BATCH, LENGTH, config.vocab_size),
        "ForQuestionAnswering": (BATCH, LENGTH, 2),
        "ForMultipleChoice": (BATCH, CHOICES),
    }[head]
    assert main_output(outputs, head).shape == expected
    if head == "Model":
        assert outputs.pooler_output.shape == (BATCH, config.hidden_size)


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_loss_backward_reaches_every_parameter(family, head):
    model = build(family, head).train()
    inputs = make_inputs(model.config, head=head)
    labels = label_kwargs(model.config, head)
    if not labels:
        outputs = model(**inputs)
        loss = outputs.last_hidden_state.pow(2).mean() + outputs.pooler_output.pow(2).mean()
    else:
        loss = model(**inputs, **labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    missing = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert missing == []


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("length", [10, 64])
def test_fine_tuning_with_frozen_mixers_after_inference_mode(family, length):
    """Serve in `torch.inference_mode()`, then fine-tune with the token mixers frozen: nothing the mixers cached
    during inference (filters, block weights, DFT matrices) may reach autograd, which refuses to save inference
    tensors for a backward pass. 10 tokens take the short-input paths of a model built for 64, 64 the full ones."""
    model = build(family, "ForSequenceClassification", max_position_embeddings=64)
    inputs = make_inputs(model.config, length=length)
    with torch.inference_mode():
        model(**inputs)
    for layer in model.base_model.layers:
        layer.mixer.requires_grad_(False)
    model.train()
    model(**inputs, labels=make_labels(model.config, "ForSequenceClassification", length=length)).loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_save_and_reload_through_auto_classes(family, head, tmp_path):
    model = build(family, head)
    inputs = make_inputs(model.config, head=head)
    model.save_pretrained(tmp_path)
    reloaded, info = HEADS[head].from_pretrained(tmp_path, output_loading_info=True)
    assert type(reloaded) is type(model)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    # transformers keeps the memory-mapped file's tensors, which safetensors packs only 4-byte aligned; BLAS sums a
    # misaligned matrix-vector product in another order (3e-7 off on one-token inputs), so weights must be realigned.
    misaligned = [name for name, tensor in [*reloaded.named_parameters(), *reloaded.named_buffers()]
                  if tensor.data_ptr() % 64]
    assert not misaligned
    with torch.no_grad():
        torch.testing.assert_close(main_output(reloaded.eval()(**inputs), head), main_output(model(**inputs), head),
                                   atol=0, rtol=0)


VARIANTS = {
    "gfnet": dict(),
    "gfnet-sigmoid-cls-pooler": dict(filter_activation="sigmoid", pooling="cls", pooler_projection=True),
    "gfnet-original-block": dict(mixer_residual=False, layer_scale_init_value=0.5, layer_norm_eps=1e-6),
    "gfnet-sinusoidal": dict(position_embedding_type="sinusoidal", type_vocab_size=0),
    "gfnet-max-pooling": dict(pooling="max"),
    "gfnet-attention-pooling": dict(pooling="attention"),
    "afno": dict(),
    "afno-truncated-post-norm": dict(afno_num_modes=4, norm_first=False, afno_hidden_size_factor=2),
    "fnet_hybrid": dict(),
    "fnet_hybrid-ortho-mean-no-positions": dict(fourier_norm="ortho", pooling="mean", position_embedding_type="none"),
    "fnet_hybrid-attention-first": dict(mixer_layout=["attention", "fourier"], norm_first=True),
    "gfnet-mixed-layout": dict(mixer_layout=["afno", "global_filter"], drop_path_rate=0.1),
    "gfnet-rms-norm-no-mlp": dict(norm_type="rms_norm", intermediate_size=0, layer_scale_init_value=0.5),
    "afno-post-norm-no-mlp": dict(norm_first=False, intermediate_size=0),
    "afno-gelu-dropout": dict(afno_activation="gelu", afno_dropout=0.1),
}


@pytest.mark.parametrize("norm_first", [True, False])
def test_blocks_without_mlp_are_their_mixer_branch(norm_first):
    """`intermediate_size=0` builds no MLP, no MLP norm and no MLP LayerScale (nvSubquadratic's mixer-only ablation),
    and a block is its mixer branch: `x + mixer(norm(x))` pre-norm, `norm(x + mixer(x))` post-norm."""
    model = build("gfnet", "Model", intermediate_size=0, norm_first=norm_first, layer_scale_init_value=0.5)
    assert not any(".mlp" in name for name, _ in model.named_parameters())
    block = model.layers[0]
    torch.nn.init.normal_(block.mixer.complex_weight, std=0.3)
    x = torch.randn(2, 24, 32)
    with torch.no_grad():
        if norm_first:
            expected = x + block.mixer_layer_scale(block.mixer(block.mixer_norm(x)))
        else:
            expected = block.mixer_norm(x + block.mixer_layer_scale(block.mixer(x)))
        torch.testing.assert_close(block(x)[0], expected)


def test_afno_activation_and_dropout_reach_the_mixers():
    model = build("afno", "Model", afno_activation="gelu", afno_dropout=0.25)
    mixers = [layer.mixer for layer in model.layers]
    assert all(mixer.activation is not None and mixer.activation(torch.tensor(-1.0)) < 0 for mixer in mixers)
    assert all(mixer.dropout.p == 0.25 for mixer in mixers)
    assert all(mixer.activation is None for mixer in (layer.mixer for layer in build("afno", "Model").layers))


def test_rms_norm_replaces_every_learned_norm():
    """`norm_type="rms_norm"` reaches the embedding norm, block norms, cascade stages, the final norm and the
    masked-LM head: the same modules as with LayerNorm, each an RMSNorm."""
    layout = [{"strategy": "cascade", "mixers": ["fourier", "global_filter"]}, "afno"]
    options = dict(mixer_layout=layout, condition_type="cross_attention", condition_size=8)

    def norms(norm_type):
        model = build("gfnet", "ForMaskedLM", norm_type=norm_type, **options)
        return {name: type(module) for name, module in model.named_modules()
                if isinstance(module, (torch.nn.LayerNorm, torch.nn.RMSNorm))}

    layer_norms, rms_norms = norms("layer_norm"), norms("rms_norm")
    assert set(layer_norms.values()) == {torch.nn.LayerNorm} and set(rms_norms.values()) == {torch.nn.RMSNorm}
    # embeddings; cascade stages 2, condition and MLP norms of layer 0; mixer, condition and MLP norms of layer 1;
    # final norm; masked-LM head
    assert layer_norms.keys() == rms_norms.keys() and len(rms_norms) == 10


def variant(name):
    return build(name.split("-")[0], "ForSequenceClassification", **VARIANTS[name])


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_does_not_change_outputs(name):
    """A sequence alone, and the same sequence right-padded by several amounts in a batch, give the same outputs."""
    model = variant(name)
    sequence = torch.randint(5, model.config.vocab_size, (1, 9))
    with torch.no_grad():
        alone = model(sequence, output_hidden_states=True)
        for pad in (1, 6, 15):
            ids = torch.cat([sequence, torch.full((1, pad), model.config.pad_token_id)], dim=1)
            ids = torch.cat([ids, torch.randint(5, model.config.vocab_size, (1, ids.shape[1]))])  # a full-length row
            mask = torch.ones_like(ids)
            mask[0, 9:] = 0
            padded = model(ids, attention_mask=mask, output_hidden_states=True)
            torch.testing.assert_close(padded.logits[:1], alone.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(padded.hidden_states[-1][:1, :9], alone.hidden_states[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooler_projection_is_dense_then_tanh(pooling):
    """`pooler_projection=True` is BERT's and FNet's pooler: tanh(dense(pooled tokens))."""
    model = build("fnet_hybrid", "Model", pooling=pooling, pooler_projection=True)
    torch.nn.init.normal_(model.pooler.dense.weight, std=1.0)  # outputs far from tanh's linear range
    input_ids = torch.randint(5, 99, (2, 7))
    with torch.no_grad():
        outputs = model(input_ids)
        tokens = outputs.last_hidden_state
        pooled = tokens[:, 0] if pooling == "cls" else tokens.mean(dim=1)
        torch.testing.assert_close(outputs.pooler_output, torch.tanh(model.pooler.dense(pooled)))
    assert outputs.pooler_output.abs().max() > 0.9


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_heads_return_the_backbones_hidden_states(family, head):
    """A head's `hidden_states` are its backbone's, in order: the embeddings first, the last block's output (before
    the final norm of pre-norm models) last."""
    model = build(family, head)
    inputs = make_inputs(model.config, head=head)
    flat = sequences(inputs)
    with torch.no_grad():
        states = model(**inputs, output_hidden_states=True).hidden_states
        backbone_states = model.base_model(**flat, output_hidden_states=True).hidden_states
        embeddings = model.base_model.embeddings(flat["input_ids"], token_type_ids=flat["token_type_ids"])
    assert len(states) == len(backbone_states) == model.config.num_hidden_layers + 1
    for state, backbone_state in zip(states, backbone_states):
        torch.testing.assert_close(state, backbone_state, atol=0, rtol=0)
    torch.testing.assert_close(states[0], embeddings, atol=0, rtol=0)


@pytest.mark.parametrize("head", ["Model", "ForSequenceClassification", "ForTokenClassification", "ForMaskedLM"])
def test_config_output_flags_are_the_defaults(head):
    """`config.output_hidden_states` / `output_attentions` return them without the call asking, as in transformers;
    the call's argument overrides the config."""
    model = build("fnet_hybrid", head, output_hidden_states=True, output_attentions=True)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        outputs = model(**inputs)
        plain = model(**inputs, output_hidden_states=False, output_attentions=False)
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1 and len(outputs.attentions) == 1
    assert plain.hidden_states is None and plain.attentions is None


def test_attention_pooling_matches_reference():
    """Each head's channels are averaged over the real tokens with the softmax of that head's scores."""
    torch.manual_seed(0)
    pooling = AttentionPooling(hidden_size=8, num_heads=2)
    torch.nn.init.normal_(pooling.scores.weight, std=1.0)  # weights far from uniform, unlike at initialisation
    x = torch.randn(3, 5, 8)
    lengths = [5, 3, 1]
    mask = torch.arange(5)[None] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        pooled = pooling(x, mask)
        for row, length in enumerate(lengths):
            for head in range(2):
                scores = x[row, :length] @ pooling.scores.weight[head] + pooling.scores.bias[head]
                channels = x[row, :length, 4 * head : 4 * head + 4]
                expected = (scores.softmax(dim=0)[:, None] * channels).sum(dim=0)
                torch.testing.assert_close(pooled[row, 4 * head : 4 * head + 4], expected)


@pytest.mark.parametrize("name", VARIANTS)
def test_batched_equals_row_by_row(name):
    model = variant(name)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        batched = model(**inputs).logits
        for row in range(BATCH):
            length = int(inputs["attention_mask"][row].sum())
            single = model(inputs["input_ids"][row : row + 1, :length],
                           token_type_ids=inputs["token_type_ids"][row : row + 1, :length]).logits
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_save_and_reload(name, tmp_path):
    model = variant(name)
    inputs = make_inputs(model.config)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_inputs_embeds_equal_input_ids(family, head):
    model = build(family, head)
    inputs = make_inputs(model.config, head=head)
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with torch.no_grad():
        from_ids = main_output(model(**inputs), head)
        from_embeds = main_output(model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"],
                                        token_type_ids=inputs["token_type_ids"]), head)
    torch.testing.assert_close(from_embeds, from_ids, atol=0, rtol=0)


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_hidden_states_and_tuple_outputs(family, head):
    model = build(family, head)
    inputs = make_inputs(model.config, head=head)
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
        as_tuple = model(**inputs, output_hidden_states=True, return_dict=False)
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1
    rows = len(sequences(inputs)["input_ids"])  # a multiple-choice model's backbone runs every choice
    assert all(h.shape == (rows, LENGTH, model.config.hidden_size) for h in outputs.hidden_states)
    flat_dict = [t for value in outputs.to_tuple() for t in (value if isinstance(value, tuple) else (value,))]
    flat_tuple = [t for value in as_tuple for t in (value if isinstance(value, tuple) else (value,))]
    assert len(flat_dict) == len(flat_tuple)
    for a, b in zip(flat_dict, flat_tuple):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_gradient_checkpointing_gives_the_same_gradients(family, head):
    model = build(family, head, drop_path_rate=0.0).train()
    inputs = make_inputs(model.config, head=head)
    labels = label_kwargs(model.config, head)

    def gradients():
        model.zero_grad()
        outputs = model(**inputs, **labels)
        loss = outputs.loss if labels else outputs.last_hidden_state.pow(2).mean()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.base_model.layers)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_is_finite_and_close_to_float32(family):
    model = build(family, "ForSequenceClassification", initializer_range=0.02)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        reference = model(**inputs).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(**inputs).logits
        half = model.to(torch.bfloat16)(**inputs).logits
        float32_embeddings = model.get_input_embeddings()(inputs["input_ids"]).float()
        from_embeddings = model(**{**inputs, "input_ids": None, "inputs_embeds": float32_embeddings}).logits
    for logits in (autocast, half):
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(from_embeddings, half, atol=0, rtol=0)  # float32 embeddings are cast, as pixels are


def test_stochastic_depth_grows_linearly_over_the_layers():
    """As in timm and GFNet: layer i of n drops its branches with probability drop_path_rate * i / (n - 1)."""
    model = build("gfnet", "Model", num_hidden_layers=3, mixer_layout=None, drop_path_rate=0.3)
    assert [layer.drop_path.drop_prob for layer in model.layers] == pytest.approx([0.0, 0.15, 0.3])


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_is_deterministic(family):
    """Every dropout (hidden, attention probabilities, stochastic depth) is off in eval mode."""
    layout = ["attention", CONFIG_CLASSES[family].default_mixer]
    model = build(family, "ForMaskedLM", mixer_layout=layout, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5,
                  drop_path_rate=0.5)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs).logits)


def test_drop_path_drops_whole_samples_and_keeps_the_expected_value():
    out = DropPath(0.5).train()(torch.ones(4000, 3, 8))
    per_sample = out.flatten(1)
    assert ((per_sample == 0) | (per_sample == 2)).all() and (per_sample == per_sample[:, :1]).all()
    assert abs(out.mean().item() - 1) < 0.05


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForTokenClassification", "ForMultipleChoice"])
def test_classifier_dropout_acts_on_the_classifier_input(family, head):
    """`classifier_dropout` (not `hidden_dropout_prob`, here 0) is the dropout before the classifier."""
    for rate, varies in ((0.5, True), (None, False)):
        model = build(family, head, classifier_dropout=rate).train()
        inputs = make_inputs(model.config, head=head)
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, model(**inputs).logits) != varies


@pytest.mark.parametrize("family", FAMILIES)
def test_initialisation_follows_the_config(family):
    """Mixer weights and linear layers are drawn with std `initializer_range`, LayerScale starts at
    `layer_scale_init_value`."""
    layout = [CONFIG_CLASSES[family].default_mixer, "attention"]
    model = build(family, "Model", mixer_layout=layout, initializer_range=0.5, layer_scale_init_value=0.1,
                  hidden_size=64, intermediate_size=128)
    mixer_weights = {"gfnet": ["complex_weight"], "afno": ["w1", "w2"], "fnet_hybrid": []}[family]
    for name in mixer_weights:
        assert getattr(model.layers[0].mixer, name).std().item() == pytest.approx(0.5, rel=0.1), name
    assert model.layers[0].mlp.fc1.weight.std().item() == pytest.approx(0.5, rel=0.1)
    assert model.layers[1].mixer.q_proj.weight.std().item() == pytest.approx(0.5, rel=0.1)
    gammas = [module.gamma for module in model.modules() if hasattr(module, "gamma")]
    assert len(gammas) == 2 * len(model.layers)
    assert all(torch.equal(gamma, torch.full_like(gamma, 0.1)) for gamma in gammas)


def test_sinusoidal_positions_are_the_transformer_table():
    """sin(p / 10000^(2i/d)) in even channels, cos in odd ones (Vaswani et al.)."""
    table = sinusoidal_position_table(7, 8)
    angles = torch.arange(7.0)[:, None] / 10000 ** (torch.arange(0, 8, 2.0) / 8)
    torch.testing.assert_close(table[:, 0::2], torch.sin(angles))
    torch.testing.assert_close(table[:, 1::2], torch.cos(angles))


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_acts_in_training_only(family, monkeypatch):
    """Dropout makes no torch call in eval mode or at probability 0 (`fourierformers.dropout`); in training it drops."""
    model = build(family, "ForSequenceClassification", hidden_dropout_prob=0.5)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        first = model.train()(**inputs).logits
        assert not torch.allclose(first, model(**inputs).logits)
        with monkeypatch.context() as patched:
            patched.setattr(F, "dropout", lambda *args, **kwargs: pytest.fail("F.dropout called in eval mode"))
            evaluated = model.eval()(**inputs).logits
            assert torch.equal(evaluated, model(**inputs).logits) and not torch.allclose(first, evaluated)
            x = torch.randn(4, 8)
            assert Dropout(0.0).train()(x) is x


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "problem_type,num_labels,label_kind",
    [("regression", 1, "float"), ("single_label_classification", 3, "index"),
     ("multi_label_classification", 3, "multi_hot"),
     (None, 1, "float"), (None, 3, "index"), (None, 3, "multi_hot"), (None, 3, "soft_multi_hot"),
     (None, 3, "index_column"), ("single_label_classification", 3, "index_column")],
)
def test_problem_types(family, problem_type, num_labels, label_kind):
    model = build(family, "ForSequenceClassification", num_labels=num_labels, problem_type=problem_type)
    inputs = make_inputs(model.config)
    labels = {
        "float": torch.randn(BATCH) if num_labels == 1 else torch.randn(BATCH, num_labels),
        "index": torch.randint(0, num_labels, (BATCH,)),
        "index_column": torch.randint(0, num_labels, (BATCH, 1)),  # as BertForSequenceClassification accepts
        "multi_hot": torch.randint(0, 2, (BATCH, num_labels)).float(),
        "soft_multi_hot": torch.rand(BATCH, num_labels),
    }[label_kind]
    outputs = model(**inputs, labels=labels)
    logits = outputs.logits
    expected = {
        "float": lambda: torch.nn.functional.mse_loss(logits.squeeze(-1), labels),
        "index": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "index_column": lambda: torch.nn.functional.cross_entropy(logits, labels.view(-1)),
        "multi_hot": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
        "soft_multi_hot": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
    }[label_kind]()
    torch.testing.assert_close(outputs.loss, expected)
    inferred = {
        "float": "regression",
        "index": "single_label_classification",
        "index_column": "single_label_classification",
        "multi_hot": "multi_label_classification",
        "soft_multi_hot": "multi_label_classification",
    }
    assert model.config.problem_type == inferred[label_kind]
    # Trainer passes the number of label items of the whole step; the loss becomes a sum over that count.
    summed = model(**inputs, labels=labels, num_items_in_batch=torch.tensor(2 * labels.numel())).loss
    torch.testing.assert_close(summed, expected / 2)


@pytest.mark.parametrize("head", ["ForTokenClassification", "ForMaskedLM"])
def test_token_losses_ignore_minus_100_and_count_items(head):
    model = build("gfnet", head)
    inputs = make_inputs(model.config)
    labels = make_labels(model.config, head)
    labels[0] = -100
    outputs = model(**inputs, labels=labels)
    kept = labels != -100
    expected = torch.nn.functional.cross_entropy(outputs.logits[kept], labels[kept])
    torch.testing.assert_close(outputs.loss, expected)
    summed = model(**inputs, labels=labels, num_items_in_batch=kept.sum() * 4).loss
    torch.testing.assert_close(summed, expected / 4)
    for fraction in (0.5, torch.tensor(0.5)):  # Trainer divides its count by the tensor-parallel size
        halved = model(**inputs, labels=labels, num_items_in_batch=fraction).loss
        torch.testing.assert_close(halved, expected * kept.sum() * 2)
    # the plain mean is NaN; Trainer counts 0 items for such a batch (an evaluation batch with no masked token)
    for count in (None, 0, torch.tensor(0)):
        model.zero_grad()
        nothing_labelled = model(**inputs, labels=torch.full_like(labels, -100), num_items_in_batch=count).loss
        nothing_labelled.backward()
        assert nothing_labelled.item() == 0
        gradients = [p.grad for p in model.parameters() if p.grad is not None]
        assert gradients and all(torch.equal(gradient, torch.zeros_like(gradient)) for gradient in gradients)


def test_question_answering_loss_is_transformers_span_loss():
    """The mean of the start and end cross-entropies, positions at or past the input's end (answers cut off by
    truncation) left out as transformers' question-answering heads do (their clamp to an ignored index), and -100
    left out as in every other loss (BERT's clamp would make it the first token); with Trainer's
    `num_items_in_batch`, sums over that count."""
    model = build("gfnet", "ForQuestionAnswering")
    inputs = make_inputs(model.config)
    start, end = torch.tensor([2, LENGTH + 5, -100]), torch.tensor([[4], [1], [LENGTH]])
    outputs = model(**inputs, start_positions=start, end_positions=end)
    ignored = LENGTH  # BertForQuestionAnswering: positions.clamp(0, T), ignore_index=T
    bert_start = torch.where(start == -100, ignored, start).clamp(0, ignored)
    start_loss = F.cross_entropy(outputs.start_logits, bert_start, ignore_index=ignored)
    bert_end = end.squeeze(-1).clamp(0, ignored)
    end_loss = F.cross_entropy(outputs.end_logits, bert_end, ignore_index=ignored)
    torch.testing.assert_close(outputs.loss, (start_loss + end_loss) / 2)
    summed = model(**inputs, start_positions=start, end_positions=end, num_items_in_batch=4).loss
    expected = (F.cross_entropy(outputs.start_logits[:1], start[:1], reduction="sum")
                + F.cross_entropy(outputs.end_logits[:2], bert_end[:2], reduction="sum")) / 4 / 2
    torch.testing.assert_close(summed, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_multiple_choice_scores_each_choice_as_a_sequence_alone(family):
    """Every (batch, choice) sequence is scored as it would be alone and unpadded: the choices of an example and the
    padding of the others change nothing; the loss is the cross-entropy over an example's choices."""
    model = build(family, "ForMultipleChoice")
    inputs = make_inputs(model.config, head="ForMultipleChoice")
    labels = torch.tensor([1, 0, -100])
    with torch.no_grad():
        outputs = model(**inputs, labels=labels)
        for row in range(BATCH):
            for choice in range(CHOICES):
                length = int(inputs["attention_mask"][row, choice].sum())
                alone = model(inputs["input_ids"][row : row + 1, choice : choice + 1, :length],
                              token_type_ids=inputs["token_type_ids"][row : row + 1, choice : choice + 1, :length])
                torch.testing.assert_close(alone.logits[0, 0], outputs.logits[row, choice], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits[:2], labels[:2]))
    summed = model(**inputs, labels=labels, num_items_in_batch=4).loss  # Trainer's count of the step's labels
    torch.testing.assert_close(summed, F.cross_entropy(outputs.logits[:2], labels[:2], reduction="sum") / 4)


@pytest.mark.parametrize("head", ["ForQuestionAnswering", "ForMultipleChoice"])
def test_trainer_evaluates_and_predicts_spans_and_choices(head, tmp_path):
    """Trainer finds the span heads' labels (`start_positions`, `end_positions`) by the class name, as
    transformers' run_qa relies on: evaluation reports the model's loss over the data, and `predict` returns the
    (start, end) logits or the choice scores with the labels beside them."""
    datasets = pytest.importorskip("datasets")
    model = build("gfnet", head)
    inputs = make_inputs(model.config, batch=4, head=head)
    labels = label_kwargs(model.config, head, batch=4)
    dataset = datasets.Dataset.from_dict({**inputs, **labels}).with_format("torch")
    arguments = transformers.TrainingArguments(tmp_path, per_device_eval_batch_size=2, report_to=[], use_cpu=True)
    trainer = transformers.Trainer(model, arguments, eval_dataset=dataset)
    with torch.no_grad():
        halves = [model(**{k: v[rows] for k, v in {**inputs, **labels}.items()}).loss for rows in (slice(0, 2),
                                                                                                   slice(2, 4))]
        outputs = model(**inputs)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(float(sum(halves) / 2), rel=1e-5)
    predicted = trainer.predict(dataset)
    if head == "ForQuestionAnswering":
        start_logits, end_logits = predicted.predictions
        torch.testing.assert_close(torch.as_tensor(start_logits), outputs.start_logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.as_tensor(end_logits), outputs.end_logits, atol=1e-6, rtol=0)
        assert [list(ids) for ids in predicted.label_ids] == [labels["start_positions"].tolist(),
                                                              labels["end_positions"].tolist()]
    else:
        torch.testing.assert_close(torch.as_tensor(predicted.predictions), outputs.logits, atol=1e-6, rtol=0)
        assert list(predicted.label_ids) == labels["labels"].tolist()


@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForPatchRegression"])
def test_regression_losses_ignore_minus_100_as_trainer_counts_them(head):
    """Trainer's `num_items_in_batch` counts the labels that are not -100; a -100 target counted in the sum of squared
    errors made the loss 4/3 of the MSE for a batch of four with one such target."""
    if head == "ForPatchRegression":
        model = build("gfnet", head, image_size=8, patch_size=4, num_output_channels=2)
        inputs = dict(pixel_values=torch.randn(BATCH, 3, 8, 8))
        labels = torch.randn(BATCH, 2, 8, 8)
        labels[0, 1, :3] = -100
    else:
        model = build("gfnet", head, num_labels=2, problem_type="regression")
        inputs = make_inputs(model.config)
        labels = torch.randn(BATCH, 2)
        labels[1, 0] = -100
    outputs = model(**inputs, labels=labels)
    predictions = outputs.predictions if head == "ForPatchRegression" else outputs.logits
    kept = labels != -100
    expected = torch.nn.functional.mse_loss(predictions[kept], labels[kept])
    torch.testing.assert_close(outputs.loss, expected)
    torch.testing.assert_close(model(**inputs, labels=labels, num_items_in_batch=kept.sum()).loss, expected)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForTokenClassification", "ForMaskedLM"])
def test_integer_labels_of_any_dtype_are_class_indices(head, dtype):
    """Labels from numpy arrays are often int32: every integer dtype gives the int64 loss, and a sequence head
    infers single-label classification from it."""
    model = build("gfnet", head)
    inputs = make_inputs(model.config)
    labels = make_labels(model.config, head)
    if not dtype.is_signed:
        labels = labels.clamp(min=0)  # -100 has no unsigned value
    loss = model(**inputs, labels=labels.to(dtype)).loss
    if head == "ForSequenceClassification":
        assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(loss, model(**inputs, labels=labels).loss, atol=0, rtol=0)


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForImageClassification"])
def test_from_pretrained_of_a_state_dict_without_a_folder(head):
    """transformers' documented `from_pretrained(None, config=..., state_dict=...)` builds the model from memory."""
    image_fields = dict(image_size=8, patch_size=2, mixer_layout=None) if head == "ForImageClassification" else {}
    model = model_class("gfnet", head)(tiny_config("gfnet", **image_fields)).eval()
    loaded = model_class("gfnet", head).from_pretrained(None, config=model.config, state_dict=model.state_dict())
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("family", FAMILIES)
def test_from_pretrained_with_fewer_layers_and_their_layout(family, tmp_path):
    """The overrides the layout-length error asks for: `num_hidden_layers` with a `mixer_layout` of as many entries
    loads the first layers of a checkpoint, and the smaller model saves and reloads."""
    model = build(family, "ForSequenceClassification")
    model.save_pretrained(tmp_path / "full")
    first = model.config.mixer_layout[:1]
    smaller = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full", num_hidden_layers=1,
                                                                 mixer_layout=first).eval()
    assert len(smaller.base_model.layers) == 1 and smaller.config.mixer_layout == first
    torch.testing.assert_close(smaller.base_model.layers[0].state_dict(), model.base_model.layers[0].state_dict())
    smaller.save_pretrained(tmp_path / "smaller")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "smaller").eval()
    inputs = make_inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, smaller(**inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("layout", [
    {"pattern": ["global_filter", "fourier"]},
    [{"strategy": "cascade", "mixers": ["fourier", "afno"]}, {"strategy": "adaptive", "mixers": ["fourier", "afno"]}],
], ids=["compact", "strategy options left out"])
def test_layout_set_after_creation_is_expanded_when_a_model_is_built(layout):
    """A layout given as a `from_pretrained` keyword or assigned to an existing config skips `__post_init__`; the
    model expands it as the constructor would (the compact form repeated, default strategy options filled in)."""
    config = tiny_config("gfnet")
    config.mixer_layout = copy.deepcopy(layout)
    model = model_class("gfnet", "Model")(config)
    expected = tiny_config("gfnet", mixer_layout=copy.deepcopy(layout)).mixer_layout
    assert config.mixer_layout == expected and len(model.layers) == 2


@pytest.mark.parametrize("problem_type", [None, "multi_label_classification"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.uint64, torch.int32, torch.bool])
def test_integer_multi_hot_labels_are_multi_label(dtype, problem_type):
    """Integer (or bool) labels of shape (B, num_labels), e.g. a uint8 mask, are multi-hot; of shape (B,), class
    indices. Their values are checked as floats: torch has no comparisons for uint16 to uint64."""
    model = build("gfnet", "ForSequenceClassification", problem_type=problem_type)
    inputs = make_inputs(model.config)
    multi_hot = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    loss = model(**inputs, labels=multi_hot.to(dtype)).loss
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(loss, model(**inputs, labels=multi_hot.float()).loss)
    if dtype != torch.bool:
        with pytest.raises(ValueError, match=r"values in \[0, 1\].*got 2\.0"):
            model(**inputs, labels=(multi_hot * 2).to(dtype))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("modality", ["text", "image"])
def test_set_input_embeddings_replaces_what_get_input_embeddings_returns(family, modality):
    """Text models embed with `word_embeddings`, image models with `patch_embeddings`: set and get are symmetric,
    on the backbone and through a head, and the forward pass uses the new module."""
    if modality == "text":
        model = build(family, "ForSequenceClassification")
        inputs = make_inputs(model.config)
    else:
        model = build(family, "ForImageClassification", image_size=16, patch_size=4, num_channels=3)
        inputs = dict(pixel_values=torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        before = model(**inputs).logits
    for owner in (model.base_model, model):
        new = copy.deepcopy(owner.get_input_embeddings())
        with torch.no_grad():
            for parameter in new.parameters():
                parameter.mul_(2)
        owner.set_input_embeddings(new)
        assert owner.get_input_embeddings() is new and model.get_input_embeddings() is new
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, before)


@pytest.mark.parametrize("family", FAMILIES)
def test_mismatched_head_loads_with_ignore_mismatched_sizes(family, tmp_path):
    build(family, "ForSequenceClassification", num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(Exception, match="size mismatch|mismatched|shape"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 5
    assert torch.isfinite(model(**make_inputs(model.config)).logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_lm_decoder_is_tied_and_resizes(family, tmp_path):
    model = build(family, "ForMaskedLM")
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.decoder.weight is reloaded.get_input_embeddings().weight
    reloaded.resize_token_embeddings(120)
    assert reloaded.config.vocab_size == 120
    assert reloaded.lm_head.decoder.weight is reloaded.get_input_embeddings().weight
    assert reloaded.lm_head.decoder.out_features == 120
    ids = torch.randint(100, 120, (2, 6))
    assert reloaded(ids).logits.shape == (2, 6, 120)


@pytest.mark.parametrize("family,fields,warned", [
    ("afno", dict(position_embedding_type="sinusoidal"), True),
    ("fnet_hybrid", dict(position_embedding_type="none"), True),
    ("fnet_hybrid", dict(position_embedding_type="none", mixer_layout=["attention", "attention"]), False),
])
def test_loading_at_another_fft_length_warns_where_the_weights_still_fit(family, fields, warned, tmp_path):
    """Nothing in the load report shows that the Fourier and AFNO mixers transform over the new length; the length
    may come as a keyword or in `config=`, an object or a folder (which the warning missed)."""
    model = build(family, "Model", **fields)
    model.save_pretrained(tmp_path / "checkpoint")
    longer = copy.deepcopy(model.config)
    longer.max_position_embeddings = 48
    longer.save_pretrained(tmp_path / "longer")
    logger = transformers.logging.get_logger("fourierformers.checkpoint_loading")
    routes = [
        (AutoModel, dict(max_position_embeddings=48), warned),
        (type(model), dict(max_position_embeddings=48), warned),
        (type(model), dict(config=longer), warned),
        (type(model), dict(config=str(tmp_path / "longer")), warned),
        (AutoModel, {}, False),
    ]
    for loader, overrides, expected in routes:
        with CaptureLogger(logger) as captured:
            loader.from_pretrained(tmp_path / "checkpoint", **overrides)
        assert ("Loading with max_position_embeddings=48 instead of the checkpoint's 24" in captured.out) == expected


@pytest.mark.parametrize("fields", [
    dict(position_embedding_type="sinusoidal", mixer_layout=["global_filter", "fourier"]),
    dict(position_embedding_type="absolute", mixer_layout=["fourier", "fourier"]),
], ids=["global-filter", "learned-positions"])
def test_loading_at_another_fft_length_fails_without_the_warning_where_weights_do_not_fit(fields, tmp_path):
    """Global filters and learned positions are sized by the length: loading fails on their sizes, and the warning
    that the mixers transform over the new length (for weights that still fit) is not logged."""
    build("fnet_hybrid", "Model", **fields).save_pretrained(tmp_path)
    logger = transformers.logging.get_logger("fourierformers.checkpoint_loading")
    with CaptureLogger(logger) as captured, pytest.raises(ValueError, match="max_position_embeddings"):
        model_class("fnet_hybrid", "Model").from_pretrained(tmp_path, max_position_embeddings=48)
    assert "instead of the checkpoint's" not in captured.out


def test_resizing_below_the_pad_token_is_refused_and_an_invalid_config_saves_nothing(tmp_path):
    """Shrinking past pad_token_id used to succeed; save_pretrained then failed on the config after transformers had
    written the remote-code source files, leaving a folder without config or weights."""
    model = build("gfnet", "ForMaskedLM", pad_token_id=90)
    for size, multiple in [(50, None), (90, None), (85, 8)]:  # 85 rounds up to 88, still below 91
        with pytest.raises(ValueError, match=r"to \d+ tokens would drop pad_token_id=90; keep at least 91 tokens"):
            model.resize_token_embeddings(size, pad_to_multiple_of=multiple)
    assert model.config.vocab_size == 99 and model.get_input_embeddings().num_embeddings == 99
    assert model.resize_token_embeddings(89, pad_to_multiple_of=8).num_embeddings == 96  # rounded up: keeps 90
    model.resize_token_embeddings(91)
    model.config.pad_token_id = 95  # set by hand: the config is now invalid
    with pytest.raises(ValueError, match=r"`pad_token_id` \(95\) must be in \[0, vocab_size=91\)"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("family,head", CASES, ids=CASE_IDS)
def test_init_weights_sets_every_parameter_and_buffer(family, head, monkeypatch):
    """Uninitialised memory is poisoned with NaN: any parameter or buffer `_init_weights` misses stays NaN."""
    empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        return empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    model = model_class(family, head)(tiny_config(family, layer_scale_init_value=0.1,
                                                  position_embedding_type="sinusoidal"))
    monkeypatch.undo()
    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if not torch.isfinite(t).all()]
    assert bad == []


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fields", [dict(position_embedding_type="sinusoidal", drop_path_rate=0.1),
                                    dict(image_size=16, patch_size=4, mixer_layout=None)], ids=["text", "image"])
def test_builds_on_the_meta_device_as_big_model_loading_does(family, fields):
    """accelerate's init_empty_weights and `with torch.device("meta")` build without reading any value; to_empty and
    init_weights then give the buffers a normal build has."""
    config = tiny_config(family, **fields)
    head = "ForImageClassification" if "image_size" in fields else "ForSequenceClassification"
    with torch.device("meta"):
        model = model_class(family, head)(config)
    assert all(parameter.is_meta for parameter in model.parameters())
    model.to_empty(device="cpu").init_weights()
    expected = dict(model_class(family, head)(config).named_buffers())
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, expected[name], rtol=0, atol=0, msg=name)
    pixels = torch.randn(1, 3, 16, 16)
    inputs = dict(pixel_values=pixels) if "image_size" in fields else make_inputs(config)
    assert torch.isfinite(model.eval()(**inputs).logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_config_subclass_of_its_own_model_type_builds_and_loads(family, tmp_path):
    """A custom variant (`class MyConfig(GFNetConfig): model_type = "my_gfnet"`, a head subclass with that
    config_class, both registered with the Auto classes) builds, saves and loads as BERT's does; the family's own
    classes load its checkpoint and its classes the family's."""
    base_head = model_class(family, "ForSequenceClassification")
    base_config = base_head.config_class
    config_class = type(f"Custom{base_config.__name__}", (base_config,), {"model_type": f"custom_{family}"})
    head = type(f"Custom{base_head.__name__}", (base_head,), {"config_class": config_class})
    transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(config_class, head, exist_ok=True)
    config = tiny_config_of(config_class, family)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    inputs = make_inputs(config)
    assert type(model) is head and type(base_head(config)) is base_head
    model.save_pretrained(tmp_path / "custom")
    build(family, "ForSequenceClassification").save_pretrained(tmp_path / "family")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "custom").eval()
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits)
    assert type(reloaded) is head
    assert type(base_head.from_pretrained(tmp_path / "custom")) is base_head
    assert type(head.from_pretrained(tmp_path / "family")) is head


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_removed_after_building_are_refused_until_the_config_says_so(family, tmp_path):
    """Model surgery as on BERT: keep some blocks, tell the config, save and load; a config still describing the
    removed blocks is refused (it was saved, and its reload re-initialised them)."""
    model = build(family, "ForSequenceClassification", num_hidden_layers=3)
    backbone = model.base_model
    backbone.layers = backbone.layers[::2]
    input_ids = torch.randint(4, 99, (2, 7))
    with pytest.raises(ValueError, match=r"num_hidden_layers=3 \(built with 2\).*Where layers were removed, set "):
        model(input_ids)
    model.config.num_hidden_layers = 2
    model.config.mixer_layout = [layer.layout_entry for layer in backbone.layers]
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert len(reloaded.base_model.layers) == 2
    torch.testing.assert_close(reloaded(input_ids).logits, model(input_ids).logits)


def test_blocks_removed_from_a_hierarchical_model_are_refused(tmp_path):
    """Its stage boundaries are fixed when it is built: a block removed from the last stage was saved under a config
    still naming it (the reload re-initialised it), one removed from the first failed inside a LayerNorm."""
    for kept in ([0, 1, 2], [0, 2, 3]):
        model = build("gfnet", "ForImageClassification", image_size=16, patch_size=2, hidden_size=32,
                      hidden_sizes=[16, 32], depths=[2, 2], num_hidden_layers=None, mixer_layout=None)
        layers = model.base_model.layers
        model.base_model.layers = torch.nn.ModuleList(layers[index] for index in kept)
        message = r"built with 4 blocks in stages of depths \[2, 2\] and now holds 3: blocks cannot be removed"
        with pytest.raises(ValueError, match=message):
            model(pixel_values=torch.randn(1, 3, 16, 16))
        with pytest.raises(ValueError, match=message):
            model.save_pretrained(tmp_path)


def test_a_block_wrapped_by_a_user_module_runs_and_saves(tmp_path):
    """A wrapper that does not forward the block's attributes (its layout entry) leaves the config check to the
    fields recorded when the model was built."""
    model = build("gfnet", "ForSequenceClassification")
    input_ids = torch.randint(4, 99, (2, 7))
    expected = model(input_ids).logits
    model.base_model.layers[0] = Wrapper(model.base_model.layers[0], forwarded=())
    torch.testing.assert_close(model(input_ids).logits, expected)
    model.save_pretrained(tmp_path)
    model.config.num_hidden_layers = 1
    with pytest.raises(ValueError, match=r"num_hidden_layers=1 \(built with 2\)"):
        model(input_ids)


def test_a_users_head_with_its_backbone_under_another_name_saves_and_loads(tmp_path):
    """A head of the user's own (a `GFNetPreTrainedModel` holding the backbone as `encoder`, not under
    `base_model_prefix`) saves, with the config checks run on that backbone, and loads back."""
    class EncoderHead(GFNetPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.encoder = model_class("gfnet", "Model")(config)
            self.score = torch.nn.Linear(config.hidden_size, 1)
            self.post_init()

        def forward(self, input_ids):
            return self.score(self.encoder(input_ids).pooler_output)

    model = EncoderHead(tiny_config("gfnet")).eval()
    input_ids = torch.randint(4, 99, (2, 7))
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(EncoderHead.from_pretrained(tmp_path).eval()(input_ids), model(input_ids))
    model.config.hidden_act = "relu"
    with pytest.raises(ValueError, match=r"The config no longer matches the built model: hidden_act=relu"):
        model.save_pretrained(tmp_path / "changed")


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_masked_lm_head_leaves_a_checkpoints_pooler_unreported(family, tmp_path):
    """A pre-training checkpoint's pooler is for the sequence heads fine-tuned from it, not a masked-LM load's
    problem; a token classifier loaded from a sequence classifier is told of the pooler it does not use."""
    build(family, "Model", pooler_projection=True).save_pretrained(tmp_path / "backbone")
    build(family, "ForSequenceClassification", pooler_projection=True).save_pretrained(tmp_path / "sequence")
    _, info = AutoModelForMaskedLM.from_pretrained(tmp_path / "backbone", output_loading_info=True)
    assert not info["unexpected_keys"]
    _, info = AutoModelForTokenClassification.from_pretrained(tmp_path / "sequence", output_loading_info=True)
    assert {key.split(".")[1] for key in info["unexpected_keys"]} == {"pooler"}


@pytest.mark.parametrize("family", FAMILIES)
def test_head_loaded_from_a_backbone_checkpoint_is_initialised(family, tmp_path):
    build(family, "Model").save_pretrained(tmp_path)
    model = AutoModelForTokenClassification.from_pretrained(tmp_path, num_labels=4)
    assert torch.isfinite(model.classifier.weight).all() and model.classifier.weight.std() > 0


def test_no_head_claims_to_generate():
    for family in FAMILIES:
        for head in HEADS:
            assert not model_class(family, head).can_generate()


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.long, torch.float32])
def test_attention_mask_dtypes_agree(mask_dtype):
    model = build("gfnet", "ForSequenceClassification")
    inputs = make_inputs(model.config)
    reference = model(**inputs).logits
    inputs["attention_mask"] = inputs["attention_mask"].to(mask_dtype)
    torch.testing.assert_close(model(**inputs).logits, reference, atol=0, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_left_padding_does_not_change_outputs(name):
    """Left-padded rows are aligned internally; logits, hidden states and attention weights of the real tokens
    equal those of the sequence alone, at the positions where the caller put them."""
    model = variant(name)
    sequence = torch.randint(5, model.config.vocab_size, (1, 7))
    ids = torch.cat([torch.zeros(1, 5, dtype=torch.long), sequence], dim=1)
    ids = torch.cat([ids, torch.randint(5, model.config.vocab_size, (1, 12))])
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    with torch.no_grad():
        alone = model(sequence, output_hidden_states=True, output_attentions=True)
        padded = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(padded.logits[:1], alone.logits, atol=1e-5, rtol=1e-5)
    for padded_layer, alone_layer in zip(padded.hidden_states, alone.hidden_states):
        torch.testing.assert_close(padded_layer[:1, 5:], alone_layer, atol=1e-5, rtol=1e-5)
    for padded_weights, alone_weights in zip(padded.attentions, alone.attentions):
        torch.testing.assert_close(padded_weights[:1, :, 5:, 5:], alone_weights, atol=1e-5, rtol=1e-5)
        assert padded_weights[0, :, :, :5].abs().max() == 0


@pytest.mark.parametrize("name", VARIANTS)
def test_packed_sequences_equal_each_sequence_alone(name):
    """Sequences packed into rows with restarting position ids and no attention mask (transformers'
    `DataCollatorWithFlattening`; BERT's attention masks keep them apart) give each sequence's outputs alone: token
    outputs in their places, attention weights zero between sequences, one pooled row and one logit row per sequence,
    and the gradients of the separate runs."""
    model = variant(name)
    sequences = [torch.randint(5, model.config.vocab_size, (1, length)) for length in (5, 4, 9, 2, 7)]
    rows = [[0, 1], [2], [3, 4]]  # the sequences of each row, (1, 9) each
    ids = torch.cat([torch.cat([sequences[i] for i in row], dim=1) for row in rows])
    position_ids = torch.cat([torch.cat([torch.arange(sequences[i].shape[1]) for i in row])[None] for row in rows])
    with torch.no_grad():
        packed = model(ids, position_ids=position_ids, output_hidden_states=True, output_attentions=True)
        backbone = model.base_model(ids, position_ids=position_ids)
        embedded = model.base_model(inputs_embeds=model.get_input_embeddings()(ids), position_ids=position_ids)
        alone = [model(sequence, output_hidden_states=True, output_attentions=True) for sequence in sequences]
        pooled_alone = [model.base_model(sequence).pooler_output for sequence in sequences]
    torch.testing.assert_close(packed.logits, torch.cat([out.logits for out in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(backbone.pooler_output, torch.cat(pooled_alone), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedded.last_hidden_state, backbone.last_hidden_state, atol=1e-6, rtol=1e-6)
    for row, members in enumerate(rows):
        start = 0
        for i in members:
            end = start + sequences[i].shape[1]
            for packed_layer, alone_layer in zip(packed.hidden_states, alone[i].hidden_states):
                torch.testing.assert_close(packed_layer[row, start:end], alone_layer[0], atol=1e-5, rtol=1e-5)
            for packed_weights, alone_weights in zip(packed.attentions, alone[i].attentions):
                block = packed_weights[row, :, start:end]  # (heads, length, 9): the sequence's queries
                torch.testing.assert_close(block[..., start:end], alone_weights[0], atol=1e-5, rtol=1e-5)
                outside = torch.ones(9, dtype=torch.bool)
                outside[start:end] = False
                assert not block[..., outside].any()
            start = end

    model = model.double()  # the gradients sum over every token: compared in float64, free of rounding order

    def gradients(outputs):
        model.zero_grad()
        sum(output.last_hidden_state.square().sum() for output in outputs).backward()
        return {key: weight.grad.clone() for key, weight in model.named_parameters() if weight.grad is not None}

    packed_gradients = gradients([model.base_model(ids, position_ids=position_ids)])
    alone_gradients = gradients([model.base_model(sequence) for sequence in sequences])
    assert packed_gradients.keys() == alone_gradients.keys()
    for key, gradient in packed_gradients.items():
        torch.testing.assert_close(gradient, alone_gradients[key], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_one_token_sequences_shared_position_ids_and_token_types(family):
    """The packing cases the collator test leaves out: a one-token sequence (position ids 0, 0: a restart that does
    not go down), position ids of shape (1, T) shared by every row, token type ids that travel with their tokens, and
    tuple outputs (`return_dict=False`); each sequence gives its outputs alone."""
    model = build(family, "Model")
    ids = torch.randint(5, model.config.vocab_size, (2, 6))
    token_type_ids = torch.randint(0, model.config.type_vocab_size, (2, 6))
    position_ids = torch.tensor([[0, 0, 1, 2, 0, 1]])  # sequences at columns [0, 1), [1, 4), [4, 6) of both rows
    with torch.no_grad():
        packed = model(ids, token_type_ids=token_type_ids, position_ids=position_ids)
        as_tuple = model(ids, token_type_ids=token_type_ids, position_ids=position_ids, return_dict=False)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], packed.last_hidden_state, atol=0, rtol=0)
        torch.testing.assert_close(as_tuple[1], packed.pooler_output, atol=0, rtol=0)
        pooled = []
        for row in range(2):
            for start, end in ((0, 1), (1, 4), (4, 6)):
                alone = model(ids[row : row + 1, start:end], token_type_ids=token_type_ids[row : row + 1, start:end])
                torch.testing.assert_close(packed.last_hidden_state[row, start:end], alone.last_hidden_state[0],
                                           atol=1e-5, rtol=1e-5)
                pooled.append(alone.pooler_output)
    torch.testing.assert_close(packed.pooler_output, torch.cat(pooled), atol=1e-5, rtol=1e-5)


def test_trainer_batches_of_the_flattening_collator_tag_each_sequence_alone():
    """A token-classification batch of `DataCollatorWithFlattening` (input ids, position ids and labels in one row)
    gives each sentence's logits and the loss of the padded batch, also with the collator's FlashAttention keywords
    (which need the position ids); position ids that run on without a restart, or come with an attention mask, leave
    the row one sequence."""
    model = build("gfnet", "ForTokenClassification", num_labels=3)
    sentences = [torch.randint(5, 99, (length,)).tolist() for length in (6, 3, 8)]
    tags = [torch.randint(0, 3, (len(sentence),)).tolist() for sentence in sentences]
    features = [dict(input_ids=sentence, labels=labels) for sentence, labels in zip(sentences, tags)]
    batch = DataCollatorWithFlattening()(features)
    assert set(batch) == {"input_ids", "position_ids", "labels"} and batch["input_ids"].shape == (1, 17)
    mask = torch.tensor([[1] * len(sentence) + [0] * (8 - len(sentence)) for sentence in sentences])
    padded = dict(
        input_ids=torch.tensor([sentence + [0] * (8 - len(sentence)) for sentence in sentences]),
        attention_mask=mask,
        labels=torch.tensor([labels + [-100] * (8 - len(labels)) for labels in tags]),
    )
    with torch.no_grad():
        packed = model(**batch)
        alone = model(**padded)
    torch.testing.assert_close(packed.logits[0], alone.logits[mask.bool()], atol=1e-5, rtol=1e-5)
    flash_batch = DataCollatorWithFlattening(return_flash_attn_kwargs=True, return_seq_idx=True)(features)
    assert {"cu_seq_lens_q", "seq_idx"} <= set(flash_batch)
    with torch.no_grad():
        torch.testing.assert_close(model(**flash_batch).logits, packed.logits, atol=0, rtol=0)
    flash_batch.pop("position_ids")
    with pytest.raises(ValueError, match=r"finds them from `position_ids`.*`return_position_ids=True`"):
        model(**flash_batch)
    # the collator's separator label (-100) on each sentence's first token is all that differs from the padded batch
    padded["labels"][:, 0] = -100
    torch.testing.assert_close(packed.loss, model(**padded).loss, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        one_sequence = model(batch["input_ids"], position_ids=torch.arange(2, 19)[None]).logits
        masked = model(batch["input_ids"], attention_mask=torch.ones(1, 17), position_ids=batch["position_ids"])
    assert (one_sequence - packed.logits).abs().max() > 1e-3 and (masked.logits - packed.logits).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "head, config_fields, inputs",
    [
        ("ForSequenceClassification", {}, lambda: dict(
            input_ids=torch.randint(1, 99, (2, 6)), attention_mask=torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
        )),
        ("ForImageClassification", dict(image_size=16, patch_size=4),
         lambda: dict(pixel_values=torch.randn(2, 3, 16, 16))),
        ("ForImageClassification", dict(image_size=16, patch_size=4, hidden_sizes=[16, 32], depths=[1, 1]),
         lambda: dict(pixel_values=torch.randn(2, 3, 16, 16))),
    ],
    ids=["text", "image", "image-hierarchical"],
)
def test_gradients_reach_every_returned_hidden_state(family, head, config_fields, inputs):
    """As for BERT and ViT, the returned hidden states are the tensors the model computes on: gradients of the
    logits with respect to each (saliency, attribution) exist and are those of the computation. Image models used to
    return flattened copies made afterwards, which no gradient reached."""
    if "hidden_sizes" in config_fields and family != "gfnet":
        pytest.skip("hierarchical stages are GFNet-H")
    model = model_class(family, head)(tiny_config(family, **config_fields))
    outputs = model(**inputs(), output_hidden_states=True)
    gradients = torch.autograd.grad(outputs.logits.square().sum(), outputs.hidden_states)
    assert len(gradients) == model.config.num_hidden_layers + 1
    assert all(gradient is not None and gradient.abs().sum() > 0 for gradient in gradients)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pooling", ["mean", "max", "attention", "cls"])
def test_nan_at_padded_positions_never_reaches_a_real_token(family, pooling):
    """Whatever padded positions hold is excluded exactly, from the outputs and from every gradient: a zero weight
    times NaN is still NaN, so the pooling and attention zero those positions instead of weighting them by zero (NaN in
    padding used to make the logits NaN), and the model zeroes padded input embeddings before its first op reads them
    (NaN there used to reach the gradient of every weight through the padded rows of the LayerNorms and MLPs, and one
    optimizer step then made every output NaN). fnet_hybrid's default layout has attention layers; the
    cross-attention condition gets NaN in its padding too. Left and right padding."""
    config = tiny_config(family, pooling=pooling, condition_type="cross_attention", condition_size=8)
    model = model_class(family, "ForSequenceClassification")(config).train()
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 2 + [1] * 4])
    embeds = torch.randn(3, 6, 32)
    condition, condition_mask = torch.randn(3, 3, 8), torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    labels = torch.tensor([0, 1, 2])

    def run():
        model.zero_grad()
        inputs = embeds.clone().requires_grad_()
        outputs = model(inputs_embeds=inputs, attention_mask=mask, condition=condition, condition_mask=condition_mask,
                        labels=labels)
        outputs.loss.backward()
        # parameters off this input's path (the pooler of another pooling type) get no gradient
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return outputs.logits, inputs.grad, grads

    clean_logits, clean_input_grad, clean_grads = run()
    embeds[1, 4:], embeds[2, :2] = float("nan"), float("inf")
    condition[1, 1:], condition[2, 2:] = float("nan"), float("-inf")
    logits, input_grad, grads = run()
    torch.testing.assert_close(logits, clean_logits, atol=0, rtol=0)
    torch.testing.assert_close(input_grad, clean_input_grad, atol=0, rtol=0)
    assert input_grad[~mask.bool()].eq(0).all()
    assert grads.keys() == clean_grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grad, clean_grads[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "head, fields, inputs",
    [
        ("ForSequenceClassification", {},
         lambda: dict(input_ids=torch.randint(1, 99, (2, 6)), labels=torch.tensor([0, 2]))),
        ("ForTokenClassification", {},
         lambda: dict(input_ids=torch.randint(1, 99, (2, 6)), labels=torch.randint(0, 3, (2, 6)))),
        ("ForPatchRegression", dict(image_size=16, patch_size=4, num_output_channels=2),
         lambda: dict(pixel_values=torch.randn(2, 3, 16, 16), labels=torch.randn(2, 2, 16, 16))),
        ("ForMaskedImageModeling", dict(image_size=16, patch_size=4),
         lambda: dict(pixel_values=torch.randn(2, 3, 16, 16), bool_masked_pos=torch.rand(2, 16) < 0.5)),
    ],
)
def test_loss_is_at_least_float32_and_keeps_float64(head, fields, inputs, dtype):
    """Half-precision logits are upcast for the loss; a float64 model (gradient checks) keeps a float64 loss, where
    every loss used to be float32."""
    model = model_class("gfnet", head)(tiny_config("gfnet", **fields)).to(dtype)
    loss = model(**inputs()).loss
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_from_pretrained_with_fewer_or_more_layers(family, tmp_path):
    """`from_pretrained(path, num_hidden_layers=n)` loads the checkpoint's first n layers, as transformers' models
    do (the saved config holds one layout entry per layer); more layers than saved extend a layout of one mixer and
    are refused, naming the fix, for a mixed one."""
    mixed = ["global_filter", "attention", "fourier"]
    head = model_class(family, "ForSequenceClassification")
    model = head(tiny_config(family, num_hidden_layers=3, mixer_layout=mixed))
    model.save_pretrained(tmp_path / "mixed")
    first_two = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "mixed", num_hidden_layers=2)
    assert first_two.config.mixer_layout == mixed[:2] and len(first_two.base_model.layers) == 2
    for loaded, saved in zip(first_two.base_model.layers, model.base_model.layers[:2], strict=True):
        torch.testing.assert_close(loaded.state_dict(), saved.state_dict(), atol=0, rtol=0)
    assert transformers.AutoConfig.from_pretrained(tmp_path / "mixed", num_hidden_layers=1).mixer_layout == mixed[:1]
    with pytest.raises(ValueError, match=r"`mixer_layout` has 3 entries but `num_hidden_layers` is 4"):
        head.from_pretrained(tmp_path / "mixed", num_hidden_layers=4)
    head(tiny_config(family, mixer_layout=["fourier"] * 2)).save_pretrained(tmp_path / "uniform")
    deeper = head.from_pretrained(tmp_path / "uniform", num_hidden_layers=3)
    assert deeper.config.mixer_layout == ["fourier"] * 3
