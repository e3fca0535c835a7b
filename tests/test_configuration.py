import json
import logging

import pytest
from transformers import CONFIG_MAPPING, AutoConfig, FNetConfig

from conftest import CONFIG_CLASSES, FAMILIES, model_class, tiny_config


@pytest.mark.parametrize("family", FAMILIES)
def test_json_round_trip_is_exact(family, tmp_path):
    config = tiny_config(family, mixer_layout=["attention", "none"], layer_scale_init_value=0.1, num_labels=4)
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is type(config)
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(config.to_json_string())
    assert reloaded.to_diff_dict() == config.to_diff_dict()
    assert CONFIG_CLASSES[family].from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize("family", FAMILIES)
def test_default_config_logs_nothing(family, caplog):
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="transformers"):
            config = CONFIG_CLASSES[family]()
    finally:
        transformers_logger.removeHandler(caplog.handler)
    assert caplog.records == []
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 2, 3)


def test_family_defaults():
    assert CONFIG_CLASSES["gfnet"](num_hidden_layers=3).mixer_layout == ["global_filter"] * 3
    assert CONFIG_CLASSES["afno"](num_hidden_layers=2).mixer_layout == ["afno"] * 2
    fnet = CONFIG_CLASSES["fnet_hybrid"](num_hidden_layers=6)
    assert fnet.mixer_layout == ["fourier"] * 4 + ["attention"] * 2
    assert (fnet.norm_first, fnet.hidden_act, fnet.fourier_norm, fnet.pooling) == (False, "gelu_new", "backward", "cls")
    assert CONFIG_CLASSES["fnet_hybrid"](num_hidden_layers=1).mixer_layout == ["attention"]


def test_auto_registration_leaves_transformers_fnet_alone():
    assert CONFIG_MAPPING["fnet"] is FNetConfig
    for family, config_class in CONFIG_CLASSES.items():
        assert type(AutoConfig.for_model(family)) is config_class


INVALID = [
    (dict(position_embedding_type="rotary"), "position_embedding_type.*'absolute', 'sinusoidal', 'none'"),
    (dict(pooling="weighted"), "pooling.*'cls', 'mean', 'max', 'attention'"),
    (dict(filter_activation="relu"), "filter_activation.*'identity', 'sigmoid', 'tanh'"),
    (dict(fourier_norm="unitary"), "fourier_norm.*'backward', 'ortho', 'forward'"),
    (dict(hidden_act="swishy"), "hidden_act.*must be one of"),
    (dict(mixer_layout=["fourier"]), "mixer_layout.*1 entries.*num_hidden_layers.*2"),
    (dict(mixer_layout=["fourier", "wavelet"]), r"mixer_layout\[1\].*'wavelet'.*'global_filter'"),
    (dict(mixer_layout=["afno", "afno"], afno_num_blocks=5), "afno_num_blocks.*divisor of `hidden_size`"),
    (dict(mixer_layout=["afno", "afno"], afno_num_modes=40), "afno_num_modes.*between 1 and"),
    (dict(mixer_layout=["attention", "fourier"], num_attention_heads=5), "num_attention_heads.*divisor"),
    (dict(norm_first=False, mixer_residual=False), "mixer_residual=False.*requires `norm_first=True`"),
    (dict(hidden_dropout_prob=1.5), r"hidden_dropout_prob.*\[0, 1\)"),
    (dict(hidden_size=0), "hidden_size.*positive integer"),
    (dict(type_vocab_size=-1), "type_vocab_size"),
    (dict(pad_token_id=500), r"pad_token_id.*\[0, vocab_size=99\)"),
    (dict(norm_type="batch_norm"), "norm_type.*'layer_norm', 'rms_norm'"),
    (dict(afno_activation="swishy"), "afno_activation.*must be one of"),
    (dict(afno_activation="prelu"), "afno_activation.*'prelu' has learned parameters"),
    (dict(afno_dropout=1.5), r"afno_dropout.*\[0, 1\)"),
    (dict(intermediate_size=-1), "intermediate_size.*positive integer, or 0 for blocks without an MLP"),
    (dict(intermediate_size=0, mixer_residual=False, norm_first=True), "intermediate_size=0.*`mixer_residual=True`"),
    (dict(intermediate_size=0, mixer_layout=["fourier", "none"]), "leaves layer 1.*empty"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("overrides,message", INVALID, ids=[next(iter(o)) + str(i) for i, (o, _) in enumerate(INVALID)])
def test_invalid_configs_name_the_problem(family, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(family, **overrides)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("overrides,message", INVALID, ids=[next(iter(o)) + str(i) for i, (o, _) in enumerate(INVALID)])
def test_invalid_fields_assigned_after_creation_are_refused_by_validate_save_and_models(
    family, overrides, message, tmp_path
):
    """transformers applies `from_pretrained(path, **overrides)` with setattr after `__post_init__`, as a user
    assigning a field does: `validate` (which `save_pretrained` calls) and every model constructor check again."""
    config = tiny_config(family)
    for name, value in overrides.items():
        setattr(config, name, value)
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        config.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()
    for head in ("Model", "ForSequenceClassification"):
        with pytest.raises(ValueError, match=message):
            model_class(family, head)(config)


@pytest.mark.parametrize("family", FAMILIES)
def test_validate_accepts_a_valid_config(family):
    tiny_config(family, mixer_layout=["attention", "none"]).validate()
