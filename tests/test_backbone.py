"""`XBackbone` (`AutoBackbone`): the feature maps of an image model's stages for transformers' dense-prediction
models, checked against the backbone's hidden states, through a classifier's checkpoint and inside UperNet."""

import pytest
import torch
from conftest import FAMILIES, model_class, tiny_config
from transformers import AutoBackbone, UperNetConfig, UperNetForSemanticSegmentation

HIERARCHICAL = dict(image_size=32, patch_size=4, hidden_sizes=[8, 16, 32], depths=[1, 2, 1], num_hidden_layers=4,
                    hidden_size=32)
FLAT = dict(image_size=16, patch_size=4, num_hidden_layers=3)
# (B, width, *grid) of every stage name, and the hidden state each stage ends at (the embeddings are number 0)
STAGES = {
    "hierarchical": (HIERARCHICAL, {"stem": (8, 8, 8), "stage1": (8, 8, 8), "stage2": (16, 4, 4), "stage3": (32, 2, 2)},
                     [0, 1, 3, 4]),
    "flat": (FLAT, {"stem": (32, 4, 4), "stage1": (32, 4, 4), "stage2": (32, 4, 4), "stage3": (32, 4, 4)},
             [0, 1, 2, 3]),
}


def backbone(family, layout="hierarchical", **overrides):
    fields, shapes, _ = STAGES[layout]
    return model_class(family, "Backbone")(tiny_config(family, **{**fields, **overrides})).eval()


@pytest.mark.parametrize("layout", list(STAGES))
@pytest.mark.parametrize("family", FAMILIES)
def test_feature_maps_are_the_stage_outputs_on_their_grids(family, layout):
    """Each selected stage's output before the next downsampling, channels first; normalised as the model's output
    is: the last by the final norm of a pre-norm model, the others by a norm of their own (FNet-hybrid's post-norm
    blocks end in a norm, and the model has no final norm)."""
    fields, shapes, ends = STAGES[layout]
    model = backbone(family, layout, out_features=list(shapes))
    assert model.stage_names == list(shapes) and model.channels == [shape[0] for shape in shapes.values()]
    final_norm = model.base_model.norm
    assert (final_norm is None) == (family == "fnet_hybrid")
    assert list(model.feature_norms) == ([] if final_norm is None else ["stem", "stage1", "stage2"])
    for norm in model.feature_norms.values():  # a norm that starts as the identity map, as the blocks' norms
        torch.nn.init.normal_(norm.weight)
    pixel_values = torch.randn(2, 3, fields["image_size"], fields["image_size"])
    with torch.no_grad():
        outputs = model(pixel_values)
        encoded = model.base_model(pixel_values=pixel_values, output_hidden_states=True)
    assert [tuple(f.shape) for f in outputs.feature_maps] == [(2, *shape) for shape in shapes.values()]
    assert outputs.hidden_states is None
    for name, feature_map, end in zip(shapes, outputs.feature_maps, ends):
        grid = encoded.reshaped_hidden_states[end]  # (B, width, *grid)
        norm = final_norm if name == "stage3" else model.feature_norms[name] if final_norm is not None else None
        expected = grid if norm is None else norm(grid.movedim(1, -1)).movedim(-1, 1)
        torch.testing.assert_close(feature_map, expected)
    torch.testing.assert_close(
        outputs.feature_maps[-1], encoded.last_hidden_state.transpose(1, 2).reshape(outputs.feature_maps[-1].shape)
    )


def test_out_features_default_to_the_last_stage_and_take_indices():
    model = backbone("gfnet")
    assert model.out_features == ["stage3"] and model.out_indices == [3] and model.channels == [32]
    assert len(model.feature_norms) == 0
    assert model.config.out_features is None  # resolved by the backbone, not written into a config others may share
    model.config.update(dict(hidden_sizes=[16, 32], depths=[2, 2]))
    model_class("gfnet", "ForImageClassification")(model.config)
    model = backbone("gfnet", out_indices=[0, -1])
    assert model.out_features == ["stem", "stage3"] and model.channels == [8, 32]
    assert list(model.feature_norms) == ["stem"]


def test_post_norm_feature_maps_are_the_block_outputs():
    """A post-norm block ends in a norm and the model has no final norm: the stage outputs are returned as they are."""
    model = backbone("gfnet", "flat", norm_first=False, out_features=["stage1", "stage3"])
    assert len(model.feature_norms) == 0
    pixel_values = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        feature_maps = model(pixel_values).feature_maps
        grids = model.base_model(pixel_values=pixel_values, output_hidden_states=True).reshaped_hidden_states
    torch.testing.assert_close(feature_maps, (grids[1], grids[3]), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_states_tuples_and_other_image_sizes(family):
    model = backbone(family, out_features=["stage1", "stage3"])
    pixel_values = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        outputs = model(pixel_values, output_hidden_states=True)
        as_tuple = model(pixel_values, return_dict=False)
        larger = model(torch.randn(1, 3, 64, 64), interpolate_pos_encoding=True)
    assert [tuple(h.shape) for h in outputs.hidden_states] == [(1, 64, 8), (1, 64, 8), (1, 16, 16), (1, 16, 16),
                                                               (1, 4, 32)]
    torch.testing.assert_close(as_tuple[0], outputs.feature_maps)
    assert [tuple(f.shape) for f in larger.feature_maps] == [(1, 8, 16, 16), (1, 32, 4, 4)]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_classifier_checkpoint_loads_into_the_backbone(family, tmp_path):
    """The classifier's weights load (only the new feature norms of a pre-norm model are missing), and the last
    feature map is the classifier's backbone output on its grid."""
    classifier = model_class(family, "ForImageClassification")(tiny_config(family, **HIERARCHICAL)).eval()
    classifier.save_pretrained(tmp_path)
    model, info = model_class(family, "Backbone").from_pretrained(
        tmp_path, out_features=["stage2", "stage3"], output_loading_info=True
    )
    new_norms = [] if family == "fnet_hybrid" else ["feature_norms.stage2.bias", "feature_norms.stage2.weight"]
    assert sorted(info["missing_keys"]) == new_norms
    assert sorted(info["unexpected_keys"]) == ["classifier.bias", "classifier.weight"]
    for name, parameter in model.feature_norms.named_parameters():  # initialised by `_init_weights`, not left empty
        assert torch.equal(parameter, torch.full_like(parameter, 1.0 if name.endswith("weight") else 0.0))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feature_maps = model.eval()(pixel_values).feature_maps
        tokens = classifier.base_model(pixel_values=pixel_values).last_hidden_state  # (B, N, D)
    torch.testing.assert_close(feature_maps[-1].flatten(2).transpose(1, 2), tokens, rtol=0, atol=0)


def test_a_saved_backbone_keeps_its_stages(tmp_path):
    model = backbone("afno", out_features=["stem", "stage2"])
    model.save_pretrained(tmp_path)
    loaded = model_class("afno", "Backbone").from_pretrained(tmp_path).eval()
    assert loaded.out_features == ["stem", "stage2"] and loaded.out_indices == [0, 2]
    pixel_values = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).feature_maps, model(pixel_values).feature_maps)


def test_auto_backbone_builds_each_family():
    for family in FAMILIES:
        config = tiny_config(family, **HIERARCHICAL, out_features=["stage1"])
        assert type(AutoBackbone.from_config(config)) is model_class(family, "Backbone")


@pytest.mark.parametrize("family", FAMILIES)
def test_upernet_segments_with_a_spectral_backbone(family, tmp_path):
    """transformers' UperNet builds the backbone from our config (`AutoBackbone`), reads its `channels`, trains
    every parameter and saves and reloads."""
    backbone_config = tiny_config(family, **HIERARCHICAL, out_features=["stage1", "stage2", "stage3"])
    config = UperNetConfig(backbone_config=backbone_config, hidden_size=16, auxiliary_in_channels=32,
                          auxiliary_channels=16, num_labels=4)
    model = UperNetForSemanticSegmentation(config)
    assert type(model.backbone) is model_class(family, "Backbone") and model.backbone.channels == [8, 16, 32]
    pixel_values, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    outputs = model(pixel_values, labels=labels)
    assert outputs.logits.shape == (2, 4, 32, 32)
    outputs.loss.backward()
    assert [name for name, parameter in model.named_parameters() if parameter.grad is None] == []
    model.eval().save_pretrained(tmp_path)
    loaded = UperNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).logits, model(pixel_values).logits)


def test_stages_that_do_not_exist_are_refused():
    with pytest.raises(ValueError, match=r"out_features must be a subset of stage_names: \['stem', 'stage1', 'stage2', "
                                         r"'stage3'\] got \['stage4'\]"):
        tiny_config("gfnet", **HIERARCHICAL, out_features=["stage4"])
    config = tiny_config("gfnet", **HIERARCHICAL, out_features=["stage3"])
    config.update(dict(hidden_sizes=[16, 32], depths=[2, 2], num_hidden_layers=4))
    with pytest.raises(ValueError, match=r"out_features must be a subset of stage_names: \['stem', 'stage1', "
                                         r"'stage2'\] got \['stage3'\]"):
        config.validate()
    with pytest.raises(ValueError, match="select the feature maps of an image model's XBackbone: set `image_size`"):
        tiny_config("gfnet", out_features=["stage1"])
    for empty in (dict(out_features=[]), dict(out_indices=[])):  # a backbone without feature maps
        with pytest.raises(ValueError, match=r"must name at least one of the stages \['stem', 'stage1', 'stage2', "
                                             r"'stage3'\], or be unset \(None\) for the last one"):
            tiny_config("gfnet", **HIERARCHICAL, **empty)
    with pytest.raises(ValueError, match="needs an image config"):
        model_class("gfnet", "Backbone")(tiny_config("gfnet"))


def test_out_features_changed_after_building_are_refused_where_a_norm_is_missing():
    model = backbone("gfnet", out_features=["stage1", "stage2", "stage3"])
    model.out_features = ["stage2", "stage3"]  # a subset: its norms exist
    assert len(model(torch.randn(1, 3, 32, 32)).feature_maps) == 2
    model.out_features = ["stem", "stage2"]
    with pytest.raises(ValueError, match=r"name stages \['stem'\] that this backbone has no feature norms for: it was "
                                         r"built for \['stage1', 'stage2', 'stage3'\]"):
        model(torch.randn(1, 3, 32, 32))


def test_config_output_flags_are_the_defaults_and_attentions_come_back():
    """As every head's: `config.output_hidden_states` and `config.return_dict` are the call's defaults, and the
    attention layer's weights come back with `output_attentions` (UperNet passes both flags, other callers may not)."""
    model = backbone("gfnet", "flat", mixer_layout=["global_filter", "attention", "global_filter"],
                     output_hidden_states=True, return_dict=False)
    pixel_values = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        as_tuple = model(pixel_values)
        outputs = model(pixel_values, output_hidden_states=False, output_attentions=True, return_dict=True)
    assert type(as_tuple) is tuple and len(as_tuple) == 2  # (feature_maps, hidden_states)
    assert [tuple(f.shape) for f in as_tuple[0]] == [(1, 32, 4, 4)] and len(as_tuple[1]) == 4
    assert outputs.hidden_states is None
    assert [tuple(weights.shape) for weights in outputs.attentions] == [(1, 4, 16, 16)]


def test_stages_of_an_invalid_depth_are_refused_by_name():
    """`stage_names` counts the stages of `depths`: an invalid one is named before it is counted (len(5) raised a
    TypeError)."""
    with pytest.raises(ValueError, match=r"`depths` must be a list of positive integers \(one per stage\), got 5"):
        tiny_config("gfnet", image_size=32, patch_size=4, hidden_sizes=[16, 32], depths=5, out_features=["stage1"])


def test_a_config_made_text_refuses_its_stages():
    """`validate()` checks the stages again after a change: a text config has no feature maps to select."""
    config = tiny_config("gfnet", **FLAT, out_features=["stage1"])
    config.update(dict(image_size=None))
    with pytest.raises(ValueError, match="select the feature maps of an image model's XBackbone: set `image_size`"):
        config.validate()


def test_feature_norms_are_of_the_models_norm_type_and_eps():
    """A selected stage's own norm normalises as the model's final norm does (`norm_type`, `layer_norm_eps`)."""
    model = backbone("gfnet", norm_type="rms_norm", layer_norm_eps=1e-3, out_features=["stem", "stage3"])
    norm, final_norm = model.feature_norms["stem"], model.base_model.norm
    assert type(norm) is type(final_norm) and norm.eps == final_norm.eps == 1e-3
