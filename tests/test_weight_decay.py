"""Weight decay: the parameter groups `SpectralTrainer` builds for every family, and `optimizer_param_groups`."""

import pytest
import torch
import torch.nn.utils.prune
from conftest import FAMILIES, model_class, tiny_config
from transformers import TrainingArguments

from fourierformers import SpectralTrainer, no_weight_decay_parameter_names, optimizer_param_groups

WEIGHT_DECAY = 0.05
# Every kind of parameter: each mixer, a weighted fusion, an adaptive gate, LayerScale, the AdaLN branch.
EVERYTHING = [
    {"strategy": "multiscale", "mixers": ["global_filter", "afno"], "fusion": "weighted"},
    {"strategy": "adaptive", "mixers": ["fourier", "attention"], "gate": "hard"},
]


def full_model(family, head="ForMaskedLM"):
    config = tiny_config(
        family, mixer_layout=EVERYTHING, layer_scale_init_value=0.1, condition_type="adaln_zero", norm_first=True
    )
    return model_class(family, head)(config)


def expected_no_decay(name, parameter):
    return (
        parameter.ndim <= 1
        or name.endswith("complex_weight")
        or name.endswith((".b1", ".b2"))
        # text: an nn.Embedding; images and volumes: a (1, *grid, D) parameter
        or name.endswith(("position_embeddings.weight", "embeddings.position_embeddings"))
    )


def trainer_decay_groups(model, tmp_path):
    """The names in the decayed and the not-decayed group of the optimizer `SpectralTrainer` builds for `model`,
    after checking that the groups split every parameter as `expected_no_decay` says."""
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=WEIGHT_DECAY, use_cpu=True, report_to=[])
    optimizer = SpectralTrainer(model=model, args=args).create_optimizer()
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == WEIGHT_DECAY and not_decayed["weight_decay"] == 0.0
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    decayed_names = {names[id(parameter)] for parameter in decayed["params"]}
    not_decayed_names = {names[id(parameter)] for parameter in not_decayed["params"]}
    assert decayed_names | not_decayed_names == set(names.values())
    assert not decayed_names & not_decayed_names
    parameters = dict(model.named_parameters())
    for name in names.values():
        assert (name in not_decayed_names) == expected_no_decay(name, parameters[name]), name
    assert not any(parameters[name].ndim <= 1 for name in decayed_names)
    return decayed_names, not_decayed_names


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForSequenceClassification"])
@pytest.mark.parametrize("family", FAMILIES)
def test_trainer_groups_exclude_norms_biases_positions_filters_and_afno_biases(family, head, tmp_path):
    decayed_names, not_decayed_names = trainer_decay_groups(full_model(family, head), tmp_path)
    # The kinds the issue names are present, so the checks above are not vacuous.
    for kind in ("complex_weight", ".b1", "position_embeddings.weight", "mixer_norm.weight", "gamma", "fusion_logits"):
        assert any(kind in name for name in not_decayed_names), kind
    assert any("word_embeddings" in name for name in decayed_names)


@pytest.mark.parametrize("family", [*FAMILIES, "gfnet_h"])
def test_image_position_embeddings_are_not_decayed(family, tmp_path):
    """The (1, *grid, D) position embeddings of image models are left undecayed, as the original GFNet's
    `pos_embed`; the patch projection, a weight matrix, is decayed. GFNet-H has one, before its first stage."""
    stages = dict(hidden_sizes=[16, 32], depths=[1, 1], layer_scale_init_value=0.1) if family == "gfnet_h" else {}
    config = tiny_config(
        "gfnet" if family == "gfnet_h" else family, image_size=16, patch_size=4, mixer_layout=None, **stages
    )
    model = model_class(config.model_type, "ForImageClassification")(config)
    decayed_names, not_decayed_names = trainer_decay_groups(model, tmp_path)
    prefix = f"{model.base_model_prefix}.embeddings"
    assert [name for name in not_decayed_names if "position" in name] == [f"{prefix}.position_embeddings"]
    assert f"{prefix}.patch_embeddings.projection.weight" in decayed_names
    assert f"{prefix}.position_embeddings" in no_weight_decay_parameter_names(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_param_groups_helper_matches_the_trainer_and_skips_frozen_parameters(family):
    model = full_model(family)
    model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    decayed, not_decayed = optimizer_param_groups(model, WEIGHT_DECAY)
    assert decayed["weight_decay"] == WEIGHT_DECAY and not_decayed["weight_decay"] == 0.0
    excluded = no_weight_decay_parameter_names(model)
    trainable = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert [id(p) for p in decayed["params"]] == [id(p) for n, p in trainable.items() if n not in excluded]
    assert [id(p) for p in not_decayed["params"]] == [id(p) for n, p in trainable.items() if n in excluded]
    torch.optim.AdamW([decayed, not_decayed], lr=1e-3)


def test_spectral_trainer_trains_a_hybrid_model_with_gradient_checkpointing(tmp_path):
    model = model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet", mixer_layout=EVERYTHING))
    dataset = [{"input_ids": torch.randint(4, 99, (9,)), "labels": torch.tensor(index % 3)} for index in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        weight_decay=WEIGHT_DECAY,
        activation_checkpointing=True,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
    )
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    result = SpectralTrainer(model=model, args=args, train_dataset=dataset).train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert model.base_model.layers[0].gradient_checkpointing
    trained = ("layers.0.mixer.mixers.0.complex_weight", "layers.0.mixer.fusion_logits", "layers.1.mixer.gate.weight")
    for name in trained:
        parameter = dict(model.base_model.named_parameters())[name]
        assert not torch.equal(parameter, before[f"{model.base_model_prefix}.{name}"]), name


REPARAMETRISATIONS = {
    "parametrize": lambda module, name: torch.nn.utils.parametrize.register_parametrization(
        module, name, torch.nn.Identity()),
    "weight_norm": lambda module, name: torch.nn.utils.parametrizations.weight_norm(module, name),
    "prune": lambda module, name: torch.nn.utils.prune.l1_unstructured(module, name, amount=0.0),
    "legacy_weight_norm": lambda module, name: torch.nn.utils.weight_norm(module, name),
}


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("how", REPARAMETRISATIONS)
def test_a_reparametrised_filter_afno_bias_or_position_table_stays_undecayed(how):
    """torch.nn.utils stores a reparametrised parameter under other names (`parametrizations.complex_weight.original`,
    `complex_weight_orig`, ...); those are the parameter, and must stay out of the decayed group, also where the
    mark names a child's parameter (`SpectralEmbeddings._no_weight_decay = ("position_embeddings.weight",)`)."""
    model = full_model("gfnet")
    global_filter, afno = model.base_model.layers[0].mixer.mixers
    positions = model.base_model.embeddings.position_embeddings
    for module, name in ((global_filter, "complex_weight"), (afno, "b1"), (positions, "weight")):
        REPARAMETRISATIONS[how](module, name)
    excluded = no_weight_decay_parameter_names(model)
    for module, name in ((global_filter, "complex_weight"), (afno, "b1"), (positions, "weight")):
        stored = {stored_name for stored_name, parameter in module.named_parameters() if parameter.ndim > 1}
        reparametrised = {
            stored_name for stored_name in stored if stored_name.startswith(("parametrizations.", f"{name}_"))
        }
        assert reparametrised, stored
        prefix = next(module_name for module_name, candidate in model.named_modules() if candidate is module)
        assert {f"{prefix}.{stored_name}" for stored_name in reparametrised} <= excluded
    assert not any("w1" in name or "w2" in name for name in excluded)
    decayed, _ = optimizer_param_groups(model, WEIGHT_DECAY)
    assert not {id(parameter) for parameter in decayed["params"]} & {
        id(parameter) for name, parameter in model.named_parameters() if name in excluded}


def test_a_marked_parameter_s_namesakes_are_decayed():
    """Only a reparametrised parameter is looked for under the names torch.nn.utils gives it: a layer's own `w_g`
    and `w_v` beside a marked `w` are weights like any other."""

    class Gated(torch.nn.Module):
        _no_weight_decay = ("w",)

        def __init__(self):
            super().__init__()
            self.w, self.w_g, self.w_v = (torch.nn.Parameter(torch.ones(3, 3)) for _ in range(3))

    assert no_weight_decay_parameter_names(Gated()) == {"w"}


@pytest.mark.parametrize("position_embedding_type", ["none", "sinusoidal"])
def test_marks_of_modules_a_config_does_not_build_are_skipped(position_embedding_type):
    """`SpectralEmbeddings` marks `position_embeddings.weight`, a child that only learned position tables have."""
    model = model_class("gfnet", "ForSequenceClassification")(
        tiny_config("gfnet", position_embedding_type=position_embedding_type)
    )
    excluded = no_weight_decay_parameter_names(model)
    assert not any("position" in name for name in excluded) and any("complex_weight" in name for name in excluded)
