"""`XForMaskedImageModeling` (SimMIM): the mask token, the pixel decoder and the masked L1 loss against plain
references, every family, with and without stages; loading to and from image classifiers; pre-training with
`Trainer`."""

import itertools
import math

import pytest
import torch
from conftest import FAMILIES, model_class, tiny_config
from transformers import AutoModelForImageClassification, AutoModelForMaskedImageModeling, Trainer, TrainingArguments

# (config fields, pixels per patch, pixels per token of the last grid)
LAYOUTS = {
    "flat": (dict(image_size=16, patch_size=4), 4, 4),
    "hierarchical": (dict(image_size=32, patch_size=4, hidden_sizes=[8, 16, 32], depths=[1, 2, 1],
                          num_hidden_layers=4), 4, 16),
}


def masked_image_model(family, layout="flat", **overrides):
    fields = LAYOUTS[layout][0]
    return model_class(family, "ForMaskedImageModeling")(tiny_config(family, **fields, **overrides)).eval()


def inputs(layout="flat", batch_size=2, seed=0):
    """Images and a random patch mask (about half the patches) for `layout`."""
    fields, patch, _ = LAYOUTS[layout]
    generator = torch.Generator().manual_seed(seed)
    size = fields["image_size"]
    pixel_values = torch.randn(batch_size, 3, size, size, generator=generator)
    bool_masked_pos = torch.rand(batch_size, (size // patch) ** 2, generator=generator) < 0.5
    return pixel_values, bool_masked_pos


def patch_pixels(image, index, patch, patches_per_row):
    """The (C, patch, patch) pixels of patch `index` of the row-major patch grid of `image` (C, H, W)."""
    row, column = divmod(index, patches_per_row)
    return image[:, row * patch:(row + 1) * patch, column * patch:(column + 1) * patch]


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_patches_take_the_mask_token_before_the_position_embeddings(family):
    model = masked_image_model(family)
    pixel_values, bool_masked_pos = inputs()
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        first = model(pixel_values, bool_masked_pos, output_hidden_states=True).hidden_states[0]  # (B, N, D)
        patches = embeddings.patch_embeddings(pixel_values).flatten(1, 2)  # (B, N, D)
        position = embeddings.position_embeddings.flatten(1, 2)  # (1, N, D)
    expected = torch.stack([
        torch.stack([embeddings.mask_token if masked else patch for patch, masked in zip(row, row_mask)])
        for row, row_mask in zip(patches, bool_masked_pos.tolist())
    ]) + position
    torch.testing.assert_close(first, expected)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_the_pixels_of_masked_patches_reach_no_output(family, layout):
    model = masked_image_model(family, layout)
    pixel_values, bool_masked_pos = inputs(layout)
    _, patch, _ = LAYOUTS[layout]
    per_row = pixel_values.shape[-1] // patch
    changed = pixel_values.clone()
    for image, row_mask in zip(changed, bool_masked_pos.tolist()):
        for index in (i for i, masked in enumerate(row_mask) if masked):
            patch_pixels(image, index, patch, per_row).normal_(mean=5.0)
    with torch.no_grad():
        outputs = model(pixel_values, bool_masked_pos)
        other = model(changed, bool_masked_pos)
        unmasked = model(changed, torch.zeros_like(bool_masked_pos))
    assert torch.equal(outputs.reconstruction, other.reconstruction)
    assert not torch.allclose(outputs.reconstruction, unmasked.reconstruction)
    torch.testing.assert_close(unmasked.loss, torch.tensor(0.0))  # nothing masked: no pixel in the loss, no NaN


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_loss_is_the_mean_absolute_error_over_the_masked_patches(layout):
    model = masked_image_model("gfnet", layout)
    pixel_values, bool_masked_pos = inputs(layout)
    _, patch, _ = LAYOUTS[layout]
    per_row = pixel_values.shape[-1] // patch
    with torch.no_grad():
        outputs = model(pixel_values, bool_masked_pos)
    errors, count = 0.0, 0
    for image, reconstruction, row_mask in zip(pixel_values, outputs.reconstruction, bool_masked_pos.tolist()):
        for index in (i for i, masked in enumerate(row_mask) if masked):
            predicted, target = (patch_pixels(x, index, patch, per_row) for x in (reconstruction, image))
            errors, count = errors + (predicted - target).abs().sum(), count + target.numel()
    torch.testing.assert_close(outputs.loss, errors / count)
    with torch.no_grad():
        integers = model(pixel_values, bool_masked_pos.long())
        without = model(pixel_values)
    torch.testing.assert_close(integers.loss, outputs.loss)
    assert without.loss is None
    torch.testing.assert_close(without.reconstruction, model(pixel_values, torch.zeros_like(bool_masked_pos))
                               .reconstruction)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_token_is_decoded_to_the_pixels_it_covers(layout):
    """Token (i, j) of the last grid predicts the e x e pixels from (i e, j e), ordered (row, column, channel)."""
    model = masked_image_model("afno", layout)
    pixel_values, _ = inputs(layout)
    _, _, extent = LAYOUTS[layout]
    with torch.no_grad():
        outputs = model(pixel_values)
        grid = pixel_values.shape[-1] // extent
        tokens = model.base_model(pixel_values=pixel_values).last_hidden_state.unflatten(1, (grid, grid))
        for i, j in [(0, 0), (grid - 1, 0), (grid - 1, grid - 1)]:
            values = model.decoder(tokens[:, i, j]).view(-1, extent, extent, 3).permute(0, 3, 1, 2)
            block = outputs.reconstruction[:, :, i * extent:(i + 1) * extent, j * extent:(j + 1) * extent]
            torch.testing.assert_close(block, values)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_learns_and_checkpoints_move_to_and_from_classifiers(family, tmp_path):
    model = masked_image_model(family, "hierarchical").train()
    pixel_values, bool_masked_pos = inputs("hierarchical")
    model(pixel_values, bool_masked_pos).loss.backward()
    assert [name for name, parameter in model.named_parameters() if parameter.grad is None] == []
    model.eval().save_pretrained(tmp_path / "mim")
    loaded = AutoModelForMaskedImageModeling.from_pretrained(tmp_path / "mim").eval()
    with torch.no_grad():
        expected = model(pixel_values, bool_masked_pos)
        torch.testing.assert_close(loaded(pixel_values, bool_masked_pos).reconstruction, expected.reconstruction)
    # pre-trained weights fine-tuned as a classifier, and a classifier's backbone pre-trained further
    prefix = model.base_model_prefix
    classifier, info = AutoModelForImageClassification.from_pretrained(tmp_path / "mim", output_loading_info=True)
    mim_only = sorted(["decoder.bias", "decoder.weight", f"{prefix}.embeddings.mask_token"])
    assert sorted(info["unexpected_keys"]) == mim_only
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    classifier.save_pretrained(tmp_path / "classifier")
    _, info = AutoModelForMaskedImageModeling.from_pretrained(tmp_path / "classifier", output_loading_info=True)
    assert sorted(info["missing_keys"]) == mim_only


class RandomMasks:
    """A collator as transformers' run_mim.py: stacks the images and draws a random patch mask for each."""

    def __init__(self, num_patches):
        self.num_patches = num_patches

    def __call__(self, examples):
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        return {"pixel_values": pixel_values, "bool_masked_pos": torch.rand(len(examples), self.num_patches) < 0.6}


def test_trainer_pre_trains_and_evaluates(tmp_path):
    """`label_names=["bool_masked_pos"]` makes Trainer compute the evaluation loss (the model has no `labels`)."""
    model = masked_image_model("gfnet")
    images = [{"pixel_values": torch.randn(3, 16, 16)} for _ in range(8)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2, learning_rate=1e-2,
        label_names=["bool_masked_pos"], remove_unused_columns=False, report_to=[], save_strategy="no",
        use_cpu=True, logging_steps=1,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=images, eval_dataset=images,
                      data_collator=RandomMasks(num_patches=16))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
    assert trainer.evaluate()["eval_loss"] > 0


def test_bool_masked_pos_is_checked():
    model = masked_image_model("gfnet")
    pixel_values, bool_masked_pos = inputs()
    rows = [
        (bool_masked_pos[:, :-1], r"shape \(batch_size=2, num_patches=16\), one entry per patch of the \(4, 4\) grid "
                                  r"flattened row-major, got \(2, 15\)"),
        (bool_masked_pos.view(2, 4, 4), r"num_patches=16\), .*got \(2, 4, 4\)"),
        (bool_masked_pos.tolist(), r"must be a tensor of shape .*got list"),
        (bool_masked_pos.float(), r"must hold booleans, or the integers 1 \(masked patch\) and 0, got dtype "
                                  r"torch.float32"),
        (bool_masked_pos.long() * 2, r"must hold booleans, or the integers 1 \(masked patch\) and 0, got other "
                                     r"integers"),
    ]
    for mask, message in rows:
        with pytest.raises(ValueError, match=message):
            model(pixel_values, mask)
    larger = torch.randn(2, 3, 32, 32)  # 8 x 8 patches
    with pytest.raises(ValueError, match=r"num_patches=64\), one entry per patch of the \(8, 8\) grid"):
        model(larger, bool_masked_pos, interpolate_pos_encoding=True)
    assert model(larger, torch.ones(2, 64, dtype=torch.bool), interpolate_pos_encoding=True).loss > 0


@pytest.mark.parametrize("head", ["Model", "ForImageClassification", "ForSequenceClassification"])
def test_models_without_a_mask_token_refuse_bool_masked_pos(head):
    fields = {} if head == "ForSequenceClassification" else LAYOUTS["flat"][0]
    model = model_class("gfnet", head)(tiny_config("gfnet", **fields))
    model_inputs = dict(input_ids=torch.randint(4, 99, (2, 8))) if not fields else dict(pixel_values=inputs()[0])
    with pytest.raises(ValueError, match=r"`bool_masked_pos` marks the patches that a mask token replaces, and this "
                                         r"model has none: use XForMaskedImageModeling"):
        model(**model_inputs, bool_masked_pos=torch.ones(2, 16, dtype=torch.bool))


@pytest.mark.parametrize("overrides,message", [
    (dict(), r"needs an image config: set `image_size`"),
    (dict(image_size=16, patch_size=4, patch_stride=2), r"needs non-overlapping cuboid patches \(patch_stride = "
                                                         r"patch_size, .*got kernel \(4, 4\), stride \(2, 2\)"),
    (dict(image_size=16, patch_size=3, packing_strategy="dense_square"), r"packing_strategy='dense_square'"),
    (dict(image_size=16, patch_size=4, patch_shape="cylinder"), r"patch_shape='cylinder'"),
    (dict(image_size=16, patch_size=4, patch_stride=4, centered_patches=True),
     r"needs non-overlapping cuboid patches \(patch_stride = patch_size, no packing_strategy or centered_patches\); "
     r"got kernel \(4, 4\), stride \(4, 4\), .*centered_patches=True\.$"),
])
def test_configs_whose_patches_do_not_tile_the_image_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        model_class("gfnet", "ForMaskedImageModeling")(tiny_config("gfnet", **overrides))
    with pytest.raises(ValueError, match="`use_mask_token` builds the mask token of image patches"):
        model_class("gfnet", "Model")(tiny_config("gfnet"), use_mask_token=True)


@pytest.mark.parametrize("image_size, patch_size", [((8, 24), (2, 4)), ((4, 8, 12), (2, 4, 3))])
def test_unequal_sides_and_volumes_keep_their_axes(image_size, patch_size):
    """Patch (i, j, ..) of the row-major grid covers the pixels from (i p1, j p2, ..): the decoder's values of its token
    land there, ordered (axis 1, axis 2, .., channel), and its mask entry selects them for the loss. Square images
    and patches cannot tell the axes apart."""
    config = tiny_config("gfnet", image_size=list(image_size), patch_size=list(patch_size), num_channels=2,
                         spatial_dims=len(image_size))
    model = model_class("gfnet", "ForMaskedImageModeling")(config).eval()
    grid = [size // p for size, p in zip(image_size, patch_size)]
    pixel_values = torch.randn(2, 2, *image_size)
    bool_masked_pos = torch.rand(2, math.prod(grid)) < 0.5
    errors, count = 0.0, 0
    with torch.no_grad():
        outputs = model(pixel_values, bool_masked_pos)
        tokens = model.base_model(pixel_values=pixel_values, bool_masked_pos=bool_masked_pos).last_hidden_state
        for index, cell in enumerate(itertools.product(*map(range, grid))):
            block = (slice(None), slice(None), *(slice(c * p, (c + 1) * p) for c, p in zip(cell, patch_size)))
            expected = model.decoder(tokens[:, index]).view(2, *patch_size, 2).movedim(-1, 1)  # (B, C, *patch)
            torch.testing.assert_close(outputs.reconstruction[block], expected)
            masked = bool_masked_pos[:, index]
            errors += (expected - pixel_values[block])[masked].abs().sum()
            count += pixel_values[block][masked].numel()
    torch.testing.assert_close(outputs.loss, errors / count)


def test_non_finite_pixels_reach_no_output_they_are_masked_from():
    """Selects, not blends (a blend's NaN * 0 is NaN): NaN in a masked patch reaches no output (the mask token takes
    its place), and NaN in a patch left out of the loss (not masked) does not reach the loss. Token-wise blocks
    ("none" mixers) keep that NaN in its own patch's reconstruction."""
    model = masked_image_model("gfnet", mixer_layout=["none", "none"])
    pixel_values, _ = inputs()
    bool_masked_pos = torch.arange(16).expand(2, 16) >= 8
    in_masked, in_unmasked = pixel_values.clone(), pixel_values.clone()
    in_masked[:, :, 15, 15] = float("nan")  # patch 15, masked
    in_unmasked[:, :, 0, 0] = float("nan")  # patch 0, not masked
    with torch.no_grad():
        clean = model(pixel_values, bool_masked_pos)
        hidden = model(in_masked, bool_masked_pos).reconstruction
        unmasked = model(in_unmasked, bool_masked_pos)
    assert torch.equal(hidden, clean.reconstruction)
    assert unmasked.reconstruction[:, :, :4, :4].isnan().all()
    torch.testing.assert_close(unmasked.loss, clean.loss)


def test_config_output_flags_attentions_and_grid_hidden_states():
    """As the other image heads: the config's `output_hidden_states` and `return_dict` are the call's defaults, and
    the attention layer's weights and the hidden states on their grid (Swin's `reshaped_hidden_states`) come back."""
    model = masked_image_model("gfnet", mixer_layout=["attention", "global_filter"], output_hidden_states=True,
                               return_dict=False)
    pixel_values, bool_masked_pos = inputs()
    with torch.no_grad():
        as_tuple = model(pixel_values, bool_masked_pos)
        outputs = model(pixel_values, bool_masked_pos, output_attentions=True, return_dict=True)
    assert type(as_tuple) is tuple and len(as_tuple) == 4  # loss, reconstruction, hidden_states, reshaped ones
    assert [tuple(weights.shape) for weights in outputs.attentions] == [(2, 4, 16, 16)]
    assert [tuple(grid.shape) for grid in outputs.reshaped_hidden_states] == [(2, 32, 4, 4)] * 3
    for flat, grid in zip(outputs.hidden_states, outputs.reshaped_hidden_states, strict=True):
        torch.testing.assert_close(grid.flatten(2).transpose(1, 2), flat)


def test_the_mask_token_is_drawn_as_simmims(tmp_path):
    """A truncated normal of std `initializer_range` (SimMIM's), also where a classifier's checkpoint lacks it: a zero
    token would leave a masked patch its position embedding alone."""
    config = tiny_config("gfnet", **LAYOUTS["flat"][0])
    model_class("gfnet", "ForImageClassification")(config).save_pretrained(tmp_path)
    built = model_class("gfnet", "ForMaskedImageModeling")(config)
    loaded = model_class("gfnet", "ForMaskedImageModeling").from_pretrained(tmp_path)
    for model in (built, loaded):
        mask_token = model.base_model.embeddings.mask_token
        assert 0.5 < mask_token.std().item() / config.initializer_range < 1.5


def test_a_text_model_given_bool_masked_pos_is_pointed_to_masked_lm():
    model = model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet"))
    with pytest.raises(ValueError, match=r"this model has none: .*; a text model masks tokens by their ids "
                                         r"\(XForMaskedLM\)\.$"):
        model(input_ids=torch.randint(4, 99, (2, 8)), bool_masked_pos=torch.ones(2, 16, dtype=torch.bool))
