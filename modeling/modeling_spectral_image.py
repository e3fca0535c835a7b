"""The image heads shared by every family, kept apart from the text heads of `modeling_spectral.py`:
classification (backbone -> final norm -> token grid pooled by `config.pooling` -> dropout -> linear), dense
per-patch regression (FourCastNet), masked image modelling (SimMIM) and the feature maps of `AutoBackbone` for
dense-prediction models (UperNet)."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutput, MaskedImageModelingOutput
from transformers.utils import ModelOutput

from .input_checks import check_real_targets
from .modeling_spectral import (
    SpectralModel,
    SpectralPreTrainedModel,
    classifier_dropout,
    loss_precision,
    regression_loss,
    sequence_classification_loss,
)
from .spectral_layers import build_norm


@dataclass
class SpectralImageClassifierOutput(ImageClassifierOutput):
    r"""
    Output of `XForImageClassification`: `ImageClassifierOutput` plus the hidden states on their grid, as Swin's
    `SwinImageClassifierOutput`.

    Args:
        loss: the `problem_type` loss against `labels`, when given.
        logits: (B, num_labels).
        hidden_states: the embeddings and every block's output flattened to (B, N, D), when
            `output_hidden_states=True`.
        attentions: (B, heads, N, N) per attention layer, when `output_attentions=True`.
        reshaped_hidden_states: the tensors of `hidden_states` on their token grid, channels first: (B, D, H, W)
            for images, (B, D, depth, H, W) for volumes. Returned when `output_hidden_states=True`.
    """

    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


class SpectralForImageClassification(SpectralPreTrainedModel):
    """Image (or volume) classification, regression or multi-label classification through `config.problem_type`,
    as for text. The config must have an `image_size`.

    The backbone's pooler reduces the final token grid (B, *grid, D) to (B, D) as `config.pooling` says: its mean
    (`"mean"`, and `"cls"`, since a grid has no class token), its per-channel maximum (`"max"`) or a learned
    softmax-weighted mean per head (`"attention"`), then dense + tanh with `pooler_projection=True`; dropout and a
    linear classifier give the logits.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)  # as ViT's (transformers' default is "text"; pipelines report it)
    input_kind = "image"
    backbone_class = SpectralModel

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.backbone_class(config))
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        interpolate_pos_encoding=False,
        return_dict=None,
        num_items_in_batch=None,
        condition=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): images (B, C, H, W) or
            volumes (B, C, D, H, W).
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`): class indices
            (single-label), floats (regression; -100 = ignored) or multi-hot floats (multi-label).
        interpolate_pos_encoding (`bool`): accept another image size, resizing the position embeddings (and, for
            a larger image, running the spectral mixers at its grid; see `SpectralModel.forward`).
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.

        Returns `SpectralImageClassifierOutput` with `logits` (B, num_labels), and with `output_hidden_states`
        `hidden_states` flattened to (B, N, D) and `reshaped_hidden_states` on their grid (B, D, *grid).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            condition=condition,
            condition_mask=condition_mask,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config, num_items_in_batch)
        output = SpectralImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )
        return output if return_dict else output.to_tuple()


def pixels_per_token(config, head_name, stages_allowed):
    """Per spatial axis, the pixels that each token of the last grid covers, for the heads that predict every pixel
    from the token covering it: the patch size (times 2 per downsampling of a hierarchical model, where
    `stages_allowed`). Raises `ValueError` unless the patches tile the image: non-overlapping cuboids, uncentred
    (centred patches of 2 cells pad nothing and drop an odd image's last pixels)."""
    kernel, stride, _, _ = config.patch_geometry()
    tiling = kernel == stride and not config.centered_patch_grid
    if not tiling or config.patch_shape != "cuboid" or (config.hidden_sizes is not None and not stages_allowed):
        grid = "" if stages_allowed else " on the token grid of a model without stages"
        stages = "" if stages_allowed else ", no hidden_sizes, even of one stage"
        given = "" if stages_allowed else f", hidden_sizes={config.hidden_sizes}"
        raise ValueError(
            f"{head_name} needs non-overlapping cuboid patches{grid} (patch_stride = patch_size, no packing_strategy "
            f"or centered_patches{stages}); got kernel {kernel}, stride {stride}, patch_shape={config.patch_shape!r}, "
            f"packing_strategy={config.packing_strategy!r}, centered_patches={config.centered_patches}{given}."
        )
    downsampling = 2 ** (len(config.stage_depths) - 1)
    return tuple(k * downsampling for k in kernel)


def tokens_on_grid(last_hidden_state, pixel_values, pixels_per_token):
    """The backbone's flattened tokens (B, N, D) on the grid of the image they cover: (B, *grid, D)."""
    spatial = pixel_values.shape[-len(pixels_per_token):]
    return last_hidden_state.unflatten(1, tuple(size // p for size, p in zip(spatial, pixels_per_token)))


def tokens_to_pixels(values, pixels_per_token, num_channels):
    """Per-token values (B, *grid, prod(p) * C), ordered (p1, .., pn, C) with the channel fastest (FourCastNet's
    head), unfolded to the image they cover: (B, C, g1 * p1, .., gn * pn)."""
    grid = values.shape[1:-1]
    values = values.unflatten(-1, (*pixels_per_token, num_channels))  # (B, *grid, *p, C)
    spatial_dims = len(grid)
    # (B, g1, .., gn, p1, .., pn, C) -> (B, C, g1, p1, .., gn, pn) -> (B, C, g1 * p1, .., gn * pn)
    interleaved = [axis for a in range(spatial_dims) for axis in (1 + a, 1 + spatial_dims + a)]
    order = [0, 2 * spatial_dims + 1] + interleaved
    return values.permute(order).reshape(
        values.shape[0], num_channels, *(g * p for g, p in zip(grid, pixels_per_token))
    )


@dataclass
class PatchRegressionOutput(ModelOutput):
    """Output of `SpectralForPatchRegression`.

    Args:
        loss: mean squared error against `labels`, when given.
        predictions: (B, num_output_channels, *image_size), one value per pixel and output channel.
        last_hidden_state: (B, N, D), the backbone's tokens before the head, flattened as every image output's.
        hidden_states: the embeddings and every block's output, flattened to (B, N, D).
        attentions: (B, heads, N, N) per attention layer, when `output_attentions=True`.
        reshaped_hidden_states: the hidden states on their token grid, (B, D, *grid) as Swin's.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


class SpectralForPatchRegression(SpectralPreTrainedModel):
    """Dense regression at pixel resolution (FourCastNet): a bias-free linear map of every token to its patch's
    `p1 x p2 x num_output_channels` values, unfolded back to an image (B, num_output_channels, H, W).

    Needs non-overlapping cuboid patches (`patch_stride` = `patch_size`); the feature axis of a token is ordered
    (p1, p2, channel), channel fastest, the layout of FourCastNet's head.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)  # as ViT's (transformers' default is "text"; pipelines report it)
    input_kind = "image"
    backbone_class = SpectralModel

    def __init__(self, config):
        if not config.is_vision or config.num_output_channels is None:
            raise ValueError(f"{type(self).__name__} needs `image_size` and `num_output_channels` in the config.")
        kernel = pixels_per_token(config, type(self).__name__, stages_allowed=False)
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        self.patch_kernel = kernel
        self.num_output_channels = config.num_output_channels
        self.head = nn.Linear(config.hidden_size, math.prod(kernel) * config.num_output_channels, bias=False)
        self.post_init()

    def forward(
        self, pixel_values=None, labels=None, output_hidden_states=None, return_dict=None, num_items_in_batch=None,
        condition=None, condition_mask=None, **kwargs,
    ):
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): input fields.
        labels (`torch.Tensor` of shape `(batch_size, num_output_channels, *image_size)`): regression targets;
            -100 marks a missing value (left out of the loss).
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        Other keyword arguments (`interpolate_pos_encoding`, `output_attentions`, ...) go to the backbone, see
        `SpectralModel.forward`.

        Returns `PatchRegressionOutput` with `predictions` (B, num_output_channels, *image_size), `image_size` that
        of `pixel_values`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(pixel_values=pixel_values, output_hidden_states=output_hidden_states,
                                  condition=condition, condition_mask=condition_mask, return_dict=True, **kwargs)
        # The backbone has checked that the patches tile the image; its size is the built one, or any other with
        # `interpolate_pos_encoding=True`.
        tokens = tokens_on_grid(outputs.last_hidden_state, pixel_values, self.patch_kernel)  # (B, *grid, D)
        predictions = tokens_to_pixels(self.head(tokens), self.patch_kernel, self.num_output_channels)
        loss = None
        if labels is not None:
            if not torch.is_tensor(labels) or tuple(labels.shape) != tuple(predictions.shape):
                raise ValueError(
                    f"`labels` must be a tensor of the predictions' shape (batch_size, num_output_channels="
                    f"{self.num_output_channels}, *image_size) = {tuple(predictions.shape)}, got "
                    f"{tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__}."
                )
            check_real_targets(labels, "Patch regression `labels`")
            estimates = loss_precision(predictions)
            loss = regression_loss(estimates, labels.to(estimates.device, estimates.dtype), num_items_in_batch)
        output = PatchRegressionOutput(
            loss=loss,
            predictions=predictions,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )
        return output if return_dict else output.to_tuple()


@dataclass
class SpectralMaskedImageModelingOutput(MaskedImageModelingOutput):
    r"""
    Output of `XForMaskedImageModeling`: `MaskedImageModelingOutput` plus the hidden states on their grid.

    Args:
        loss: the mean absolute error over the pixels of the masked patches, when `bool_masked_pos` is given.
        reconstruction: (B, num_channels, *image_size), the predicted pixels of every patch.
        hidden_states: the embeddings and every block's output flattened to (B, N, D), when
            `output_hidden_states=True`.
        attentions: (B, heads, N, N) per attention layer, when `output_attentions=True`.
        reshaped_hidden_states: the hidden states on their token grid, (B, D, *grid) as Swin's.
    """

    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


class SpectralForMaskedImageModeling(SpectralPreTrainedModel):
    """Masked image modelling (SimMIM, Xie et al. 2022): the patches that `bool_masked_pos` marks are replaced by a
    learned mask token before the position embeddings are added, and a linear decoder predicts the pixels each token
    of the last grid covers (a patch, or 2**(stages - 1) patches per axis in GFNet-H) from it; the loss is the mean
    absolute error over the masked patches' pixels. Pre-training for image models, as XForMaskedLM is for text.

    Needs patches that tile the image (non-overlapping uncentred cuboids). No pipeline uses it;
    `AutoModelForMaskedImageModeling` builds it.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    input_kind = "image"
    backbone_class = SpectralModel

    def __init__(self, config):
        if not config.is_vision:  # named before the patch check, which needs an image config
            raise ValueError(
                f"{type(self).__name__} needs an image config: set `image_size` (and patch_size, num_channels)."
            )
        extent = pixels_per_token(config, type(self).__name__, stages_allowed=True)
        super().__init__(config)
        setattr(self, self.base_model_prefix,
                self.backbone_class(config, add_pooling_layer=False, use_mask_token=True))
        self.pixels_per_token = extent
        self.patch_kernel = config.patch_geometry()[0]
        self.decoder = nn.Linear(config.hidden_size, math.prod(extent) * config.num_channels)
        self.post_init()

    def forward(
        self,
        pixel_values=None,
        bool_masked_pos=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        condition=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): images or volumes, also
            the reconstruction targets.
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`): True (or 1) for each patch to
            mask, the patch grid flattened row-major (ViT's layout); without it nothing is masked and there is no
            loss.
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        Other keyword arguments (`interpolate_pos_encoding`, ...) go to the backbone, see `SpectralModel.forward`.

        Returns `SpectralMaskedImageModelingOutput` with `reconstruction` (B, num_channels, *image_size).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            pixel_values=pixel_values,
            bool_masked_pos=bool_masked_pos,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            condition=condition,
            condition_mask=condition_mask,
            return_dict=True,
            **kwargs,
        )
        tokens = tokens_on_grid(outputs.last_hidden_state, pixel_values, self.pixels_per_token)  # (B, *grid, D)
        reconstruction = tokens_to_pixels(self.decoder(tokens), self.pixels_per_token, self.config.num_channels)
        loss = None
        if bool_masked_pos is not None:  # checked by the embeddings: (B, num_patches) of 0 / 1 or booleans
            patch_grid = [size // k for size, k in zip(pixel_values.shape[2:], self.patch_kernel)]
            masked_pixels = bool_masked_pos.bool().view(-1, 1, *patch_grid)  # (B, 1, *patch_grid)
            for axis, k in enumerate(self.patch_kernel):
                masked_pixels = masked_pixels.repeat_interleave(k, dim=2 + axis)  # (B, 1, *image_size) at the end
            estimates = loss_precision(reconstruction)
            errors = (estimates - pixel_values.to(estimates.dtype)).abs()
            # a select: NaN in a pixel outside the masked patches must not reach the loss
            masked_errors = torch.where(masked_pixels, errors, 0.0)
            loss = masked_errors.sum() / (masked_pixels.sum() * self.config.num_channels).clamp(min=1)
        output = SpectralMaskedImageModelingOutput(
            loss=loss,
            reconstruction=reconstruction,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )
        return output if return_dict else output.to_tuple()


class SpectralBackbone(BackboneMixin, SpectralPreTrainedModel):
    """Feature maps of an image model for `AutoBackbone`, the interface of transformers' dense-prediction models
    (UperNet, ...): the outputs of the stages named by `config.out_features` (default: the last), each on its
    token grid, channels first (B, width, *grid).

    `config.stage_names` are "stem" (the patch embeddings) and one "stageK" per stage of a hierarchical model
    (GFNet-H: its output before the next downsampling) or per block of a model without stages (as ViT's). The last
    stage's map is the model's output, after the final norm; where the model has one, every other selected stage gets
    a norm of its own (`feature_norms`), since the residual stream of a pre-norm model is not normalised between
    blocks (as Swin's backbone). An image classifier's checkpoint loads with its backbone weights.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    input_kind = "image"
    backbone_class = SpectralModel

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        depths = config.depths or [1] * config.num_hidden_layers
        widths = config.hidden_sizes or [config.hidden_size] * config.num_hidden_layers
        self.num_features = [widths[0], *widths]
        # index of each stage's output among the hidden states (the embeddings, then every block's output)
        self.stage_ends = [sum(depths[:stage]) for stage in range(len(depths) + 1)]
        last_stage = config.stage_names[-1]
        normed = [name for name in self.out_features if name != last_stage] if self.base_model.norm is not None else []
        width = self.out_feature_channels  # BackboneMixin's stage name -> num_features entry
        self.feature_norms = nn.ModuleDict(
            {name: build_norm(config.norm_type, width[name], config.layer_norm_eps) for name in normed}
        )
        self.post_init()

    # Unset in the config, `out_features` is the last stage, resolved here rather than written into a config that
    # other models may share (and whose depth may change, which would invalidate a stored stage).
    @property
    def out_features(self):
        return [self.stage_names[-1]] if self.config.out_features is None else self.config.out_features

    @out_features.setter
    def out_features(self, out_features):
        self.config.out_features = out_features

    @property
    def out_indices(self):
        return [len(self.stage_names) - 1] if self.config.out_indices is None else self.config.out_indices

    @out_indices.setter
    def out_indices(self, out_indices):
        self.config.out_indices = out_indices

    def forward(
        self,
        pixel_values=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        condition=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): images or volumes.
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        Other keyword arguments (`interpolate_pos_encoding`, ...) go to the backbone, see `SpectralModel.forward`.

        Returns `BackboneOutput` with `feature_maps`, one (B, width, *grid) tensor per name of `out_features` in
        their order, and with `output_hidden_states` the `hidden_states` of the backbone, flattened to (B, N, D).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        last_stage = self.stage_names[-1]
        unbuilt = [name for name in self.out_features if name != last_stage and name not in self.feature_norms]
        if self.base_model.norm is not None and unbuilt:
            raise ValueError(
                f"`out_features` {self.out_features} name stages {unbuilt} that this backbone has no feature norms "
                f"for: it was built for {[*self.feature_norms, last_stage]} (the last stage needs none). Load it "
                "again with the new `out_features` (`from_pretrained(path, out_features=[...])`)."
            )
        outputs = self.base_model(
            pixel_values=pixel_values,
            output_hidden_states=True,
            output_attentions=output_attentions,
            condition=condition,
            condition_mask=condition_mask,
            return_dict=True,
            **kwargs,
        )
        grids = outputs.reshaped_hidden_states  # (B, width, *grid): the embeddings, then every block's output
        feature_maps = []
        for name in self.out_features:
            if name == last_stage:  # the output after the final norm, (B, N, D) on its grid
                feature_map = outputs.last_hidden_state.unflatten(1, grids[-1].shape[2:]).movedim(-1, 1)
            else:
                feature_map = grids[self.stage_ends[self.stage_names.index(name)]]
                if name in self.feature_norms:
                    feature_map = self.feature_norms[name](feature_map.movedim(1, -1)).movedim(-1, 1)
            feature_maps.append(feature_map)
        output = BackboneOutput(
            feature_maps=tuple(feature_maps),
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()
