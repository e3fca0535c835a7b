"""Image and volume embeddings in plain PyTorch with plain keyword arguments.

`PatchEmbedding` turns `pixel_values` (B, C, *spatial) into a channels-last token grid (B, *grid, D) with a strided
convolution whose kernel is masked to a cuboid, cylinder or sphere. `GridDownsample` halves the grid between the
stages of a hierarchical model. `resize_grid` interpolates position embeddings and `resize_filter` global filters
(both in `spectral_layers.py`) to another grid, as the original GFNet does to fine-tune at a higher resolution; the
same routines serve loading at another `image_size` and `interpolate_pos_encoding=True` in forward, so both give the
same model on larger images.
(A smaller image is zero-padded into the built FFT grid instead, which a model rebuilt at that size does not do.)
"""

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout
from .input_checks import validate_masked_positions
from .spectral_layers import resize_filter, resize_grid

CONV_CLASSES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def patch_kernel_mask(patch_shape, kernel_size):
    """0/1 float mask of shape `kernel_size` selecting the cells of the patch.

    A cell is inside when its offset o from the kernel centre satisfies sum((o_a / r_a)^2) <= 1 over the round
    axes (every axis for a sphere, the last two for a cylinder), r_a = (k_a - 1) / 2 the half-extent; axes of
    extent 1 (r = 0) do not constrain. A cuboid keeps every cell.
    """
    if patch_shape == "cuboid":
        return torch.ones(kernel_size)
    num_axes = len(kernel_size)
    round_axes = range(num_axes - 2, num_axes) if patch_shape == "cylinder" else range(num_axes)
    grids = torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in kernel_size), indexing="ij")
    radius2 = torch.zeros(kernel_size, dtype=torch.float64)
    for axis in round_axes:
        half_extent = (kernel_size[axis] - 1) / 2
        if half_extent > 0:
            radius2 = radius2 + ((grids[axis] - half_extent) / half_extent) ** 2
    return (radius2 <= 1.0 + 1e-9).float()


class PatchEmbedding(nn.Module):
    """(B, C, *spatial) -> (B, *grid, D): a strided convolution with a kernel masked to the patch shape.

    With `patch_shape="cuboid"` and kernel = stride = p it is the ViT / GFNet patchify. With a `rank` r the kernel
    W: (D, C * |patch|) is factorised as A B (tinyBIG's low-rank reconstruction, LoRR) with B: (r, C * |patch|) a
    convolution to r channels and A: (D, r) a linear map with the bias after it, r (D + C |patch|) weights in all.
    """

    def __init__(self, num_channels, hidden_size, kernel_size, stride, padding, patch_shape="cuboid", rank=None):
        super().__init__()
        self.num_channels = num_channels
        self.patch_shape = patch_shape
        spatial_dims = len(kernel_size)
        self.projection = CONV_CLASSES[spatial_dims](
            num_channels, hidden_size if rank is None else rank, kernel_size=kernel_size, stride=stride,
            padding=padding, bias=rank is None,
        )
        self.rank_projection = None if rank is None else nn.Linear(rank, hidden_size)
        # the geometry, kept here as well: a wrapper of the projection (a LoRA adapter) need not forward it
        self.kernel_size, self.stride = self.projection.kernel_size, self.projection.stride
        self.padding = self.projection.padding
        self.register_buffer("kernel_mask", patch_kernel_mask(patch_shape, tuple(kernel_size)), persistent=False)

    def forward(self, pixel_values):
        if self.patch_shape == "cuboid":
            # the module is called (not its weights read) so that a wrapper of it, e.g. a LoRA adapter, takes part
            tokens = self.projection(pixel_values)  # (B, D, *grid), or (B, r, *grid) with a rank
        else:
            tokens = self.masked_convolution(pixel_values)
        if self.rank_projection is not None:
            return self.rank_projection(tokens.movedim(1, -1))  # (B, *grid, D), contiguous
        # Channels-last in memory, not a permuted view: the residual stream inherits this layout, and every add,
        # LayerNorm and linear after it would otherwise read channels D * grid elements apart.
        return tokens.movedim(1, -1).contiguous()  # (B, *grid, D)

    def masked_convolution(self, pixel_values):
        """The projection with its kernel masked to the patch shape: (B, C, *spatial) -> (B, D or r, *grid)."""
        projection = self.projection
        # The kernel is read from the projection: a wrapper that forwards it (PEFT's modules_to_save, a weight
        # parametrization) works, but an adapter layer's own update (LoRA: `base_layer` plus a low-rank term) would
        # be left out.
        if getattr(projection, "base_layer", None) is not None:
            raise ValueError(
                f"PatchEmbedding with patch_shape={self.patch_shape!r} masks the kernel of its projection, so an "
                f"adapter layer around the projection ({type(projection).__name__}) would be bypassed: adapt "
                "`rank_projection` (patch_embed_rank) or use cuboid patches."
            )
        weight = projection.weight * self.kernel_mask.to(projection.weight.dtype)
        conv = getattr(F, f"conv{pixel_values.ndim - 2}d")
        return conv(pixel_values, weight, projection.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return f"patch_shape={self.patch_shape!r}"


class GridDownsample(nn.Module):
    """(B, *grid, D_in) -> (B, *grid / 2, D_out): a kernel-2, stride-2 convolution (GFNet-H's DownLayer)."""

    def __init__(self, in_size, out_size, spatial_dims):
        super().__init__()
        self.projection = CONV_CLASSES[spatial_dims](in_size, out_size, kernel_size=2, stride=2)

    def forward(self, hidden_states):
        grid = tuple(hidden_states.shape[1:-1])
        # The config refuses odd grids at every stage; an image of another size (`interpolate_pos_encoding=True`)
        # is checked here, where the stride-2 convolution would otherwise silently drop the last row of an odd axis.
        if any(n % 2 for n in grid):
            raise ValueError(
                f"A hierarchical model halves the token grid {grid} before its next stage, so it must be even along "
                "every axis; with `interpolate_pos_encoding=True`, pass images whose first token grid is divisible "
                "by 2**(stages - 1) along every axis."
            )
        return self.projection(hidden_states.movedim(-1, 1)).movedim(1, -1)


class SpectralImageEmbeddings(nn.Module):
    """pixel_values (B, C, *spatial) -> patch embedding (the mask token in place of masked patches, with a
    `bool_masked_pos`) -> + learned position embedding -> dropout: (B, *grid, D).

    `position_embeddings: (1, *grid, D)` is stored grid-shaped so that it can be resized to another resolution.
    It is not weight-decayed (a zero position embedding is no sensible prior), as the original GFNet's `pos_embed`.
    """

    _no_weight_decay = ("position_embeddings",)

    def __init__(self, num_channels, hidden_size, image_size, kernel_size, stride, padding, grid_shape,
                 patch_shape="cuboid", dropout=0.0, rank=None, centered=False, use_mask_token=False):
        """`centered`: patches centred on their cells (`padding` is then (k - 1) // 2, zero for patches of one or
        two cells), so any image size has a grid; unpadded patches must tile the image. `use_mask_token`: a learned
        vector `mask_token: (D,)` that replaces the patches `bool_masked_pos` marks (SimMIM's masked image
        modelling)."""
        super().__init__()
        self.image_size = tuple(image_size)
        self.centered = centered
        self.grid_shape = tuple(grid_shape)
        self.patch_embeddings = PatchEmbedding(
            num_channels, hidden_size, kernel_size, stride, padding, patch_shape, rank=rank
        )
        self.position_embeddings = nn.Parameter(torch.empty(1, *grid_shape, hidden_size))
        self.mask_token = nn.Parameter(torch.empty(hidden_size)) if use_mask_token else None
        self.dropout = Dropout(dropout)

    def forward(self, pixel_values, interpolate_pos_encoding=False, bool_masked_pos=None):
        num_channels = self.patch_embeddings.num_channels
        spatial_dims = len(self.image_size)
        if pixel_values.ndim != spatial_dims + 2 or pixel_values.shape[1] != num_channels:
            # image pipelines convert every image to RGB, which a model of another channel count cannot take
            from_rgb = pixel_values.ndim > 1 and pixel_values.shape[1] == 3 != num_channels
            note = " (image pipelines convert images to RGB)" if from_rgb else ""
            raise ValueError(
                f"`pixel_values` must have shape (batch_size, num_channels={num_channels}, *{self.image_size}) "
                f"with spatial_dims={spatial_dims}, got {tuple(pixel_values.shape)}{note}."
            )
        if pixel_values.shape[0] == 0:
            raise ValueError(f"`pixel_values` must hold at least one image, got shape {tuple(pixel_values.shape)}.")
        if tuple(pixel_values.shape[2:]) != self.image_size and not interpolate_pos_encoding:
            raise ValueError(
                f"Input image size {tuple(pixel_values.shape[2:])} does not match the model's image_size "
                f"{self.image_size}; resize the images (the image processor does) or pass "
                "`interpolate_pos_encoding=True`."
            )
        if tuple(pixel_values.shape[2:]) != self.image_size:
            self.check_tiling(tuple(pixel_values.shape[2:]))
        weight = self.patch_embeddings.projection.weight
        embeddings = self.patch_embeddings(pixel_values.to(weight.dtype))  # (B, *grid, D)
        if bool_masked_pos is not None:
            masked = validate_masked_positions(bool_masked_pos, embeddings.shape[:-1])  # (B, *grid, 1)
            # a select, not a blend: what the masked patches hold (NaN included) reaches no output
            embeddings = torch.where(masked, self.mask_token.to(embeddings.dtype), embeddings)
        position = self.position_embeddings[0]
        if tuple(embeddings.shape[1:-1]) != self.grid_shape:
            position = resize_grid(position, embeddings.shape[1:-1])
        return self.dropout(embeddings + position)

    def check_tiling(self, image_size):
        """Raise unless uncentred patches cover an `image_size` image exactly (no silently dropped border pixels)."""
        patches = self.patch_embeddings
        for axis, (n, k, s, p) in enumerate(zip(image_size, patches.kernel_size, patches.stride, patches.padding)):
            if n + 2 * p < k or (not self.centered and (n - k) % s):
                raise ValueError(
                    f"Input image size {image_size} does not tile with patch_size {patches.kernel_size} and "
                    f"stride {patches.stride} along axis {axis}: the size must be at least the patch size "
                    "and (size - patch_size) a multiple of the stride, or border pixels would be dropped. Resize "
                    "the images."
                )


def resize_state_dict_to_config(state_dict, config):
    """Resize the position embeddings and global filters of an image model's state dict to the token grids of
    `config` (another `image_size`), as the original GFNet does before fine-tuning at 384 px: position embeddings
    by `resize_grid` (bicubic for images, `align_corners=False`), every filter `complex_weight` by `resize_filter` to
    the grid of its stage. Other tensors are returned unchanged. Works for every model prefix (`gfnet.`, ...)."""
    stage_of_layer = [stage for stage, depth in enumerate(config.stage_depths) for _ in range(depth)]
    resized = {}
    for key, value in state_dict.items():
        if key.endswith("embeddings.position_embeddings"):
            value = resize_grid(value[0], config.grid_shape)[None]
        elif key.endswith("complex_weight"):  # a block's filter, or one inside a hybrid mixer
            layer = int(key.split("layers.")[1].split(".")[0])
            value = resize_filter(value, config.stage_grid_shapes[stage_of_layer[layer]])
        resized[key] = value
    return resized


def resize_model_to_image_size(model, image_size):
    """A copy of an image model (any head, e.g. just loaded with `from_pretrained`) built for `image_size`, its
    position embeddings and global filters resized by `resize_state_dict_to_config`; the original fine-tunes
    GFNet at 384 px this way. The copy keeps the model's dtype, device, attention implementation, train / eval mode,
    gradient checkpointing and frozen (`requires_grad=False`) parameters, and can be trained and saved like any
    other model."""
    if not getattr(model.config, "is_vision", False):
        raise ValueError(
            f"resize_model_to_image_size takes an image model (a config with an image_size), got a "
            f"{type(model).__name__} whose config has none."
        )
    config = type(model.config)(**{**model.config.to_dict(), "image_size": image_size})
    # `to_dict` leaves out the attention implementation, and a plain constructor builds in the default dtype. The
    # weights drawn for the copy are all replaced below: drawing them from a fork of the random stream leaves the
    # caller's seeded stream (dropout masks, data order) as a plain `from_pretrained` leaves it.
    with torch.random.fork_rng(devices=[]):
        resized = type(model)._from_config(
            config, dtype=model.dtype, attn_implementation=model.config._attn_implementation
        ).to(model.device)
    resized.load_state_dict(resize_state_dict_to_config(model.state_dict(), config), strict=True)
    trainable = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    for name, parameter in resized.named_parameters():
        parameter.requires_grad_(trainable[name])
    training = {name: module.training for name, module in model.named_modules()}  # e.g. a backbone left in eval
    for name, module in resized.named_modules():
        module.training = training[name]
    if model.is_activation_checkpointing:  # a larger image is when activations need it most
        resized.activation_checkpointing_enable()
        # each layer's flag and checkpoint function: `every_n_layers`, offloading and the checkpoint keywords
        originals = dict(model.named_modules())
        for name, module in resized.named_modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = originals[name].gradient_checkpointing
                module._gradient_checkpointing_func = originals[name]._gradient_checkpointing_func
    return resized
