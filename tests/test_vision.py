"""Image and volume models: geometric patch embedding, packing strategies, every family on pixels, GFNet-H,
resolution changes, pipelines from a saved directory, a 3-D training step and clear errors on bad inputs."""

import copy
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FAMILIES, Wrapper, model_class, tiny_config
from PIL import Image
from transformers import AutoModel, AutoModelForImageClassification, ViTImageProcessorPil, pipeline

from fourierformers import FNetHybridConfig
from fourierformers.configuration.patch_geometry import PACKING_STRATEGIES, packing_stride
from fourierformers.modeling_spectral import SpectralImageModelOutput
from fourierformers.modeling_spectral_image import SpectralImageClassifierOutput
from fourierformers.patch_embedding import (
    PatchEmbedding,
    patch_kernel_mask,
    resize_model_to_image_size,
    resize_state_dict_to_config,
)
from fourierformers.spectral_layers import resize_grid


def image_config(family, **overrides):
    fields = dict(image_size=16, patch_size=4, num_channels=3, mixer_layout=None)
    fields.update(overrides)
    return tiny_config(family, **fields)


def explicit_patch_embedding(pixel_values, weight, bias, mask, stride, padding):
    """Reference: for every output cell, sum weight * mask * input over the kernel window, one cell at a time."""
    spatial_dims = pixel_values.ndim - 2
    padded = F.pad(pixel_values, [p for pad in reversed(padding) for p in (pad, pad)])
    kernel = weight.shape[2:]
    grid = [(padded.shape[2 + a] - kernel[a]) // stride[a] + 1 for a in range(spatial_dims)]
    out = torch.zeros(pixel_values.shape[0], *grid, weight.shape[0], dtype=torch.float64)
    masked = (weight * mask).double()
    for cell in torch.cartesian_prod(*(torch.arange(n) for n in grid)).reshape(-1, spatial_dims).tolist():
        window = padded[(slice(None), slice(None), *(slice(c * s, c * s + k) for c, s, k in zip(cell, stride, kernel)))]
        out[(slice(None), *cell)] = torch.einsum("bc...,dc...->bd", window.double(), masked) + bias.double()
    return out


def test_cuboid_patch_is_vit_patchify():
    """Cuboid with kernel = stride = p: token (i, j) = W @ flatten(x[:, ip:(i+1)p, jp:(j+1)p]) + b, row-major."""
    embedding = PatchEmbedding(3, 8, kernel_size=(4, 4), stride=(4, 4), padding=(0, 0))
    pixel_values = torch.randn(2, 3, 16, 12)
    tokens = embedding(pixel_values)  # (B, 4, 3, D)
    patches = pixel_values.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 4, 3, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 3, -1)  # (B, h, w, C*p*p)
    expected = patches @ embedding.projection.weight.reshape(8, -1).T + embedding.projection.bias
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "patch_shape, kernel, stride, padding, image",
    [
        ("cylinder", (5, 5), (2, 2), (2, 2), (9, 8)),
        ("sphere", (5, 5), (3, 1), (2, 2), (7, 6)),
        ("cylinder", (3, 5, 5), (2, 4, 4), (1, 2, 2), (4, 8, 8)),
        ("sphere", (5, 5, 5), (2, 2, 2), (2, 2, 2), (4, 6, 5)),
        ("cuboid", (3, 2, 2), (1, 2, 2), (0, 0, 0), (3, 4, 4)),
    ],
)
def test_masked_patch_embedding_matches_explicit_reference(patch_shape, kernel, stride, padding, image):
    embedding = PatchEmbedding(2, 6, kernel, stride, padding, patch_shape=patch_shape)
    pixel_values = torch.randn(2, 2, *image)
    expected = explicit_patch_embedding(
        pixel_values, embedding.projection.weight, embedding.projection.bias, embedding.kernel_mask, stride, padding
    )
    torch.testing.assert_close(embedding(pixel_values).double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rank", [None, 3])
def test_a_wrapped_cuboid_projection_takes_part(rank):
    """A LoRA adapter on the patch projection (PEFT wraps the convolution) failed: its weights, stride and padding
    were read from the module instead of calling it."""
    embedding = PatchEmbedding(2, 6, (4, 4), (4, 4), (0, 0), rank=rank)
    pixel_values = torch.randn(2, 2, 8, 12)
    plain = embedding(pixel_values)
    adapter = torch.nn.Conv2d(2, embedding.projection.out_channels, 4, stride=4, bias=False)
    embedding.projection = Wrapper(embedding.projection, adapter)
    update = adapter(pixel_values).movedim(1, -1)
    if rank is not None:
        update = update @ embedding.rank_projection.weight.T
    torch.testing.assert_close(embedding(pixel_values), plain + update)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_on_the_patch_projection_changes_the_model_at_any_image_size(family):
    """The projection wrapped as a LoRA layer is (forwarding only its weight and bias): other image sizes
    (`interpolate_pos_encoding`) read its kernel size, stride and padding for the tiling check."""
    model = model_class(family, "ForImageClassification")(image_config(family)).eval()
    patches = model.base_model.embeddings.patch_embeddings
    projection = patches.projection
    adapter = torch.nn.Conv2d(projection.in_channels, projection.out_channels, projection.kernel_size,
                              stride=projection.stride)
    for size in (model.config.image_shape, tuple(2 * n for n in model.config.image_shape)):
        pixel_values = torch.randn(1, model.config.num_channels, *size)
        with torch.no_grad():
            patches.projection = projection
            plain = model(pixel_values, interpolate_pos_encoding=True).logits
            patches.projection = Wrapper(projection, adapter, forwarded=("weight", "bias"))
            adapted = model(pixel_values, interpolate_pos_encoding=True).logits
        assert (adapted - plain).abs().max() > 1e-3


def test_a_masked_projection_takes_forwarding_wrappers_and_refuses_adapter_layers():
    """The masked kernel is read from the projection: a wrapper forwarding it (PEFT's modules_to_save, weight_norm)
    works, and an adapter layer, whose update would be left out silently, is refused."""
    embedding = PatchEmbedding(2, 6, (5, 5), (2, 2), (2, 2), patch_shape="sphere")
    pixel_values = torch.randn(1, 2, 9, 8)
    plain = embedding(pixel_values)
    projection = embedding.projection
    embedding.projection = Wrapper(projection)
    torch.testing.assert_close(embedding(pixel_values), plain, rtol=0, atol=0)
    embedding.projection = torch.nn.utils.parametrizations.weight_norm(copy.deepcopy(projection))
    torch.testing.assert_close(embedding(pixel_values), plain)
    embedding.projection = Wrapper(projection, adapter=torch.nn.Conv2d(2, 6, 5, stride=2, padding=2))
    with pytest.raises(ValueError, match=r"patch_shape='sphere' masks the kernel .*adapter layer around the "
                                         r"projection \(Wrapper\) would be bypassed"):
        embedding(pixel_values)


@pytest.mark.parametrize("patch_shape, kernel, stride, padding, image", [
    ("cuboid", (4, 4), (4, 4), (0, 0), (8, 12)),
    ("sphere", (3, 5, 5), (2, 2, 2), (1, 2, 2), (4, 6, 5)),
])
def test_low_rank_patch_embedding_is_the_product_kernel(patch_shape, kernel, stride, padding, image):
    """`rank` r (tinyBIG's LoRR): the kernel W = A B, B: (r, C |patch|) the convolution's, A: (D, r) the linear map's,
    r (D + C |patch|) weights and D biases; the outputs are those of the masked convolution with kernel A B."""
    embedding = PatchEmbedding(2, 6, kernel, stride, padding, patch_shape=patch_shape, rank=3)
    cells = 2 * math.prod(kernel)
    assert sum(parameter.numel() for parameter in embedding.parameters()) == 3 * (6 + cells) + 6
    product = (embedding.rank_projection.weight @ embedding.projection.weight.reshape(3, -1)).reshape(6, 2, *kernel)
    pixel_values = torch.randn(2, 2, *image)
    expected = explicit_patch_embedding(
        pixel_values, product, embedding.rank_projection.bias, embedding.kernel_mask, stride, padding
    )
    tokens = embedding(pixel_values)
    assert tokens.is_contiguous()
    torch.testing.assert_close(tokens.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_low_rank_patch_embedding_in_a_model(family, tmp_path):
    model = model_class(family, "ForImageClassification")(image_config(family, patch_embed_rank=2)).eval()
    full = model_class(family, "ForImageClassification")(image_config(family))
    patch = model.base_model.embeddings.patch_embeddings
    assert patch.projection.weight.shape[0] == 2 and patch.projection.bias is None
    assert model.num_parameters() < full.num_parameters()
    # the product kernel starts at the std of a full-rank one (initializer_range), not std**2 * sqrt(rank)
    product = patch.rank_projection.weight @ patch.projection.weight.reshape(2, -1)
    full_std = full.base_model.embeddings.patch_embeddings.projection.weight.std()
    assert 0.5 < product.std() / full_std < 2
    pixel_values = torch.randn(2, 3, *model.config.image_shape)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, model(pixel_values=pixel_values).logits)


def test_kernel_masks_are_disks_and_balls():
    """Radius-2 disk and ball: the integer offsets with i^2 + j^2 (+ k^2) <= 4."""
    offsets = torch.arange(-2, 3)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= 4).float()
    torch.testing.assert_close(patch_kernel_mask("cylinder", (5, 5)), disk)
    torch.testing.assert_close(patch_kernel_mask("cylinder", (3, 5, 5)), disk.expand(3, 5, 5))
    ball = (offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2 <= 4).float()
    torch.testing.assert_close(patch_kernel_mask("sphere", (5, 5, 5)), ball)
    assert patch_kernel_mask("cuboid", (2, 3)).sum() == 6


@pytest.mark.parametrize(
    "patch_shape, kernel, image, strategy, stride",
    [
        # strides and grids tinyBIG gives (../shared/research/seeds_002_004.md, section 1.2)
        ("cuboid", 9, 32, "sparse_square", (12, 12)),
        ("cuboid", 9, 32, "complete_square", (8, 8)),
        ("cuboid", 9, 32, "dense_square", (4, 4)),
        ("cuboid", 9, 32, "densest_packing", (1, 1)),
        ("cylinder", 5, 32, "sparse_square", (4, 4)),
        ("cylinder", 5, 32, "complete_square", (2, 2)),
        ("cylinder", 5, 32, "complete_hexagonal", (3, 3)),
        ("cylinder", 7, 32, "complete_hexagonal", (4, 5)),  # 1.5 r, sqrt(3) r
        ("cylinder", 9, 32, "dense_hexagonal", (4, 5)),  # sqrt(6) / 2 r, sqrt(2) r
        ("cylinder", 7, 32, "sparse_hexagonal", (5, 6)),  # sqrt(3) r, 2 r
        ("cylinder", 5, 32, "denser_hexagonal", (1, 2)),
        ("cylinder", (3, 5, 5), (8, 16, 16), "sparse_square", (2, 4, 4)),
        ("cylinder", (3, 5, 5), (8, 16, 16), "denser_hexagonal", (1, 1, 2)),  # depth p_d, not 2 p_d
        ("sphere", 5, (8, 16, 16), "dense_simple_cubic", (2, 2, 2)),
        ("sphere", 5, (8, 16, 16), "sparse_face_centered_cubic", (3, 4, 3)),  # (D, H, W) from tinyBIG's (h, w, d)
        ("sphere", 7, (8, 16, 16), "complete_face_centered_cubic", (3, 4, 4)),  # int(1.3333 * 3) = 3
        # even patches: the extra cell lies after the centre, so a 4-cell patch at stride 1 gives 31 cells, not 32
        ("cuboid", 4, 32, "dense_square", (1, 1)),
        ("cuboid", 6, 32, "dense_square", (2, 2)),
        ("cylinder", (2, 4, 4), (8, 16, 16), "complete_square", (1, 2, 2)),
    ],
)
def test_packing_strategy_grid_shapes(patch_shape, kernel, image, strategy, stride):
    """The grid of `configuration/patch_geometry.py`: padding (k - 1) // 2 on both sides, ceil(n / stride) cells
    for odd patches (tinyBIG's centres at range(0, n, stride)) and ceil((n - 1) / stride) for even ones."""
    spatial_dims = 3 if isinstance(image, tuple) else 2
    config = image_config("gfnet", image_size=image, patch_size=kernel, patch_shape=patch_shape,
                          packing_strategy=strategy, spatial_dims=spatial_dims, num_channels=1)
    kernel_size, config_stride, padding, grid = config.patch_geometry()
    assert config_stride == stride == packing_stride(patch_shape, kernel_size, strategy)
    assert padding == tuple((k - 1) // 2 for k in kernel_size)
    image_shape = config.image_shape
    assert grid == tuple(math.ceil((n - 1 + k % 2) / s) for n, k, s in zip(image_shape, kernel_size, stride))
    model = model_class("gfnet", "Model")(config).eval()
    with torch.no_grad():
        hidden = model(pixel_values=torch.randn(1, 1, *image_shape)).last_hidden_state
    assert hidden.shape == (1, math.prod(grid), config.hidden_size)


@pytest.mark.parametrize(
    "kernel, stride, image, grid",
    [(3, 2, 8, (4, 4)), (5, 3, 16, (6, 6)), (3, 1, 7, (7, 7)), ((3, 5), (2, 4), (8, 9), (4, 3))],
)
def test_centered_patches_at_an_explicit_stride_give_tinybigs_grid(kernel, stride, image, grid):
    """tinyBIG's explicit centre distances (`cd_h`, `cd_w`): odd patches centred at range(0, n, stride), the image
    zero-padded by (k - 1) // 2, so ceil(n / stride) cells whether or not the patches tile the image; the embedding
    equals the explicit per-cell sum over the padded window."""
    config = image_config("gfnet", image_size=image, patch_size=kernel, patch_stride=stride, centered_patches=True,
                          num_channels=2)
    kernel_size, config_stride, padding, config_grid = config.patch_geometry()
    assert config_grid == grid == tuple(math.ceil(n / s) for n, s in zip(config.image_shape, config_stride))
    assert padding == tuple((k - 1) // 2 for k in kernel_size)
    patch = model_class("gfnet", "Model")(config).embeddings.patch_embeddings
    pixel_values = torch.randn(2, 2, *config.image_shape)
    expected = explicit_patch_embedding(
        pixel_values, patch.projection.weight, patch.projection.bias, patch.kernel_mask, config_stride, padding
    )
    torch.testing.assert_close(patch(pixel_values).double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", [1, 2])
def test_centered_patches_of_one_or_two_cells_keep_the_centred_grid(kernel, caplog):
    """A patch of one or two cells has no padding ((k - 1) // 2 = 0) but is still centred: ceil((n - 1 + k % 2) /
    stride) cells at any image size, no tiling error and no warning about skipped pixels (both used to treat it as
    an unpadded patch), also at another size with `interpolate_pos_encoding`."""
    with caplog.at_level(logging.WARNING):
        config = image_config("gfnet", image_size=64, patch_size=kernel, patch_stride=3, centered_patches=True)
    assert "skip the pixels" not in caplog.text
    assert config.grid_shape == (math.ceil((63 + kernel % 2) / 3),) * 2
    model = model_class("gfnet", "Model")(config).eval()
    with torch.no_grad():
        hidden = model(pixel_values=torch.randn(1, 3, 50, 50), interpolate_pos_encoding=True).last_hidden_state
    assert hidden.shape[1] == math.ceil((49 + kernel % 2) / 3) ** 2
    with pytest.raises(ValueError, match=r"does not tile with patch_size \(2, 2\) and stride \(3, 3\)"):
        image_config("gfnet", image_size=64, patch_size=2, patch_stride=3)


def tinybig_centre_distances(patch_shape, strategy, half_extent, half_depth):
    """(cd_h, cd_w, cd_d) as tinyBIG's `packing_strategy_parameters` computes them (tinybig/koala/geometry), for a
    patch of half-extent p (cuboid: every axis) or radius r, and half-depth p_d (a cylinder's depth)."""
    p = r = half_extent
    root2, root3, root6 = math.sqrt(2), math.sqrt(3), math.sqrt(6)
    distances = {
        "cuboid": {
            "sparse_square": (3 * p, 3 * p, 3 * p),
            "complete_square": (2 * p, 2 * p, 2 * p),
            "dense_square": (p, p, p),
        },
        "cylinder": {
            "sparse_square": (2 * r, 2 * r, 2 * half_depth),
            "complete_square": (root2 * r, root2 * r, 2 * half_depth),
            "sparse_hexagonal": (root3 * r, 2 * r, 2 * half_depth),
            "complete_hexagonal": (1.5 * r, root3 * r, 2 * half_depth),
            "dense_hexagonal": (0.5 * root6 * r, root2 * r, half_depth),
            "denser_hexagonal": (0.5 * root3 * r, r, half_depth),
        },
        "sphere": {
            "sparse_simple_cubic": (2 * r, 2 * r, 2 * r),
            "complete_simple_cubic": (0.6667 * root3 * r,) * 3,
            "dense_simple_cubic": (r, r, r),
            "sparse_face_centered_cubic": (2 * r, root3 * r, 0.6667 * root6 * r),
            "complete_face_centered_cubic": (root2 * r, 0.6667 * root6 * r, 1.3333 * r),
            "dense_face_centered_cubic": (r, r, r),
            "sparse_hexagonal": (2 * r, 2 * r, root6 * r),
            "complete_hexagonal": (0.6667 * root3 * r, 0.6667 * root3 * r, r),
            "dense_hexagonal": (r, r, r),
        },
    }[patch_shape].get(strategy, (1, 1, 1))  # densest_packing
    return tuple(max(int(distance), 1) for distance in distances)


@pytest.mark.parametrize("patch_shape", ["cuboid", "cylinder", "sphere"])
def test_packing_strides_are_tinybigs(patch_shape):
    """Every strategy of every shape at half-extents 1 to 5 (and half-depths 0 to 2 for a cylinder's depth): the stride
    of an image (H, W) is tinyBIG's (cd_h, cd_w), that of a volume (D, H, W) its (cd_d, cd_h, cd_w)."""
    for strategy in PACKING_STRATEGIES[patch_shape]:
        for half_extent in range(1, 6):
            for half_depth in range(3) if patch_shape == "cylinder" else [half_extent]:
                cd_h, cd_w, cd_d = tinybig_centre_distances(patch_shape, strategy, half_extent, half_depth)
                size, depth = 2 * half_extent + 1, 2 * half_depth + 1
                assert packing_stride(patch_shape, (size, size), strategy) == (cd_h, cd_w), (strategy, half_extent)
                assert packing_stride(patch_shape, (depth, size, size), strategy) == (cd_d, cd_h, cd_w), (
                    strategy, half_extent, half_depth
                )
    tinybig_names = {
        "cuboid": ["sparse_square", "complete_square", "dense_square", "densest_packing"],
        "cylinder": ["sparse_square", "complete_square", "sparse_hexagonal", "complete_hexagonal", "dense_hexagonal",
                     "denser_hexagonal", "densest_packing"],
        "sphere": ["sparse_simple_cubic", "complete_simple_cubic", "dense_simple_cubic", "sparse_face_centered_cubic",
                   "complete_face_centered_cubic", "dense_face_centered_cubic", "sparse_hexagonal",
                   "complete_hexagonal", "dense_hexagonal", "densest_packing"],
    }[patch_shape]
    assert sorted(PACKING_STRATEGIES[patch_shape]) == sorted(tinybig_names)


def test_every_strategy_is_accepted_by_its_shape():
    for patch_shape, strategies in PACKING_STRATEGIES.items():
        for strategy in strategies:
            config = image_config("afno", image_size=(6, 12, 12), patch_size=5, patch_shape=patch_shape,
                                  packing_strategy=strategy, spatial_dims=3)
            assert all(g >= 1 for g in config.grid_shape)


@pytest.mark.parametrize("pooling", ["family default", "attention"])
@pytest.mark.parametrize("family", FAMILIES)
def test_image_classification_every_family(family, pooling, tmp_path):
    pooling_field = {} if pooling == "family default" else dict(pooling=pooling)
    config = image_config(family, image_size=(16, 12), **pooling_field)
    model = model_class(family, "ForImageClassification")(config).eval()
    pixel_values = torch.randn(3, 3, 16, 12)
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values, output_hidden_states=True)
        as_tuple = model(pixel_values=pixel_values, output_hidden_states=True, return_dict=False)
        single = model(pixel_values=pixel_values[1:2]).logits
    assert outputs.logits.shape == (3, config.num_labels)
    assert len(outputs.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (3, 12, config.hidden_size) for h in outputs.hidden_states)
    torch.testing.assert_close(as_tuple[0], outputs.logits)
    torch.testing.assert_close(single, outputs.logits[1:2], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, outputs.logits)
    backbone = AutoModel.from_config(config)
    assert type(backbone) is model_class(family, "Model")
    # transformers' input kind (pipelines report it): "text" by default, as ViT's for images
    assert model.input_modalities == backbone.input_modalities == ("image",)
    assert model_class(family, "ForPatchRegression").input_modalities == ("image",)
    assert model_class(family, "Model")(tiny_config(family)).input_modalities == "text"


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "attention"])
def test_image_classification_pools_the_grid_by_config_pooling(pooling):
    """The head's pooled vector is the grid's mean for "mean" and "cls" (a grid has no class token), its
    per-channel maximum for "max" and a per-head softmax-weighted mean for "attention"; the logits are the
    classifier applied to it."""
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet", pooling=pooling)).eval()
    if pooling == "attention":  # away from the initial near-zero scores, which make it start as the mean
        torch.nn.init.normal_(model.gfnet.pooler.attention.scores.weight)
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        outputs = model.gfnet(pixel_values=pixel_values)
        tokens = outputs.last_hidden_state  # (B, N, D)
        if pooling == "max":
            expected = tokens.amax(dim=1)
        elif pooling == "attention":
            weights = model.gfnet.pooler.attention.scores(tokens).softmax(dim=1)  # (B, N, heads)
            expected = (weights[..., None] * tokens.unflatten(-1, (weights.shape[-1], -1))).sum(dim=1).flatten(1)
        else:
            expected = tokens.mean(dim=1)
        torch.testing.assert_close(outputs.pooler_output, expected)
        if pooling in ("max", "attention"):
            assert not torch.allclose(outputs.pooler_output, tokens.mean(dim=1), atol=1e-3)
        logits = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(logits, model.classifier(outputs.pooler_output))


@pytest.mark.parametrize("problem_type, labels", [
    ("single_label_classification", torch.tensor([0, 2])),
    ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
    ("regression", torch.randn(2, 3)),
])
def test_image_classification_losses(problem_type, labels):
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet", problem_type=problem_type))
    loss = model(pixel_values=torch.randn(2, 3, 16, 16), labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def gfnet_h_config(**overrides):
    fields = dict(image_size=32, patch_size=4, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], num_hidden_layers=3,
                  hidden_size=32, intermediate_size=64, layer_scale_init_value=0.5, mixer_residual=False,
                  layer_norm_eps=1e-6)
    fields.update(overrides)
    return image_config("gfnet", **fields)


def test_gfnet_h_stage_mlp_widths():
    """Each stage's MLP is intermediate_size * width // hidden_size wide: a width that rounds to 0 is refused,
    and intermediate_size=0 builds mixer-only blocks in every stage."""
    with pytest.raises(ValueError, match=r"0 for some of hidden_sizes=\[8, 16, 32\] \(MLP widths \[0, 1, 3\]\)"):
        gfnet_h_config(intermediate_size=3)
    model = model_class("gfnet", "Model")(gfnet_h_config(intermediate_size=0, mixer_residual=True))
    assert all(layer.mlp is None and layer.mlp_norm is None for layer in model.layers)
    model(pixel_values=torch.randn(1, 3, 32, 32)).last_hidden_state.sum().backward()


def test_gfnet_h_stages():
    config = gfnet_h_config()
    model = model_class("gfnet", "ForImageClassification")(config).eval()
    assert config.stage_grid_shapes == [(8, 8), (4, 4), (2, 2)]
    assert [layer.mixer.complex_weight.shape for layer in model.gfnet.layers] == [
        (8, 5, 8, 2), (4, 3, 16, 2), (2, 2, 32, 2)
    ]
    assert [layer.mlp.fc1.out_features for layer in model.gfnet.layers] == [16, 32, 64]
    with torch.no_grad():
        outputs = model(pixel_values=torch.randn(2, 3, 32, 32), output_hidden_states=True)
    assert [tuple(h.shape) for h in outputs.hidden_states] == [(2, 64, 8), (2, 64, 8), (2, 16, 16), (2, 4, 32)]
    assert [tuple(h.shape) for h in outputs.reshaped_hidden_states] == [
        (2, 8, 8, 8), (2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)
    ]
    assert all(layer.mlp_layer_scale is not None and layer.mixer_layer_scale is None for layer in model.gfnet.layers)


def test_load_at_another_image_size():
    """Weights resized with resize_state_dict_to_config load strictly into a config at a larger image size."""
    small = model_class("gfnet", "ForImageClassification")(gfnet_h_config()).eval()
    large_config = gfnet_h_config(image_size=64)
    large = model_class("gfnet", "ForImageClassification")(large_config).eval()
    large.load_state_dict(resize_state_dict_to_config(small.state_dict(), large_config), strict=True)
    assert large.gfnet.layers[0].mixer.complex_weight.shape == (16, 9, 8, 2)
    with torch.no_grad():
        assert large(pixel_values=torch.randn(1, 3, 64, 64)).logits.shape == (1, 3)
        unchanged = resize_state_dict_to_config(small.state_dict(), gfnet_h_config())
    assert all(torch.equal(unchanged[k], v) for k, v in small.state_dict().items())


def test_saved_model_reloads_at_another_image_size(tmp_path):
    model_class("gfnet", "ForImageClassification")(gfnet_h_config()).save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    resized = resize_model_to_image_size(loaded, 64)
    assert resized.config.image_size == 64 and resized.config.grid_shape == (16, 16)
    assert resized.gfnet.embeddings.position_embeddings.shape == (1, 16, 16, 8)
    torch.testing.assert_close(resized.gfnet.layers[2].mlp.fc1.weight, loaded.gfnet.layers[2].mlp.fc1.weight)
    resized.save_pretrained(tmp_path / "at64")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "at64").eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, resized.eval()(pixel_values).logits)
    # from_pretrained at another image_size resizes by itself, through the Auto class or the model class
    for at64 in (AutoModelForImageClassification.from_pretrained(tmp_path, image_size=64),
                 type(loaded).from_pretrained(tmp_path, image_size=64)):
        assert at64.config.image_size == 64 and at64.config.grid_shape == (16, 16)
        with torch.no_grad():
            torch.testing.assert_close(at64.eval()(pixel_values).logits, resized(pixel_values).logits)


@pytest.mark.parametrize("loader", ["model class", "auto class"])
def test_loading_at_another_image_size_keeps_dtype_and_attention_implementation(loader, tmp_path):
    """from_pretrained(dir, image_size=new, dtype=..., attn_implementation=...) honours both, as at the saved size,
    and equals loading at the saved size and then resizing."""
    config = image_config("fnet_hybrid", mixer_layout=["fourier", "attention"])
    model_class("fnet_hybrid", "ForImageClassification")(config).save_pretrained(tmp_path)
    load = (AutoModelForImageClassification if loader == "auto class"
            else model_class("fnet_hybrid", "ForImageClassification")).from_pretrained
    options = dict(dtype=torch.bfloat16, attn_implementation="eager")
    expected = resize_model_to_image_size(load(tmp_path, **options), 24)
    resized = load(tmp_path, image_size=24, **options)
    for model in (expected, resized):
        assert model.config.grid_shape == (6, 6) and model.config._attn_implementation == "eager"
        assert model.config.dtype == torch.bfloat16
        assert all(parameter.dtype == torch.bfloat16 for parameter in model.parameters())
    expected_state = expected.state_dict()
    assert all(torch.equal(value, expected_state[key]) for key, value in resized.state_dict().items())


def test_resize_model_to_image_size_keeps_device_mode_and_frozen_parameters():
    """A model in memory is resized on its own device (meta here: a copy to another device would fail) with its
    train / eval mode, module by module, its gradient checkpointing and its frozen parameters."""
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet")).train()
    model.gfnet.embeddings.requires_grad_(False).eval()
    model.activation_checkpointing_enable(every_n_layers=2)
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    resized = resize_model_to_image_size(model, 24)
    assert [layer.gradient_checkpointing for layer in resized.gfnet.layers] == [True, False]
    assert resized.training and resized.gfnet.embeddings.position_embeddings.shape == (1, 6, 6, 32)
    assert not resized.gfnet.embeddings.training and not resized.gfnet.embeddings.dropout.training
    assert {name for name, parameter in resized.named_parameters() if not parameter.requires_grad} == frozen
    assert len(frozen) == 3  # position embeddings, patch projection weight and bias
    on_meta = resize_model_to_image_size(model.to("meta").eval(), 24)
    assert not on_meta.training
    assert {tensor.device.type for tensor in (*on_meta.parameters(), *on_meta.buffers())} == {"meta"}


def test_loading_or_resizing_at_another_image_size_leaves_the_random_stream_alone(tmp_path):
    """Every weight of the copy at the new size comes from the model: building it must not draw from the caller's
    seeded stream (later dropout masks and data order), as a plain `from_pretrained` does not."""
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet"))
    model.save_pretrained(tmp_path)
    steps = {
        "from_pretrained": lambda: type(model).from_pretrained(tmp_path),
        "from_pretrained at another size": lambda: type(model).from_pretrained(tmp_path, image_size=24),
        "resize_model_to_image_size": lambda: resize_model_to_image_size(model, 24),
    }
    for name, step in steps.items():
        torch.manual_seed(0)
        expected = torch.rand(4)
        torch.manual_seed(0)
        step()
        assert torch.equal(torch.rand(4), expected), name


def test_interpolate_pos_encoding_to_a_smaller_image():
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet", image_size=32)).eval()
    with torch.no_grad():
        logits = model(pixel_values=torch.randn(2, 3, 24, 24), interpolate_pos_encoding=True).logits
        position = model.gfnet.embeddings.position_embeddings
        same = model(pixel_values=torch.ones(1, 3, 32, 32), interpolate_pos_encoding=True).logits
        plain = model(pixel_values=torch.ones(1, 3, 32, 32)).logits
    assert logits.shape == (2, 3) and position.shape == (1, 8, 8, 32)
    torch.testing.assert_close(same, plain)


@pytest.mark.parametrize("image,fft_grid", [((24, 8), (6, 4)), ((8, 24), (4, 6)), ((12, 12), None), ((8, 16), None)])
def test_an_image_larger_along_some_axes_runs_the_ffts_at_the_larger_size_of_each(image, fft_grid):
    """A 16-px model (4 x 4 grid) given a 24 x 8 image (6 x 2 patches) transforms a 6 x 4 grid: the larger size of
    each axis, so that the axes that fit keep their length; an image that fits runs at the built grid (None)."""
    model = model_class("gfnet", "Model")(image_config("gfnet")).eval()
    seen = []
    model.layers[0].mixer.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs.get("fft_shape")), with_kwargs=True
    )
    with torch.no_grad():
        model(pixel_values=torch.randn(1, 3, *image), interpolate_pos_encoding=True)
    assert seen == [fft_grid]


LARGER_IMAGE_CASES = {
    "gfnet": dict(family="gfnet"),
    "afno": dict(family="afno"),
    "afno-num-modes": dict(family="afno", afno_num_modes=2),
    "afno-kept-modes": dict(family="afno", afno_kept_modes=[None, [0, 1]]),
    "fnet_hybrid": dict(family="fnet_hybrid"),
    "hybrid-multiscale": dict(family="gfnet", num_hidden_layers=1, mixer_layout=[
        {"strategy": "multiscale", "mixers": ["global_filter", "afno", "fourier", "attention"], "fusion": "add"}]),
    "gfnet-h": dict(family="gfnet", hidden_sizes=[16, 32], depths=[1, 1], layer_scale_init_value=0.5),
    "volume": dict(family="gfnet", image_size=(8, 16, 16), spatial_dims=3, num_channels=1),
    "signal": dict(family="afno", image_size=(32,), spatial_dims=1, num_channels=2),
}


@pytest.mark.parametrize("case", LARGER_IMAGE_CASES)
def test_interpolate_pos_encoding_to_a_larger_image_equals_loading_at_that_size(case, tmp_path):
    """A larger image with interpolate_pos_encoding=True runs every mixer at its own grid (global filters resized,
    AFNO modes recounted), exactly the model from_pretrained(dir, image_size=larger) builds; gradients flow."""
    fields = dict(LARGER_IMAGE_CASES[case])
    family = fields.pop("family")
    config = image_config(family, **{"image_size": 16, **fields})
    model = model_class(family, "ForImageClassification")(config).eval()
    model.save_pretrained(tmp_path)
    larger = tuple(n + 8 for n in config.image_shape)
    loaded = model_class(family, "ForImageClassification").from_pretrained(tmp_path, image_size=list(larger)).eval()
    pixel_values = torch.randn(2, config.num_channels, *larger)
    with torch.no_grad():
        expected = loaded(pixel_values=pixel_values, output_hidden_states=True)
    outputs = model(pixel_values=pixel_values, interpolate_pos_encoding=True, output_hidden_states=True,
                    labels=torch.tensor([0, 2]))
    torch.testing.assert_close(outputs.logits, expected.logits, atol=1e-5, rtol=1e-5)
    for hidden, reference in zip(outputs.reshaped_hidden_states, expected.reshaped_hidden_states, strict=True):
        torch.testing.assert_close(hidden, reference, atol=1e-5, rtol=1e-5)
    outputs.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="does not match the model's image_size"):
        model(pixel_values=pixel_values)


def test_loading_at_another_image_size_takes_the_loading_keywords(tmp_path):
    """`image_size=` reads the saved config with the same `subfolder` (and cache, revision, token) as the weights."""
    model = model_class("gfnet", "ForImageClassification")(image_config("gfnet"))
    model.save_pretrained(tmp_path / "sub")
    loaded = model_class("gfnet", "ForImageClassification").from_pretrained(tmp_path, subfolder="sub", image_size=24)
    assert loaded.config.image_shape == (24, 24)


def test_loading_at_another_image_size_with_a_config_path(tmp_path):
    """`config` may be a folder, as in transformers; its keyword overrides still apply. A config path at another
    image size resizes as a config object does; an explicit image_size wins."""
    classifier = model_class("gfnet", "ForImageClassification")
    classifier(image_config("gfnet")).save_pretrained(tmp_path / "at16")
    image_config("gfnet", image_size=32).save_pretrained(tmp_path / "config32")
    loaded = classifier.from_pretrained(tmp_path / "at16", config=tmp_path / "at16", image_size=24, num_labels=3)
    assert loaded.config.image_shape == (24, 24) and loaded.config.num_labels == 3
    assert classifier.from_pretrained(tmp_path / "at16", config=str(tmp_path / "config32")).config.image_size == 32
    explicit = classifier.from_pretrained(tmp_path / "at16", config=tmp_path / "config32", image_size=(20, 24))
    assert explicit.config.image_shape == (20, 24)


@pytest.mark.parametrize("family", FAMILIES)
def test_patch_regression_at_another_image_size_and_its_attentions(family, tmp_path):
    """The dense head unfolds the grid of the image it is given: with interpolate_pos_encoding=True a 24 x 24 field
    in a model built for 16 x 16 gives the predictions of the model loaded at 24 (6 x 6 tokens, not the built
    4 x 4); the attention layer's weights come back."""
    config = image_config(family, num_channels=2, num_output_channels=3, mixer_layout=["attention", "global_filter"])
    model = model_class(family, "ForPatchRegression")(config).eval()
    model.save_pretrained(tmp_path)
    loaded = model_class(family, "ForPatchRegression").from_pretrained(tmp_path, image_size=24).eval()
    pixel_values = torch.randn(2, 2, 24, 24)
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values, interpolate_pos_encoding=True, output_attentions=True)
        expected = loaded(pixel_values=pixel_values).predictions
    assert outputs.predictions.shape == (2, 3, 24, 24) and outputs.last_hidden_state.shape == (2, 36, 32)
    torch.testing.assert_close(outputs.predictions, expected, atol=1e-5, rtol=1e-5)
    assert [tuple(weights.shape) for weights in outputs.attentions] == [(2, config.num_attention_heads, 36, 36)]


@pytest.mark.parametrize("image_size", [36, 40])
def test_gfnet_h_refuses_images_with_odd_grids_at_any_stage(image_size, tmp_path):
    """A hierarchical model halves the grid between stages, so, as from_pretrained at that image_size, it refuses
    an image whose grid is odd before a downsampling: 36 px gives 9 x 9 tokens at the first stage, 40 px 10 x 10,
    then 5 x 5 at the second; 48 px (12, 6, 3) runs."""
    model = model_class("gfnet", "ForImageClassification")(gfnet_h_config()).eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="must be even along every axis"):
        model(pixel_values=torch.randn(1, 3, image_size, image_size), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match="must be even along every axis"):
        AutoModelForImageClassification.from_pretrained(tmp_path, image_size=image_size)
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 48, 48), interpolate_pos_encoding=True).logits.shape == (1, 3)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("image_size, spatial_dims", [((16, 12), 2), ((8, 12, 16), 3)])
def test_reshaped_hidden_states_are_the_grid_form(family, image_size, spatial_dims):
    """As Swin's: one (B, D, *grid) tensor per entry of `hidden_states`, channels first, only with
    output_hidden_states; the flat (B, N, D) form is its row-major flattening."""
    config = image_config(family, image_size=image_size, spatial_dims=spatial_dims, num_channels=1)
    model = model_class(family, "ForImageClassification")(config).eval()
    pixel_values = torch.randn(2, 1, *image_size)
    grid = tuple(n // 4 for n in image_size)
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values, output_hidden_states=True)
        backbone = model.base_model(pixel_values=pixel_values, output_hidden_states=True)
        as_tuple = model(pixel_values=pixel_values, output_hidden_states=True, return_dict=False)
        without = model(pixel_values=pixel_values)
    assert len(outputs.reshaped_hidden_states) == len(outputs.hidden_states) == config.num_hidden_layers + 1
    for flat, reshaped in zip(outputs.hidden_states, outputs.reshaped_hidden_states, strict=True):
        assert reshaped.shape == (2, config.hidden_size, *grid)
        torch.testing.assert_close(reshaped.flatten(2).transpose(1, 2), flat)
    assert isinstance(backbone, SpectralImageModelOutput) and isinstance(outputs, SpectralImageClassifierOutput)
    torch.testing.assert_close(backbone.reshaped_hidden_states[0], outputs.reshaped_hidden_states[0])
    assert as_tuple[-1][0].shape == (2, config.hidden_size, *grid)
    assert without.reshaped_hidden_states is None and without.hidden_states is None


@pytest.mark.parametrize("family", [*FAMILIES, "gfnet_h"])
@pytest.mark.parametrize("image_size, spatial_dims", [((16, 16), 2), ((16, 16, 16), 3)])
def test_residual_stream_is_channels_last_in_memory(family, image_size, spatial_dims):
    """The patch embedding returns a contiguous (B, *grid, D) tensor, not a permuted view of the convolution's
    (B, D, *grid) output: the residual stream keeps the layout it starts with, and the adds, LayerNorms and linears
    of a 64 x 64 grid of 256 channels ran about a third slower on the permuted one. (GFNet-H's downsampling
    convolutions get channels-last input, so their output is channels-last in memory too.)"""
    if family == "gfnet_h":
        config = gfnet_h_config(image_size=image_size, spatial_dims=spatial_dims, num_channels=1)
    else:
        config = image_config(family, image_size=image_size, spatial_dims=spatial_dims, num_channels=1)
    model = model_class(config.model_type, "Model")(config)
    outputs = model(pixel_values=torch.randn(2, 1, *image_size), output_hidden_states=True)
    assert all(hidden.is_contiguous() for hidden in outputs.hidden_states)
    outputs.last_hidden_state.square().mean().backward()
    assert all(parameter.grad is not None for parameter in model.parameters() if parameter.requires_grad)


def test_fnet_hybrid_image_defaults():
    """FNet's unnormalised DFT and tanh pooler stay the text defaults (FNet checkpoints); images get the
    orthonormal DFT and no pooler projection unless asked for, and a saved choice reloads as saved."""
    text, image = FNetHybridConfig(), image_config("fnet_hybrid")
    assert (text.fourier_norm, text.pooler_projection) == ("backward", True)
    assert (image.fourier_norm, image.pooler_projection) == ("ortho", False)
    model = model_class("fnet_hybrid", "ForImageClassification")(image)
    assert model.fnet_hybrid.pooler.dense is None and model.fnet_hybrid.layers[0].mixer.norm == "ortho"
    explicit = image_config("fnet_hybrid", fourier_norm="backward", pooler_projection=True)
    assert (explicit.fourier_norm, explicit.pooler_projection) == ("backward", True)
    reloaded = FNetHybridConfig.from_dict(explicit.to_dict())
    assert (reloaded.fourier_norm, reloaded.pooler_projection) == ("backward", True)


def test_fnet_hybrid_kind_defaults_follow_a_later_image_size():
    """An `image_size` assigned or given to from_dict after the config was made brings the image defaults, as the
    constructor does, to the fields still at the text defaults; explicit choices stay, and text defaults come back."""
    config = FNetHybridConfig(hidden_size=32, num_attention_heads=4, fourier_norm="forward")
    config.image_size = 16
    assert (config.fourier_norm, config.pooler_projection) == ("forward", False)
    config.update({"image_size": None})
    assert (config.fourier_norm, config.pooler_projection) == ("forward", True)
    text = FNetHybridConfig(hidden_size=32, num_attention_heads=4).to_dict()
    image = FNetHybridConfig.from_dict(text, image_size=16, patch_size=4)
    assert (image.fourier_norm, image.pooler_projection) == ("ortho", False)
    assert FNetHybridConfig.from_dict(text, image_size=16, patch_size=4, pooler_projection=True).pooler_projection
    model = model_class("fnet_hybrid", "ForImageClassification")(image)
    assert model.fnet_hybrid.pooler.dense is None and model.fnet_hybrid.layers[0].mixer.norm == "ortho"
    # choices given with the image_size to `update` stay in any order (those before it were replaced)
    for order in [("fourier_norm", "pooler_projection", "image_size"), ("image_size", "fourier_norm")]:
        config = FNetHybridConfig(hidden_size=32, num_attention_heads=4)
        values = dict(image_size=16, fourier_norm="backward", pooler_projection=True)
        config.update({**{name: values[name] for name in order}, "patch_size": 4})
        assert (config.fourier_norm, config.pooler_projection) == ("backward", "pooler_projection" in order)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gfnet", "afno"])
def test_image_pipelines_from_saved_directory(family, tmp_path):
    config = image_config(family, image_size=32, patch_size=8, id2label={0: "cat", 1: "dog", 2: "fish"})
    model_class(family, "ForImageClassification")(config).save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    image = Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy())
    predictions = pipeline("image-classification", model=str(tmp_path))(image, top_k=3)
    assert sorted(p["label"] for p in predictions) == ["cat", "dog", "fish"]
    assert abs(sum(p["score"] for p in predictions) - 1) < 1e-5
    features = pipeline("image-feature-extraction", model=str(tmp_path))(image, return_tensors=True)
    assert features.shape == (1, 16, config.hidden_size)


@pytest.mark.parametrize("family", FAMILIES)
def test_volume_classifier_trains_one_step(family):
    config = image_config(family, image_size=(4, 8, 8), patch_size=(3, 5, 5), spatial_dims=3, num_channels=1,
                          patch_shape="sphere", packing_strategy="dense_simple_cubic", num_labels=2)
    model = model_class(family, "ForImageClassification")(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pixel_values, labels = torch.randn(4, 1, 4, 8, 8), torch.tensor([0, 1, 1, 0])
    loss = model(pixel_values=pixel_values, labels=labels).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert model(pixel_values=pixel_values, labels=labels).loss < loss


@pytest.mark.parametrize("head", ["ForImageClassification", "ForPatchRegression"])
def test_image_losses_count_trainers_items(head):
    """With Trainer's `num_items_in_batch` (the label items of a whole step: accumulated batches, all processes) the
    loss is the batch's sum over that count, as in the text heads: four times the items, a quarter of the mean."""
    config = tiny_config("gfnet", image_size=8, patch_size=2, num_channels=3, num_output_channels=2)
    model = model_class("gfnet", head)(config).eval()
    pixels = torch.randn(2, 3, 8, 8)
    labels = torch.randn(2, 2, 8, 8) if head == "ForPatchRegression" else torch.tensor([0, 1])
    with torch.no_grad():
        mean = model(pixels, labels=labels).loss
        counted = model(pixels, labels=labels, num_items_in_batch=4 * labels.numel()).loss
    torch.testing.assert_close(counted, mean / 4)


def test_smallest_image_a_centred_patch_covers_is_accepted():
    """A centred 5 x 5 patch is padded by 2 on each side: a 2 x 2 image (2 + 2 * 2 >= 5) still gives one token."""
    config = tiny_config("gfnet", image_size=16, patch_size=5, patch_stride=4, centered_patches=True, num_channels=3)
    model = model_class("gfnet", "Model")(config).eval()
    with torch.no_grad():
        outputs = model(pixel_values=torch.randn(1, 3, 2, 2), interpolate_pos_encoding=True)
    assert outputs.last_hidden_state.shape == (1, 1, 32)


def test_low_precision_grids_are_resized_in_float32():
    values = torch.randn(4, 4, 8).to(torch.bfloat16)
    expected = resize_grid(values.float(), (7, 7)).to(torch.bfloat16)
    torch.testing.assert_close(resize_grid(values, (7, 7)), expected, atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_image_position_embeddings_are_drawn_with_the_initializer_range(family):
    config = tiny_config(family, image_size=32, patch_size=4, initializer_range=0.5)
    positions = model_class(family, "ForImageClassification")(config).base_model.embeddings.position_embeddings
    assert positions.std().item() == pytest.approx(0.5, rel=0.1)
