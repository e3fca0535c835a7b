import json
import logging
import re
import threading

import pytest
import torch
from transformers import CONFIG_MAPPING, AutoConfig, AutoModel, FNetConfig

from conftest import CONFIG_CLASSES, FAMILIES, model_class, tiny_config

from fourierformers import FNetHybridConfig, GFNetConfig, GFNetForImageClassification


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
    for family, (pooling, norm_first) in {"gfnet": ("mean", True), "afno": ("mean", True),
                                          "fnet_hybrid": ("cls", False)}.items():
        config = CONFIG_CLASSES[family]()
        assert (config.pooling, config.norm_first, config.layer_norm_eps) == (pooling, norm_first, 1e-12), family
        assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (256, 4, 1024), family
        assert (config.max_position_embeddings, config.filter_activation) == (512, "identity"), family
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
    (dict(pad_token_id=99), r"`pad_token_id` \(99\) must be in \[0, vocab_size=99\)"),
    (dict(mixer_layout=[{"strategy": "cascade", "mixers": ["fourier", "attention"], "share_norm": 1}] * 2),
     r"`mixer_layout\[0\]` \(cascade\): 'share_norm' must be one of \[False, True\], got 1"),
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


def test_a_cylinder_patch_needs_two_axes():
    with pytest.raises(ValueError, match=r"`patch_shape='cylinder'` needs spatial_dims >= 2"):
        tiny_config("gfnet", image_size=30, patch_size=5, spatial_dims=1, num_channels=1, patch_shape="cylinder")


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


CONFIG_LOGGER = "fourierformers.configuration.configuration_spectral"


@pytest.mark.parametrize("family", FAMILIES)
def test_seed_keywords_of_a_saved_config_are_dropped_with_a_warning(family, tmp_path, caplog):
    """Older configs stored seed-library keywords (spectrans' `dropout`, ...) and ignored them: loading one drops
    the keyword with a warning naming the field to use, while the constructor still refuses it."""
    config = tiny_config(family)
    model_class(family, "Model")(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "dropout": 0.1, "num_layers": 2}))
    loaders = {
        "AutoConfig": lambda: AutoConfig.from_pretrained(tmp_path),
        "from_pretrained": lambda: CONFIG_CLASSES[family].from_pretrained(tmp_path),
        "from_json_file": lambda: CONFIG_CLASSES[family].from_json_file(tmp_path / "config.json"),
        "from_dict": lambda: CONFIG_CLASSES[family].from_dict({**saved, "dropout": 0.1, "num_layers": 2}),
        "AutoModel": lambda: AutoModel.from_pretrained(tmp_path).config,
    }
    for loader, load in loaders.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
            reloaded = load()
        # sorted and deduplicated: AutoModel reads config.json more than once, each read warning again
        warnings = sorted({record.getMessage() for record in caplog.records if record.name == CONFIG_LOGGER})
        assert len(warnings) == 2, loader
        assert "Ignoring `dropout`=0.1" in warnings[0] and "use `hidden_dropout_prob`" in warnings[0], loader
        assert "Ignoring `num_layers`=2" in warnings[1] and "use `num_hidden_layers`" in warnings[1], loader
        assert not hasattr(reloaded, "dropout") and not hasattr(reloaded, "num_layers"), loader
        assert reloaded.hidden_dropout_prob == config.hidden_dropout_prob, loader
        assert json.loads(reloaded.to_json_string()) == saved, loader
    with pytest.raises(ValueError, match=r"`dropout` is a keyword of the seed libraries .*: use `hidden_dropout_prob`"):
        tiny_config(family, dropout=0.1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "image, field, value, default",
    [
        (False, "condition_size", 17, None),
        (False, "depths", [1, 1], None),
        (False, "patch_stride", 2, None),
        (False, "packing_strategy", "dense_square", None),
        (False, "num_output_channels", 2, None),
        (False, "patch_shape", "cone", "cuboid"),
        (False, "spatial_dims", 7, 2),
        (True, "position_embedding_type", "sinusoidal", "absolute"),
        (True, "afno_num_modes", 2, None),
    ],
)
def test_fields_older_versions_ignored_are_dropped_when_loading(family, image, field, value, default, tmp_path,
                                                                caplog):
    """Fields older versions stored and ignored (`condition_size` without `condition_type`, image fields in a text
    config, positions other than the learned ones of an image config, `afno_num_modes` beside `afno_kept_modes`):
    the constructor now refuses them, and a saved config holding one loads with a warning, as the saved model was."""
    afno_layout = dict(mixer_layout=["global_filter", "afno"], afno_kept_modes=[[0, 1], None])
    fields = dict(image_size=16, patch_size=4, **afno_layout) if image else {}
    model = model_class(family, "Model")(tiny_config(family, **fields))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, field: value}))
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        reloaded = AutoModel.from_pretrained(tmp_path)
    # once: reading the config again for the checks before loading logged every warning twice
    assert sum(f"Ignoring `{field}`={value!r}" in record.getMessage() for record in caplog.records) == 1
    assert getattr(reloaded.config, field) == default
    torch.testing.assert_close(reloaded.state_dict(), model.state_dict(), atol=0, rtol=0)
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(family, **fields, **{field: value})


@pytest.mark.parametrize("field, value", [("afno_num_modes", 2), ("afno_kept_modes", [[0, 1], None])])
def test_afno_mode_fields_without_an_afno_layer_are_dropped_when_loading(field, value, tmp_path, caplog):
    """`afno_num_modes` and `afno_kept_modes` select the modes of AFNO mixers: the constructor refuses them in a
    model without one, which older versions built and ignored them in; such a saved config loads without them."""
    image = dict(image_size=16, patch_size=4)
    with_afno = tiny_config("gfnet", **image, mixer_layout=["global_filter", "afno"], **{field: value})
    assert getattr(with_afno, field) == value
    model = model_class("gfnet", "Model")(tiny_config("gfnet", **image))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, field: value}))
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        reloaded = AutoModel.from_pretrained(tmp_path)
    warnings = [record.getMessage() for record in caplog.records]
    assert [message for message in warnings if message.startswith(f"Ignoring `{field}`")] == [
        f"Ignoring `{field}`={value!r} of the saved GFNetConfig: no layer of the model has an AFNO mixer."
    ]
    assert getattr(reloaded.config, field) is None
    with pytest.raises(ValueError, match=f"`{field}` .* no layer uses one"):
        tiny_config("gfnet", **image, **{field: value})


def test_a_hierarchical_config_takes_its_depth_from_depths(tmp_path):
    """GFNet-H's `num_hidden_layers` defaults to sum(depths), as Swin's depth follows its stages; given too, it must
    agree; a config without stages keeps the default of 4 layers."""
    stages = dict(image_size=16, patch_size=4, hidden_sizes=[16, 32], depths=[1, 2], hidden_size=32)
    config = GFNetConfig(**stages, intermediate_size=64)
    assert config.num_hidden_layers == 3 and config.mixer_layout == ["global_filter"] * 3
    config.save_pretrained(tmp_path)
    assert GFNetConfig.from_pretrained(tmp_path).num_hidden_layers == 3
    assert len(GFNetForImageClassification(config).base_model.layers) == 3
    assert GFNetConfig().num_hidden_layers == 4 and len(GFNetConfig().mixer_layout) == 4
    with pytest.raises(ValueError, match=r"`num_hidden_layers` \(4\) must equal sum\(depths\) = 3"):
        GFNetConfig(**stages, num_hidden_layers=4)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(filter_activation="sigmoid"),
         r"`filter_activation`='sigmoid': the imaginary part .* sigmoid\(W_i\) - 1/2"),
        (dict(image_size=16, patch_size=5, patch_shape="cylinder", packing_strategy="complete_hexagonal"),
         r"`packing_strategy`='complete_hexagonal': its strides are now tinyBIG's"),
    ],
)
def test_a_config_saved_before_format_2_warns_of_fields_that_changed_meaning(fields, message, tmp_path, caplog):
    """Configs written before `fourierformers_format` existed load, marked as the current format, with a warning
    where a field they use computes another function now; configs of the current format load silently."""
    tiny_config("gfnet", **fields).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["fourierformers_format"] == 2
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        assert AutoConfig.from_pretrained(tmp_path).fourierformers_format == 2
    assert not caplog.records
    del saved["fourierformers_format"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    for load in (lambda: AutoConfig.from_pretrained(tmp_path),
                 lambda: GFNetConfig.from_json_file(tmp_path / "config.json")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
            assert load().fourierformers_format == 2
        assert any(re.search(message, record.getMessage()) for record in caplog.records)


def test_a_config_of_a_newer_format_loads_with_a_warning_and_keeps_its_format(tmp_path, caplog):
    """A config written by a later version, whose fields may mean something this version does not know, loads (the
    weights still fit) but says so; an invalid format is refused like any other field."""
    tiny_config("gfnet").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "fourierformers_format": 3}))
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        assert AutoConfig.from_pretrained(tmp_path).fourierformers_format == 3
    assert any(re.search(r"format 3 .*this version of fourierformers reads formats up to 2", record.getMessage())
               for record in caplog.records)
    for bad in (0, "2", 2.0):
        with pytest.raises(ValueError, match=r"`fourierformers_format` must be a positive integer, got"):
            GFNetConfig.from_dict({**saved, "fourierformers_format": bad})


def test_a_sphere_strategy_that_no_longer_exists_is_refused_naming_tinybigs(tmp_path):
    config = tiny_config("gfnet", image_size=(8, 16, 16), spatial_dims=3, patch_size=5, patch_shape="sphere",
                         packing_strategy="dense_simple_cubic")
    saved = {**config.to_dict(), "packing_strategy": "face_centered_cubic"}
    del saved["fourierformers_format"]
    with pytest.raises(ValueError, match=r"saved before format 2 with `packing_strategy`='face_centered_cubic', a "
                                         r"strategy that is not tinyBIG's and no longer exists"):
        GFNetConfig.from_dict(saved)


def test_condition_size_is_kept_when_the_condition_type_is_overridden(tmp_path):
    config = tiny_config("gfnet")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "condition_size": 6}))
    reloaded = AutoConfig.from_pretrained(tmp_path, condition_type="adaln_zero")
    assert (reloaded.condition_type, reloaded.condition_size) == ("adaln_zero", 6)


IMAGE = dict(image_size=16, patch_size=4)  # a 4 x 4 token grid: frequency axes (4, 3)
KEPT_MODES_MESSAGE = r"`afno_kept_modes\[0\]` must be None or a non-empty list of distinct integer indices in \[0, 4\)"
MALFORMED = [
    # (fields of the base config, malformed fields, message)
    *[(IMAGE, dict(afno_kept_modes=[modes, None]), KEPT_MODES_MESSAGE) for modes in (
        [[0]], [[0], 1], [0.0], [True, 2], [False], ["0"], "01", [-1], [1, 1], [], 2,
    )],
    (IMAGE, dict(afno_kept_modes=3), r"`afno_kept_modes` needs one entry .* per frequency axis \(4, 3\), got 3"),
    (IMAGE, dict(hidden_sizes=5, depths=[1, 1], patch_embed_rank=4), r"`hidden_sizes` must be a list of positive int"),
    (IMAGE, dict(hidden_sizes=[], depths=[], patch_embed_rank=4), r"`hidden_sizes` \(\[\]\) and `depths` \(\[\]\)"),
    (IMAGE, dict(hidden_sizes=[True, 32], depths=[1, 1]), r"`hidden_sizes` must be a list of positive integers"),
    (IMAGE, dict(hidden_sizes=[[16], 32], depths=[1, 1]), r"`hidden_sizes` must be a list of positive integers"),
    (IMAGE, dict(hidden_sizes=[16, 32], depths=[True, 1]), r"`depths` must be a list of positive integers"),
    (IMAGE, dict(hidden_sizes=[16, 32], depths=[1.0, 1]), r"`depths` must be a list of positive integers"),
    ({}, dict(depths=[1, 1]), r"`depths` needs an image model \(set `image_size`\)"),
    (IMAGE, dict(spatial_dims=True), r"`spatial_dims` must be 1, 2 or 3, got True"),
    (IMAGE, dict(num_channels=True), r"`num_channels` must be a positive integer, got True"),
    (IMAGE, dict(packing_strategy=["dense_square"]), r"`packing_strategy` \['dense_square'\] is not defined .*allowed"),
    ({}, dict(type_vocab_size=True), r"`type_vocab_size` must be an integer >= 0, got True"),
    ({}, dict(pad_token_id="0"), r"`pad_token_id` \('0'\) must be in \[0, vocab_size=99\): an integer token id"),
    ({}, dict(num_hidden_layers=2.0), r"`num_hidden_layers` must be a positive integer, got 2.0"),
    *[({}, dict(mixer_layout=[{"strategy": strategy, "mixers": ["fourier", "attention"]}, "fourier"]),
       r"`mixer_layout\[0\]` is .*a dict with 'strategy' in \['adaptive', 'multiscale', 'cascade'\]")
      for strategy in (5, None, ["adaptive"], {"adaptive": "soft"}, True)],
    ({}, dict(condition_size=8), r"`condition_size` \(8\) requires `condition_type` \(one of \['cross_attention', "
                                 r"'adaln_zero'\]\); without a conditioning branch leave `condition_size` unset"),
]
MALFORMED_IDS = [f"{next(iter(fields))}{index}" for index, (_, fields, _) in enumerate(MALFORMED)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("base,fields,message", MALFORMED, ids=MALFORMED_IDS)
def test_malformed_values_are_a_value_error_naming_the_field(family, base, fields, message):
    """Unhashable, bool, float or string values where ints or strategy names belong used to escape as a TypeError
    (or IndexError) from deep in the checks, or to be accepted (bools are ints in Python)."""
    with pytest.raises(ValueError, match=message):
        tiny_config(family, **base, **fields)
    config = tiny_config(family, **base)
    for name, value in fields.items():
        setattr(config, name, value)
    with pytest.raises(ValueError, match=message):
        model_class(family, "Model")(config)


def test_compact_layout_with_a_malformed_strategy_or_layer_count_is_a_value_error():
    with pytest.raises(ValueError, match=r"a dict with 'strategy' in \['adaptive', 'multiscale', 'cascade'\]"):
        tiny_config("gfnet", mixer_layout={"pattern": [{"strategy": ["cascade"], "mixers": ["fourier", "afno"]}]})
    with pytest.raises(ValueError, match=r"`num_hidden_layers` must be a positive integer, got '2'"):
        tiny_config("gfnet", mixer_layout={"pattern": ["fourier"]}, num_hidden_layers="2")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("assign", ["setattr", "update"])
def test_assigned_depth_brings_the_layout_along(family, assign):
    """`config.num_hidden_layers = n` (or `config.update`) on an existing config, the usual way to make a smaller
    model, resizes the per-layer layout as `from_pretrained(path, num_hidden_layers=n)` does: a family default
    becomes the default at the new depth (fnet_hybrid's attention layers stay last), a layout of one mixer is cut or
    repeated, a mixed one is cut. It used to be refused for every family, the layout keeping the old depth."""

    def set_depth(config, depth):
        if assign == "setattr":
            config.num_hidden_layers = depth
        else:
            config.update({"num_hidden_layers": depth})

    config = tiny_config(family, num_hidden_layers=4)
    for depth in (2, 6):
        set_depth(config, depth)
        assert config.mixer_layout == CONFIG_CLASSES[family].default_layout(depth)
        assert len(model_class(family, "Model")(config).layers) == depth
    mixed = tiny_config(family, num_hidden_layers=3, mixer_layout=["global_filter", "attention", "fourier"])
    set_depth(mixed, 2)
    assert mixed.mixer_layout == ["global_filter", "attention"]
    set_depth(mixed, 4)  # more layers than a mixed layout has: which mixers would be added is for the user to say
    with pytest.raises(ValueError, match=r"`mixer_layout` has 2 entries but `num_hidden_layers` is 4"):
        model_class(family, "Model")(mixed)
    with pytest.raises(ValueError, match=r"`mixer_layout` has 3 entries but `num_hidden_layers` is 2"):
        tiny_config(family, num_hidden_layers=2, mixer_layout=["fourier"] * 3)  # given together: still checked


@pytest.mark.parametrize("family,saved,overrides,expected", [
    ("gfnet", dict(image_size=16, patch_size=4), dict(image_size=15, patch_size=5), dict(grid_shape=(3, 3))),
    ("gfnet", dict(image_size=16, patch_size=4), dict(image_size=18, patch_stride=2), dict(grid_shape=(8, 8))),
    ("afno", dict(image_size=16, patch_size=4), dict(spatial_dims=3, image_size=[8, 8, 8]), dict(grid_shape=(2,) * 3)),
    ("gfnet", {}, dict(image_size=8, patch_size=2), dict(grid_shape=(4, 4))),
    ("fnet_hybrid", {}, dict(hidden_size=15, num_attention_heads=3), dict(num_attention_heads=3)),
    ("afno", {}, dict(hidden_size=9, afno_num_blocks=3), dict(afno_num_blocks=3)),
])
def test_from_pretrained_overrides_checked_against_each_other_change_together(family, saved, overrides, expected,
                                                                                tmp_path):
    """Every override is applied before the config checks itself: a new value was checked against the saved value of
    its partner field (image_size 15 against the saved 4-pixel patch), refusing what the constructor accepts."""
    tiny_config(family, hidden_size=16, num_attention_heads=2, afno_num_blocks=2, **saved).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path, **overrides)
    assert {name: getattr(config, name) for name in expected} == expected


def test_depth_override_of_from_pretrained_follows_the_family_default_as_assignment_does(tmp_path):
    """FNet-hybrid's default layout puts attention in its last layers: from_pretrained(num_hidden_layers=n) gives
    the default at n layers, as assigning the depth does (it gave the saved layout's first layers, or an error)."""
    FNetHybridConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=3).save_pretrained(
        tmp_path / "default")
    for depth in (1, 4):
        assigned = FNetHybridConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=3)
        assigned.num_hidden_layers = depth
        loaded = FNetHybridConfig.from_pretrained(tmp_path / "default", num_hidden_layers=depth)
        assert loaded.mixer_layout == assigned.mixer_layout == FNetHybridConfig.default_layout(depth)
    FNetHybridConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=3,
                     mixer_layout=["fourier", "attention", "fourier"]).save_pretrained(tmp_path / "mixed")
    assert FNetHybridConfig.from_pretrained(tmp_path / "mixed", num_hidden_layers=2).mixer_layout == [
        "fourier", "attention"]


def test_none_means_the_default_after_creation_too(tmp_path):
    """The constructor reads None as the default of `mixer_layout`, `fourier_norm` and `pooler_projection`; given to
    from_pretrained (which assigns its keywords again after creating the config) or assigned, None stayed and the
    model refused to build ("`mixer_layout` must be a list ..., got None")."""
    fields = dict(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=3)
    FNetHybridConfig(**fields, mixer_layout=["fourier"] * 3, fourier_norm="ortho", pooler_projection=False,
                     ).save_pretrained(tmp_path)
    defaults = dict(mixer_layout=["fourier", "attention", "attention"], fourier_norm="backward", pooler_projection=True)
    assert {name: getattr(FNetHybridConfig(**fields), name) for name in defaults} == defaults
    for name, default in defaults.items():
        assert getattr(AutoConfig.from_pretrained(tmp_path, **{name: None}), name) == default
        assigned = FNetHybridConfig.from_pretrained(tmp_path)
        assigned.update({name: None})
        assert getattr(assigned, name) == default
    image = FNetHybridConfig(**fields, image_size=16, patch_size=4, fourier_norm="backward")
    image.fourier_norm = None
    assert image.fourier_norm == "ortho"


@pytest.mark.parametrize("assign", ["from_pretrained", "update", "update_depth_last", "setattr_depth_last"])
def test_a_compact_layout_set_after_creation_repeats_to_the_final_depth(assign, tmp_path):
    """transformers sets each `from_pretrained` keyword again after the config is created, and `update` and
    assignment set fields the same way: a `{"pattern": [...]}` layout stayed a dict, `mixers_used` read its key
    ({'pattern'}) and saving refused the config with a message about the fields of mixers it does not use. Expanded
    at once, a pattern assigned before the depth was repeated to the old depth, then taken for the family default."""
    pattern = {"pattern": ["fourier", {"strategy": "cascade", "mixers": ["fourier", "attention"]}]}
    expected = ["fourier", {"strategy": "cascade", "mixers": ["fourier", "attention"], "share_norm": False}] * 2
    config = tiny_config("fnet_hybrid", num_hidden_layers=2)
    if assign == "from_pretrained":
        config.save_pretrained(tmp_path)
        config = AutoConfig.from_pretrained(tmp_path, mixer_layout=pattern, num_hidden_layers=4)
        assert config.mixer_layout == expected
    elif assign == "update":
        config.update({"num_hidden_layers": 4, "mixer_layout": pattern})
    elif assign == "update_depth_last":
        config.update({"mixer_layout": pattern, "num_hidden_layers": 4})
    else:
        config.mixer_layout = pattern
        config.num_hidden_layers = 4
    assert config.mixers_used == {"fourier", "attention"}
    assert [type(layer.mixer).__name__ for layer in model_class("fnet_hybrid", "Model")(config).layers] == [
        "FourierMixer", "CascadeMixer"] * 2
    config.save_pretrained(tmp_path / "saved")
    assert config.mixer_layout == AutoConfig.from_pretrained(tmp_path / "saved").mixer_layout == expected


def test_the_compact_or_option_less_form_of_the_built_layout_is_the_built_layout():
    """Compared as written, a layout assigned again in another form of the same layers was refused by forward as a
    changed config (until a save expanded it)."""
    cascade = {"strategy": "cascade", "mixers": ["fourier", "attention"]}
    model = model_class("fnet_hybrid", "Model")(tiny_config("fnet_hybrid", num_hidden_layers=2,
                                                            mixer_layout=[cascade, cascade]))
    inputs = torch.randint(4, 50, (2, 6))
    expected = model(inputs).last_hidden_state
    for layout in ({"pattern": [cascade]}, [dict(cascade), dict(cascade)]):
        model.config.mixer_layout = layout
        torch.testing.assert_close(model(inputs).last_hidden_state, expected)
    model.config.mixer_layout = {"pattern": ["fourier"]}
    with pytest.raises(ValueError, match=r"The config no longer matches the built model: mixer_layout="):
        model(inputs)


def test_a_config_updated_with_its_own_dict_still_matches_the_model():
    """`to_dict` turns tuples into lists: the config check saw image_size=[16, 16] as a change from (16, 16)."""
    config = tiny_config("gfnet", image_size=(16, 16), patch_size=(4, 4), mixer_layout=None)
    model = model_class("gfnet", "ForImageClassification")(config).eval()
    pixel_values = torch.randn(1, 3, 16, 16)
    expected = model(pixel_values=pixel_values).logits
    model.config.update(model.config.to_dict())
    assert model.config.image_size == [16, 16]
    torch.testing.assert_close(model(pixel_values=pixel_values).logits, expected)


def test_seed_keywords_given_to_from_pretrained_are_refused_unless_returned_to_the_caller(tmp_path):
    """A config's `from_pretrained` dropped keywords that are not fields; a model's `from_pretrained` asks for them
    back (`return_unused_kwargs=True`) and passes them to the model's `__init__`, a subclass's own arguments."""
    tiny_config("gfnet").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"`hidden_dim` is a keyword of the seed libraries .*: use `hidden_size`"):
        AutoConfig.from_pretrained(tmp_path, hidden_dim=64)
    _, unused = AutoConfig.from_pretrained(tmp_path, return_unused_kwargs=True, dropout=0.3)
    assert unused == {"dropout": 0.3}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", ["2", 2.0, 0, None])
def test_a_depth_override_of_from_pretrained_is_checked_before_it_resizes_the_layout(family, depth, tmp_path):
    """A string from a command line (or a float) reached the layout resizing first: a TypeError about multiplying
    a sequence, or comparing str and int, that named no field; None gave a config of depth None."""
    tiny_config(family).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"`num_hidden_layers` must be a positive integer, got {depth!r}"):
        AutoConfig.from_pretrained(tmp_path, num_hidden_layers=depth)


@pytest.mark.parametrize("override, message", [
    (dict(depths=[1, 1]), r"`depths` needs an image model \(set `image_size`\)"),
    (dict(afno_num_modes=2), r"`afno_num_modes` \(2\) selects the modes of AFNO mixers, and no layer uses one"),
])
def test_an_override_of_from_pretrained_is_checked_not_dropped_as_an_unused_saved_field(override, message, tmp_path,
                                                                                        caplog):
    """Fields that a saved config holds but its model never used are dropped with a warning; a keyword override
    went through the same filter, was blamed on the saved config ("Ignoring `depths` of the saved GFNetConfig"),
    then set again, and gave an invalid config that only failed when a model was built from it."""
    tiny_config("gfnet").save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER), pytest.raises(ValueError, match=message):
        AutoConfig.from_pretrained(tmp_path, **override)
    assert "of the saved" not in caplog.text


def test_hierarchical_stage_overrides_of_from_pretrained_are_checked_together(tmp_path):
    """`hidden_sizes`, `depths` and `hidden_size` are checked against each other, so their `from_pretrained`
    overrides are applied before the config checks itself, and `depths` alone sets `num_hidden_layers` to its sum.
    `depths` used to be applied afterwards: consistent overrides were refused with the saved depths in the message,
    and `depths` alone gave an invalid config (5 layers over 4 stage blocks) without an error."""
    GFNetConfig(image_size=32, patch_size=4, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 2, 1],
                num_hidden_layers=5, hidden_size=64).save_pretrained(tmp_path / "gfnet_h")
    for overrides in (dict(depths=[1, 1, 1, 1]), dict(depths=[1, 1, 1, 1], num_hidden_layers=4),
                      dict(depths=[1, 1, 1, 1], mixer_layout=["global_filter"] * 4),
                      dict(depths=[1, 1, 1, 1], num_hidden_layers=None)):  # None: the stages' depth, as constructed
        config = GFNetConfig.from_pretrained(tmp_path / "gfnet_h", **overrides)
        assert config.depths == [1, 1, 1, 1] and config.num_hidden_layers == 4 and len(config.mixer_layout) == 4
    with pytest.raises(ValueError, match=r"`num_hidden_layers` \(5\) must equal sum\(depths\) = 4"):
        GFNetConfig.from_pretrained(tmp_path / "gfnet_h", depths=[1, 1, 1, 1], num_hidden_layers=5)
    GFNetConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=3).save_pretrained(tmp_path / "flat")
    config = AutoConfig.from_pretrained(tmp_path / "flat", hidden_sizes=[32, 64], depths=[1, 2], hidden_size=64)
    assert config.stage_depths == [1, 2] and config.stage_hidden_sizes == [32, 64]


@pytest.mark.parametrize("family", FAMILIES)
def test_condition_size_needs_condition_type_also_when_assigned(family):
    """`from_pretrained(path, condition_type=None)` of a conditioned checkpoint keeps its condition_size: refused
    rather than silently ignored."""
    config = tiny_config(family, condition_type="adaln_zero", condition_size=6)
    config.condition_type = None
    with pytest.raises(ValueError, match=r"`condition_size` \(6\) requires `condition_type`"):
        config.validate()
    config.condition_size = None
    config.validate()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fields", [{}, dict(condition_type="cross_attention", condition_size=6)], ids=["off", "on"])
def test_default_and_conditioned_configs_round_trip(family, fields, tmp_path):
    """The default condition_size (None) is saved with condition_type None and must load again."""
    config = CONFIG_CLASSES[family](**fields)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()).get("condition_size") == fields.get("condition_size")
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is type(config)
    assert reloaded.to_diff_dict() == config.to_diff_dict()


def test_muting_the_config_warnings_of_a_load_leaves_other_threads_warnings():
    """A load mutes the warnings of reading a config a second time in its own thread only: the logger's `disabled`
    flag, saved and restored by loads in two threads at once, could stay set for good (and muted every thread)."""
    from fourierformers.checkpoint_loading import warnings_of_reading_configs_muted

    logger = logging.getLogger(GFNetConfig.drop_ignored_fields.__module__)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    muted, release = threading.Event(), threading.Event()

    def load():
        with warnings_of_reading_configs_muted(GFNetConfig):
            muted.set()
            release.wait(10)
            logger.warning("in the loading thread")

    thread = threading.Thread(target=load)
    thread.start()
    try:
        muted.wait(10)
        logger.warning("in another thread meanwhile")
        release.set()
        thread.join()
        logger.warning("after the load")
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == ["in another thread meanwhile", "after the load"]
    assert not logger.disabled
