"""FNet -> fnet_hybrid conversion (`scripts/convert_transformers_fnet.py`): exact outputs against transformers' own
FNet classes for every head and against the FNet reference fixture, tokenizer files carried over, and attention
layers added during conversion."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import transformers
from conftest import SHARED
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForSequenceClassification, FNetConfig, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "convert_transformers_fnet", REPO / "scripts" / "convert_transformers_fnet.py"
)
converter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(converter)

SEQ_LENGTH = 16
FNET_HEADS = {
    "FNetModel": "FNetHybridModel",
    "FNetForMaskedLM": "FNetHybridForMaskedLM",
    "FNetForPreTraining": "FNetHybridForMaskedLM",
    "FNetForSequenceClassification": "FNetHybridForSequenceClassification",
    "FNetForTokenClassification": "FNetHybridForTokenClassification",
    "FNetForQuestionAnswering": "FNetHybridForQuestionAnswering",
}


def save_tiny_fnet(architecture, folder, **overrides):
    """A randomly initialised 2-layer FNet of class `architecture`, every parameter perturbed so that no weight
    keeps a constant init (a dropped LayerNorm bias or MLM bias would change the outputs), saved with a tokenizer."""
    config = FNetConfig(
        **overrides,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=64,
        max_position_embeddings=SEQ_LENGTH,
        type_vocab_size=4,
        num_labels=2 if architecture == "FNetForQuestionAnswering" else 3,  # FNet splits its span logits in two
        hidden_dropout_prob=0.0,
    )
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    vocab = {"[PAD]": 3, "[UNK]": 0, "[CLS]": 1, "[SEP]": 2, **{f"w{index}": index for index in range(4, 99)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)
    return model


def full_length_inputs():
    """Unpadded inputs of length max_position_embeddings, the case where FNet and FNet-hybrid agree exactly."""
    return torch.randint(4, 99, (2, SEQ_LENGTH)), torch.randint(0, 4, (2, SEQ_LENGTH))


@pytest.mark.parametrize(
    ("architecture", "fnet_options"),
    [
        *((architecture, {}) for architecture in FNET_HEADS),
        # FNet's DFT-matrix variant: its matrices are saved buffers, the transform is the same.
        ("FNetModel", {"use_tpu_fourier_optimizations": True, "tpu_short_seq_length": SEQ_LENGTH}),
    ],
)
def test_conversion_reproduces_transformers_fnet(architecture, fnet_options, tmp_path):
    reference = save_tiny_fnet(architecture, tmp_path / "fnet", **fnet_options)
    model = converter.convert_fnet_checkpoint(tmp_path / "fnet", tmp_path / "converted")
    assert type(model).__name__ == FNET_HEADS[architecture]
    assert model.config.mixer_layout == ["fourier", "fourier"]

    input_ids, token_type_ids = full_length_inputs()
    with torch.no_grad():
        expected = reference(input_ids, token_type_ids=token_type_ids, output_hidden_states=True)
        actual = model(input_ids, token_type_ids=token_type_ids, output_hidden_states=True)
    assert len(actual.hidden_states) == len(expected.hidden_states)
    for ours, theirs in zip(actual.hidden_states, expected.hidden_states):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    if architecture == "FNetModel":
        torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)
    elif architecture == "FNetForQuestionAnswering":  # FNet's scores less its bias (a shift the softmax ignores)
        start_bias, end_bias = reference.qa_outputs.bias
        torch.testing.assert_close(actual.start_logits + start_bias, expected.start_logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(actual.end_logits + end_bias, expected.end_logits, atol=1e-5, rtol=0)
    else:
        expected_logits = expected.prediction_logits if architecture == "FNetForPreTraining" else expected.logits
        torch.testing.assert_close(actual.logits, expected_logits, atol=1e-5, rtol=0)


def test_multiple_choice_conversion_gives_fnets_choice_probabilities(tmp_path):
    """FNet's choice scorer converts without its bias (one shift of every choice's score, which the softmax
    ignores): the scores are FNet's minus the bias, the probabilities and the loss FNet's."""
    reference = save_tiny_fnet("FNetForMultipleChoice", tmp_path / "fnet")
    converter.convert_fnet_checkpoint(tmp_path / "fnet", tmp_path / "converted")
    model = transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path / "converted").eval()
    assert type(model).__name__ == "FNetHybridForMultipleChoice"
    input_ids, token_type_ids = full_length_inputs()  # two examples x three choices
    input_ids, token_type_ids = input_ids.repeat(1, 3).reshape(2, 3, -1), token_type_ids.repeat(1, 3).reshape(2, 3, -1)
    input_ids[:, 1:, -1] = torch.tensor([[7, 8], [9, 10]])
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        expected = reference(input_ids, token_type_ids=token_type_ids, labels=labels)
        actual = model(input_ids, token_type_ids=token_type_ids, labels=labels)
    torch.testing.assert_close(actual.logits + reference.classifier.bias, expected.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.logits.softmax(-1), expected.logits.softmax(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(actual.loss, expected.loss, atol=1e-6, rtol=0)


def test_conversion_saves_a_loadable_checkpoint_with_the_tokenizer(tmp_path):
    reference = save_tiny_fnet("FNetForSequenceClassification", tmp_path / "fnet")
    converter.convert_fnet_checkpoint(tmp_path / "fnet", tmp_path / "converted")

    tokenizer_files = [name for name in converter.TOKENIZER_FILES if (tmp_path / "fnet" / name).exists()]
    assert "tokenizer.json" in tokenizer_files
    for name in tokenizer_files:
        if name != "tokenizer_config.json":
            assert (tmp_path / "converted" / name).read_bytes() == (tmp_path / "fnet" / name).read_bytes()
    original, converted = (json.loads((tmp_path / folder / "tokenizer_config.json").read_text())
                           for folder in ("fnet", "converted"))
    assert converted.pop("model_input_names")[-1] == "attention_mask"
    assert converted == {name: value for name, value in original.items() if name != "model_input_names"}

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "converted").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "converted")
    encoded = tokenizer([" ".join(f"w{index}" for index in range(5, 5 + SEQ_LENGTH))], return_tensors="pt")
    with torch.no_grad():
        expected = reference(encoded["input_ids"]).logits
        actual = loaded(encoded["input_ids"]).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("names_its_class", [True, False])
def test_fnets_tokenizer_gives_the_converted_model_its_padding_mask(names_its_class, tmp_path):
    """`FNetTokenizer` returns no attention mask: copied as it was, a sentence's prediction through a pipeline or
    `DataCollatorWithPadding` depended on the batch it was padded in. A tokenizer config without `tokenizer_class`
    loaded FNet's tokenizer by the model type `fnet` only, and the converted folder a generic one without
    token type ids."""
    save_tiny_fnet("FNetForSequenceClassification", tmp_path / "fnet")
    vocab = [("<pad>", 0.0), ("<unk>", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0)]
    vocab += [(f"\u2581w{index}", -float(index)) for index in range(5, 99)]
    transformers.FNetTokenizer(vocab=vocab).save_pretrained(tmp_path / "fnet")
    config_file = tmp_path / "fnet" / "tokenizer_config.json"
    if not names_its_class:
        config_file.write_text(json.dumps({
            name: value for name, value in json.loads(config_file.read_text()).items() if name != "tokenizer_class"
        }))
    converter.convert_fnet_checkpoint(tmp_path / "fnet", tmp_path / "converted")

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "converted")
    assert type(tokenizer).__name__ == "FNetTokenizer"
    sentences = ["w7", "w1 w2 w3 w4 w5 w6 w8 w9 w10"]
    batch = transformers.DataCollatorWithPadding(tokenizer)([tokenizer(sentence) for sentence in sentences])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    classify = transformers.pipeline("text-classification", model=str(tmp_path / "converted"), top_k=None)
    alone = classify(sentences[:1])[0]
    batched = classify(sentences, batch_size=2)[0]
    assert [entry["label"] for entry in alone] == [entry["label"] for entry in batched]
    torch.testing.assert_close(
        torch.tensor([entry["score"] for entry in alone]), torch.tensor([entry["score"] for entry in batched]),
        atol=1e-5, rtol=0,
    )


def test_a_pretraining_checkpoint_keeps_fnets_pooler_for_sequence_heads(tmp_path):
    """google/fnet-base is an FNetForPreTraining: its pooler, trained on next-sentence prediction, is saved beside
    the masked-LM weights, which load without it; a sequence classifier fine-tuned from the folder starts from it, as
    FNetForSequenceClassification does from the FNet checkpoint."""
    reference = save_tiny_fnet("FNetForPreTraining", tmp_path / "fnet")
    model = converter.convert_fnet_checkpoint(tmp_path / "fnet", tmp_path / "converted")
    assert model.base_model.pooler is None
    _, info = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "converted", output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "converted").eval()
    input_ids, token_type_ids = full_length_inputs()
    with torch.no_grad():
        expected = reference.fnet(input_ids, token_type_ids=token_type_ids).pooler_output
        actual = classifier.base_model(input_ids, token_type_ids=token_type_ids).pooler_output
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("weights_format", ["sharded_safetensors", "pytorch_model_bin", "index_left_behind"])
def test_conversion_reads_every_weights_format(weights_format, tmp_path):
    folder = tmp_path / "fnet"
    reference = save_tiny_fnet("FNetForMaskedLM", folder)
    if weights_format == "sharded_safetensors":
        reference.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").exists()
    elif weights_format == "index_left_behind":
        # a sharded save, then an unsharded one: transformers deletes the shards, not the index, and loads the file
        reference.save_pretrained(folder, max_shard_size="20KB")
        reference.save_pretrained(folder)
        assert (folder / "model.safetensors.index.json").exists()
    else:
        # The format of the released google/fnet-base and fnet-large checkpoints.
        (folder / "model.safetensors").unlink()
        torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    model = converter.convert_fnet_checkpoint(folder)
    input_ids, token_type_ids = full_length_inputs()
    with torch.no_grad():
        expected = reference(input_ids, token_type_ids=token_type_ids).logits
        actual = model(input_ids, token_type_ids=token_type_ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.shared
def test_conversion_reproduces_the_fnet_fixture(tmp_path):
    fixture = SHARED / "fixtures" / "fnet"
    fields = json.loads((fixture / "config.json").read_text())
    known = {*FNetConfig().to_dict(), "num_labels"}
    fnet_fields = {key: value for key, value in fields.items() if key in known}
    FNetConfig(**fnet_fields, architectures=["FNetForSequenceClassification"]).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((fixture / "state_dict.safetensors").read_bytes())
    model = converter.convert_fnet_checkpoint(tmp_path)

    inputs = load_file(fixture / "inputs.safetensors")
    outputs = load_file(fixture / "outputs.safetensors")
    with torch.no_grad():
        actual = model(inputs["input_ids"], token_type_ids=inputs["token_type_ids"], output_hidden_states=True)
        without_token_types = model(inputs["input_ids"]).logits
        pooled = model.fnet_hybrid(inputs["input_ids"], token_type_ids=inputs["token_type_ids"]).pooler_output
    torch.testing.assert_close(actual.logits, outputs["logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(without_token_types, outputs["logits_no_token_type_ids"], atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, outputs["pooler_output"], atol=1e-5, rtol=0)
    for index, hidden_states in enumerate(actual.hidden_states):
        torch.testing.assert_close(hidden_states, outputs[f"hidden_states_{index}"], atol=1e-5, rtol=0)


def test_attention_layers_added_by_the_command_line_train(tmp_path, monkeypatch):
    reference = save_tiny_fnet("FNetForSequenceClassification", tmp_path / "fnet")
    command = [str(tmp_path / "fnet"), str(tmp_path / "hybrid"), "--attention-layers", "-1"]
    monkeypatch.setattr(sys, "argv", ["convert_transformers_fnet.py", *command])
    converter.main()
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hybrid")
    assert model.config.mixer_layout == ["fourier", "attention"]

    # Layer 0 is still FNet's; the new attention weights follow `_init_weights`: normal(0, std), zero bias.
    input_ids, token_type_ids = full_length_inputs()
    model.eval()
    with torch.no_grad():
        expected = reference(input_ids, token_type_ids=token_type_ids, output_hidden_states=True).hidden_states
        actual = model(input_ids, token_type_ids=token_type_ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(actual[1], expected[1], atol=1e-5, rtol=0)
    attention = model.fnet_hybrid.layers[1].mixer
    std = model.config.initializer_range
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj):
        assert 0.8 * std < projection.weight.std().item() < 1.2 * std
        assert torch.all(projection.bias == 0)

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    labels = torch.tensor([0, 2])
    loss = model(input_ids, token_type_ids=token_type_ids, labels=labels).loss
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    before = attention.q_proj.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(attention.q_proj.weight, before)
    with torch.no_grad():
        assert model(input_ids, token_type_ids=token_type_ids, labels=labels).loss < loss


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attention_layers": [2]}, "out of range"),
        ({"attention_layers": [-3]}, "out of range"),
        ({"head": "next_sentence_prediction"}, "Unknown head"),
        # a head the checkpoint has no weights for: the converter makes none, fine-tuning does
        ({"head": "sequence_classification"}, r"lacks weights for \['classifier.bias', 'classifier.weight'\] .*"
                                              r"`--head model`, then fine-tune the new head"),
        ({"num_attention_heads": 5}, r"num_attention_heads=5 without attention layers would be saved and unused"),
    ],
)
def test_conversion_rejects_bad_options(options, message, tmp_path):
    save_tiny_fnet("FNetModel", tmp_path / "fnet")
    with pytest.raises(ValueError, match=message):
        converter.convert_fnet_checkpoint(tmp_path / "fnet", **options)


@pytest.mark.parametrize(("architecture", "head"), [
    ("FNetForSequenceClassification", "token_classification"),
    ("FNetForTokenClassification", "sequence_classification"),
    ("FNetForMultipleChoice", "sequence_classification"),
])
def test_another_tasks_classifier_is_not_taken_over(architecture, head, tmp_path):
    """Every FNet classifier is `classifier.*`: a sequence classifier's weights became a token classifier's (and the
    reverse), a model that looked fine-tuned and predicted nonsense."""
    save_tiny_fnet(architecture, tmp_path / "fnet")
    with pytest.raises(ValueError, match=r"lacks weights for \['classifier.bias', 'classifier.weight'\]"):
        converter.convert_fnet_checkpoint(tmp_path / "fnet", head=head)


@pytest.mark.parametrize("architecture",
                         ["FNetForQuestionAnswering", "FNetForMultipleChoice", "FNetForNextSentencePrediction"])
def test_the_backbone_of_any_fnet_checkpoint_converts(architecture, tmp_path):
    """`--head model` takes the backbone of any head (a question-answering checkpoint failed on its span head's
    keys); for a head without a counterpart (next-sentence prediction) the converter asks for one."""
    reference = save_tiny_fnet(architecture, tmp_path / "fnet").fnet
    if architecture == "FNetForNextSentencePrediction":
        with pytest.raises(ValueError, match=rf"architectures=\['{architecture}'\]; pass `head`.*`model` converts"):
            converter.convert_fnet_checkpoint(tmp_path / "fnet")
    model = converter.convert_fnet_checkpoint(tmp_path / "fnet", head="model")
    input_ids, token_type_ids = full_length_inputs()
    with torch.no_grad():
        expected = reference(input_ids, token_type_ids=token_type_ids).last_hidden_state
        actual = model(input_ids, token_type_ids=token_type_ids).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_conversion_rejects_unknown_keys(tmp_path):
    model = save_tiny_fnet("FNetModel", tmp_path / "fnet")
    torch.save({**model.state_dict(), "adapter.weight": torch.zeros(2)}, tmp_path / "fnet" / "pytorch_model.bin")
    (tmp_path / "fnet" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"Unknown FNet key 'adapter.weight'"):
        converter.convert_fnet_checkpoint(tmp_path / "fnet")
