"""Shared configuration of the fourierformers families (GFNet, AFNO, FNet-hybrid).

Every family has the same embeddings, blocks and heads; what differs is the token mixer of each layer
(`mixer_layout`) and a few defaults. This base class holds every field, validates combinations, and is
subclassed by `GFNetConfig`, `AFNOConfig` and `FNetHybridConfig`, which only set `model_type` and defaults.
"""

import dataclasses
import math
from typing import ClassVar

from transformers import PretrainedConfig
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneConfigMixin
from transformers.utils import logging

from .mixer_layout import MIXER_TYPES, expand_mixer_layout, mixer_names, validate_mixer_layout
from .patch_geometry import PATCH_SHAPES, patch_geometry, patches_centred, per_axis

logger = logging.get_logger(__name__)

CONDITION_TYPES = (None, "cross_attention", "adaln_zero")
POSITION_EMBEDDING_TYPES = ("absolute", "sinusoidal", "none")
POOLING_TYPES = ("cls", "mean", "max", "attention")
NORM_TYPES = ("layer_norm", "rms_norm")
FILTER_ACTIVATIONS = ("identity", "sigmoid", "tanh")
FFT_NORMS = ("backward", "ortho", "forward")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
DEFAULT_NUM_HIDDEN_LAYERS = 4  # without `depths`
AFNO_MODE_FIELDS = ("afno_num_modes", "afno_kept_modes")
# Keyword arguments of the seed libraries (spectrans' models and blocks, tinyBIG's grid layer), which a config would
# otherwise store and ignore, as transformers configs do with unknown keywords; each with what to do instead.
SEED_KEYWORDS = {
    "hidden_dim": "use `hidden_size`",
    "num_layers": "use `num_hidden_layers`",
    "max_sequence_length": "use `max_position_embeddings`",
    "sequence_length": "use `max_position_embeddings`",
    "ffn_hidden_dim": "use `intermediate_size`",
    "norm_eps": "use `layer_norm_eps`",
    "dropout": "use `hidden_dropout_prob`",
    "num_classes": "use `num_labels`",
    "num_heads": "use `num_attention_heads`",
    "use_positional_encoding": "use `position_embedding_type` ('absolute', 'sinusoidal' or 'none')",
    "positional_encoding_type": "use `position_embedding_type` ('absolute', 'sinusoidal' or 'none')",
    "output_type": "use a head class (XModel, XForSequenceClassification, XForTokenClassification, ...)",
    "mlp_ratio": "use `afno_hidden_size_factor`",
    "modes_seq": "use `afno_num_modes`",
    "activation": "use `afno_activation` (AFNO's block MLP) or `hidden_act` (the blocks' MLP)",
    "gate_type": "use the `gate` of an adaptive `mixer_layout` entry",
    "fusion_type": "use the `fusion` of a multiscale `mixer_layout` entry",
    **{name: "use a `mixer_layout` entry (e.g. {'strategy': 'cascade', 'mixers': ['fourier', 'attention']})"
       for name in ("layer1", "layer2", "layers", "use_layer1")},
    "share_norm": "use the `share_norm` of a cascade `mixer_layout` entry",
    "device": "move the model with `model.to(device)` (or `from_pretrained(..., device_map=...)`)",
    **{axis: "use `image_size` (and `spatial_dims=3` for volumes)" for axis in "hwd"},
    "in_channel": "use `num_channels`",
    "out_channel": "use `hidden_size`",
    "p_r": "use `patch_size` (and `patch_shape`)",
    **{f"p_{axis}{prime}": f"use `patch_size` (and `patch_shape`): tinyBIG's patch spans p_{axis} cells before its "
       f"centre and p_{axis}_prime after it, `patch_size` cells here, (patch_size - 1) // 2 before the centre; other "
       "extents are not carried over" for axis in "hwd" for prime in ("", "_prime")},
    **{f"cd_{axis}": "use `patch_stride` with `centered_patches=True`, or `packing_strategy`" for axis in "hwd"},
    "sequence_mixer_cfg": "use `mixer_layout` (a mixer per layer, 'none' for no mixer branch)",
    "mlp_cfg": "use `intermediate_size` (0 for no MLP branch) and `hidden_act`",
    "condition_mixer_cfg": "use `condition_type` (and `condition_size`)",
    **{f"{branch}_norm_cfg": "use `norm_type` (a branch that is off has no norm)"
       for branch in ("sequence_mixer", "mlp", "condition_mixer")},
    "dropout_cfg": "use `hidden_dropout_prob` and `drop_path_rate`",
    "with_lorr": "use `patch_embed_rank`",
    "r": "use `patch_embed_rank` (tinyBIG's LoRR rank)",
    **{name: "this option is not carried over (the README lists these options and why)" for name in (
        "modes_hidden", "with_batch_norm", "with_relu", "with_residual", "enable_bias", "with_dual_lphm", "width",
        "parameters_init_method",
    )},
}
IMAGE_ONLY_FIELDS = (
    "hidden_sizes", "depths", "afno_kept_modes", "patch_embed_rank", "centered_patches", "patch_stride",
    "packing_strategy", "num_output_channels",
)
BOOLEAN_FIELDS = (
    "norm_first", "mixer_residual", "embedding_layer_norm", "embedding_projection", "pooler_projection",
    "final_layer_norm",
)


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def _is_number(value):
    """A finite int or float, not a bool (NaN or infinity in a config field only surfaces deep in a forward)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def depth_of_stages(depths):
    """sum(depths), the number of blocks of a hierarchical model's stages, or None where `depths` is not a non-empty
    list of integers (which the config validation then reports)."""
    if isinstance(depths, (list, tuple)) and depths and all(map(_is_int, depths)):
        return sum(depths)
    return None


def _is_index_list(values, size):
    """A non-empty list (or tuple) of distinct ints (not bools) in [0, size): AFNO processes a repeated index once
    but would give it its gradient twice. The items are checked first, so that `set` only sees ints."""
    return (
        isinstance(values, (list, tuple)) and len(values) > 0 and all(_is_int(v) and 0 <= v < size for v in values)
        and len(set(values)) == len(values)
    )


def _check_probability(name, value):
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer{' or None' if allow_none else ''}, got {value!r}.")


# Format 2: GFNet's sigmoid filter has imaginary part sigmoid(W_i) - 1/2 (was sigmoid(W_i)), and the packing
# strategies are tinyBIG's (cylinder hexagonal strides changed, two invented sphere names removed).
CONFIG_FORMAT = 2
CHANGED_IN_FORMAT_2 = {
    ("filter_activation", "sigmoid"): "the imaginary part of the filter is now sigmoid(W_i) - 1/2, not sigmoid(W_i)",
    **{("packing_strategy", name): "its strides are now tinyBIG's, which differ for cylinders (and for the depth of "
       "volumes)" for name in ("complete_hexagonal", "dense_hexagonal", "denser_hexagonal")},
}
REMOVED_IN_FORMAT_2 = {("packing_strategy", name) for name in ("face_centered_cubic", "hexagonal_close_packing")}
PATCH_FIELDS = ("spatial_dims", "num_channels", "patch_shape", "patch_size")  # image fields with defaults


def _valid_patch_field(name, value, spatial_dims):
    """Whether `value` is a valid `name` (one of `PATCH_FIELDS`) for `spatial_dims` axes."""
    if name == "spatial_dims":
        return _is_int(value) and value in (1, 2, 3)
    if name == "num_channels":
        return _is_int(value) and value > 0
    if name == "patch_shape":
        return value in PATCH_SHAPES
    try:
        per_axis("patch_size", value, spatial_dims if spatial_dims in (1, 2, 3) else 2)
    except ValueError:
        return False
    return True


def layout_for_depth(layout, num_hidden_layers):
    """A saved per-layer `layout` for another number of layers: its first `num_hidden_layers` entries, or, for more
    layers, the same mixer repeated where every entry is that mixer. Anything else (a compact pattern, a mixed layout
    asked for more layers, a malformed value) is returned unchanged, for `expand_layout` to repeat a pattern and
    `validate_mixer_layout` to refuse the rest."""
    if not isinstance(layout, list) or not _is_int(num_hidden_layers) or num_hidden_layers < 1:
        return layout
    if num_hidden_layers <= len(layout):
        return layout[:num_hidden_layers]
    if layout and all(entry == layout[0] for entry in layout):
        return [layout[0]] * num_hidden_layers
    return layout


class SpectralConfig(BackboneConfigMixin, PretrainedConfig):
    r"""
    Configuration shared by every fourierformers family. Instantiate a family config (`GFNetConfig`,
    `AFNOConfig`, `FNetHybridConfig`) rather than this class.

    Args:
        vocab_size (`int`): Number of token ids.
        hidden_size (`int`): Width D of the channels-last hidden states `(B, *grid, D)`.
        num_hidden_layers (`int`, *optional*): Number of blocks. Default: sum(depths) for a hierarchical model,
            else 4.
        intermediate_size (`int`): Width of the MLP in each block; 0 builds no MLP branch (no MLP, no MLP norm): a
            mixer-only model, the ablation of nvSubquadratic's `ResidualBlock` with its MLP set to `Identity`.
        hidden_act (`str`): MLP activation, any key of `transformers.activations.ACT2FN`.
        hidden_dropout_prob (`float`): Dropout on the embeddings, after the MLP's activation and on the output of
            every residual branch (with `mixer_residual=False`, one branch: the MLP's).
        drop_path_rate (`float`): Stochastic depth rate of the last block, growing linearly from 0 at the first (so a
            one-block model drops nothing, as in timm and the original GFNet).
        classifier_dropout (`float`, *optional*): Dropout before the classifier; `hidden_dropout_prob` if unset.
        max_position_embeddings (`int`): Longest sequence. It is also the fixed FFT length of the spectral mixers,
            which is what makes a sequence's outputs independent of the padding of its batch.
        position_embedding_type (`str`): `"absolute"` (learned), `"sinusoidal"` (fixed) or `"none"`.
        type_vocab_size (`int`): Number of token type ids; 0 disables token type embeddings. Text models only.
        layer_norm_eps (`float`): Epsilon of every normalisation layer.
        norm_type (`str`): `"layer_norm"` or `"rms_norm"` (no mean subtraction and no bias, as nvSubquadratic's
            option): the type of every learned normalisation layer (embeddings, blocks, cascade stages, the final
            norm, the masked-LM head). AdaLN-zero's parameter-free LayerNorm stays one.
        norm_first (`bool`): Pre-norm blocks (`True`, with a final norm) or post-norm blocks (`False`, as BERT
            and FNet).
        mixer_residual (`bool`): Whether the mixer branch has its own residual. The original GFNet and AFNO use a
            single residual around mixer and MLP together (`False`); only valid with `norm_first=True`.
        layer_scale_init_value (`float`, *optional*): Enables LayerScale with this initial value.
        embedding_layer_norm (`bool`): A norm (`norm_type`) after summing the token embeddings. Text models only:
            an image model's patch embedding has no norm, as in GFNet and AFNO.
        embedding_projection (`bool`): Linear projection after the embedding norm (as in FNet). Text models only:
            an image model's patch embedding is its projection.
        initializer_range (`float`, > 0): Std of the normal initialisation of linear and embedding weights.
        pooling (`str`): `"cls"` (first token), `"mean"` (average over real, unpadded tokens), `"max"`
            (per-channel maximum over real tokens) or `"attention"` (average over real tokens weighted by learned
            scores, `num_attention_heads` heads of `hidden_size / num_attention_heads` channels each). Image models
            average their token grid where `"cls"` is set.
        pooler_projection (`bool`): Dense + tanh on the pooled vector (BERT / FNet pooler).
        mixer_layout (`list`, *optional*): The token mixer of each layer: a name (`"fourier"`, `"global_filter"`,
            `"afno"`, `"attention"`, `"none"`) or a hybrid-strategy dict (`adaptive`, `multiscale`, `cascade`); a
            dict `{"pattern": [...]}` is repeated to `num_hidden_layers` entries. See `configuration/mixer_layout.py`.
            Defaults to the family's layout.
        fourier_norm (`str`): FFT normalisation of the `fourier` mixer (`"backward"` is FNet's unnormalised DFT).
        filter_activation (`str`): Parameterisation of the global filter K from its stored real and imaginary
            parts: `"identity"` (original GFNet), `"tanh"` (tanh of both parts) or `"sigmoid"` (a gain sigmoid(W_r)
            in (0, 1) and an imaginary part sigmoid(W_i) - 1/2: the range of spectrans' sigmoid filter; see
            `GlobalFilter`).
        afno_num_blocks (`int`): Number of diagonal blocks of the AFNO channel MLP; must divide `hidden_size`.
        afno_hidden_size_factor (`int`): Width multiplier of the AFNO block MLP.
        afno_sparsity_threshold (`float`): Soft-shrink threshold on the AFNO spectrum.
        afno_activation (`str`): Activation of the AFNO block MLP's hidden layer, applied to real and imaginary
            parts: `"relu"` (the paper's) or any key of `transformers.activations.ACT2FN` (spectrans uses `"gelu"`).
        afno_dropout (`float`): Dropout on the real and imaginary parts of that hidden layer in training.
        afno_num_modes (`int`, *optional*): Keep only frequencies with |f| < `afno_num_modes` along every grid axis
            (the sequence for text); all frequencies when unset.
        num_attention_heads (`int`): Heads of the `attention` mixer and of `"attention"` pooling; must divide
            `hidden_size`.
        attention_probs_dropout_prob (`float`): Dropout on attention probabilities.
        image_size (`int` or `list[int]`, *optional*): Size of the input images (or volumes) per spatial axis.
            Setting it makes an image model: inputs are `pixel_values` (B, num_channels, *image_size) and the
            token grid (`grid_shape`) is the FFT size of every mixer. Unset for text models.
        patch_size (`int` or `list[int]`): Kernel extent of the patch embedding per spatial axis.
        num_channels (`int`): Channels of `pixel_values`.
        spatial_dims (`int`): 2 for images (B, C, H, W), 3 for volumes (B, C, D, H, W), 1 for signals (B, C, L).
        patch_shape (`str`): `"cuboid"` (ViT patches), `"cylinder"` (disk over the last two axes) or `"sphere"`
            (ball), a kernel mask of the patch embedding.
        patch_stride (`int` or `list[int]`, *optional*): Stride of the patch embedding; `patch_size` (non-overlapping
            patches, exactly ViT/GFNet patchify for a cuboid) when neither this nor `packing_strategy` is set.
        patch_embed_rank (`int`, *optional*): Factorise the patch embedding kernel through this rank (tinyBIG's
            `with_lorr`): a convolution to `patch_embed_rank` channels, then a linear map to `hidden_size`.
        packing_strategy (`str`, *optional*): Stride from a packing of the patch shape, tinyBIG's centre distances
            (see `configuration.patch_geometry.PACKING_STRATEGIES`); such patches are centred on their cells.
        centered_patches (`bool`, *optional*): Centre every patch on its cell, zero-padding the image by
            `(patch_size - 1) // 2` on both sides (tinyBIG's grid layer): `ceil(n / stride)` cells per axis for odd
            patches, whatever the stride. Default: True with a `packing_strategy` (which requires it), else False
            (ViT patchify: unpadded patches that must tile the image). With `patch_stride` it gives tinyBIG's
            explicit centre distances (`cd_h`, `cd_w`, `cd_d`).
        hidden_sizes (`list[int]`, *optional*): Widths (positive integers) of the stages of a hierarchical model
            (GFNet-H); a 2x strided downsampling convolution joins consecutive stages. Needs `depths`; the last width
            must equal `hidden_size` and each stage's MLP is `intermediate_size / hidden_size` times its width.
        depths (`list[int]`, *optional*): Blocks per stage, each at least 1; their sum is `num_hidden_layers` (which,
            where given too, must equal it).
        afno_kept_modes (`list`, *optional*): For each frequency axis of an image model, the list of processed
            frequency indices (distinct) or None (all): the region the original AFNO code keeps; exclusive with
            `afno_num_modes`.
        final_layer_norm (`bool`): A norm (`norm_type`) after the last block of a pre-norm model (FourCastNet has
            none).
        num_output_channels (`int`, *optional*): Channels predicted per pixel by `XForPatchRegression`.
        condition_type (`str`, *optional*): A conditioning branch in every block between mixer and MLP:
            `"cross_attention"` to a `condition` of shape (B, M, condition_size), or `"adaln_zero"` modulation from a
            pooled `condition` of shape (B, condition_size). `None` (default): no branch, no parameters.
        condition_size (`int`, *optional*): Channels of the condition; `hidden_size` if unset. Needs a
            `condition_type`.
        pad_token_id (`int`, *optional*): The padding token id, in [0, vocab_size): its embedding row starts at zero
            and gets no gradient (`nn.Embedding(padding_idx=...)`). Padding itself is read from `attention_mask`.
        bos_token_id, eos_token_id (`int`, *optional*): Recorded for tokenizers and converters; the model does not
            read them.
        tie_word_embeddings (`bool`): Share the masked-LM decoder weight with the word embeddings.
        out_features (`list[str]`, *optional*): The stages whose outputs `XBackbone` returns as feature maps, names
            from `stage_names`; unset, its last stage. Image models only.
        out_indices (`list[int]`, *optional*): The same stages by their index in `stage_names` (either field sets
            the other).
        fourierformers_format (`int`): The meaning of the saved fields (`CONFIG_FORMAT`); a saved config without it
            was written before format 2, and loads with a warning where a field it uses has changed meaning since.
    """

    model_type = "spectral"
    default_mixer: ClassVar[str] = "none"

    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int | None = None
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    drop_path_rate: float | int = 0.0
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 512
    position_embedding_type: str = "absolute"
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    norm_type: str = "layer_norm"
    norm_first: bool = True
    mixer_residual: bool = True
    layer_scale_init_value: float | None = None
    embedding_layer_norm: bool = True
    embedding_projection: bool = False
    initializer_range: float = 0.02
    pooling: str = "mean"
    pooler_projection: bool = False
    mixer_layout: list | None = None
    fourier_norm: str = "ortho"
    filter_activation: str = "identity"
    afno_num_blocks: int = 8
    afno_hidden_size_factor: int = 1
    afno_sparsity_threshold: float | int = 0.01
    afno_activation: str = "relu"
    afno_dropout: float | int = 0.0
    afno_num_modes: int | None = None
    num_attention_heads: int = 4
    attention_probs_dropout_prob: float | int = 0.1
    image_size: int | list | None = None
    patch_size: int | list = 16
    num_channels: int = 3
    spatial_dims: int = 2
    patch_shape: str = "cuboid"
    patch_stride: int | list | None = None
    packing_strategy: str | None = None
    centered_patches: bool | None = None
    patch_embed_rank: int | None = None
    hidden_sizes: list | None = None
    depths: list | None = None
    afno_kept_modes: list | None = None
    final_layer_norm: bool = True
    num_output_channels: int | None = None
    condition_type: str | None = None
    condition_size: int | None = None
    fourierformers_format: int = CONFIG_FORMAT
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    tie_word_embeddings: bool = True
    _out_features: list | None = None
    _out_indices: list | None = None

    @classmethod
    def refuse_seed_keywords(cls, keywords):
        """`ValueError` for the first keyword of the seed libraries among `keywords`, naming the field to use."""
        seed_keywords = sorted(keywords & SEED_KEYWORDS.keys())
        if seed_keywords:
            name = seed_keywords[0]
            raise ValueError(
                f"`{name}` is a keyword of the seed libraries (spectrans, tinyBIG), not a field of {cls.__name__}, "
                f"which would ignore it: {SEED_KEYWORDS[name]}."
            )

    def __post_init__(self, **kwargs):
        self.refuse_seed_keywords(kwargs.keys())
        if self.num_hidden_layers is None:  # a hierarchical model's depth: the blocks of all its stages
            self.num_hidden_layers = depth_of_stages(self.depths) or DEFAULT_NUM_HIDDEN_LAYERS
        _check_positive_int("num_hidden_layers", self.num_hidden_layers)  # the default layout has one entry per layer
        if self.mixer_layout is None:
            self.mixer_layout = self.default_layout(self.num_hidden_layers)
        self.expand_layout()
        out_features, out_indices = kwargs.pop("out_features", None), kwargs.pop("out_indices", None)
        super().__post_init__(**kwargs)
        if out_features is not None or out_indices is not None:  # unset, `XBackbone` returns the last stage
            self._check_backbone_stages()
            self.set_output_features_output_indices(out_features=out_features, out_indices=out_indices)
        self.validate_architecture()

    def __setattr__(self, name, value):
        # A depth assigned to an existing config (`config.num_hidden_layers = 2`, `config.update(...)`) brings the
        # per-layer layout along, as the same keyword of `from_pretrained` does: the family default at the new
        # depth where the layout is the default at the old one, else `layout_for_depth`. While the dataclass
        # __init__ runs, the layout is not set yet (it is set after the depth, in field order, or by __post_init__),
        # so a layout and depth given together are still checked against each other. A compact `{"pattern": [...]}`
        # layout assigned afterwards stays compact until the config is validated (`expand_layout`), so that it repeats
        # to the final depth whichever of the two is assigned first. A layout of None assigned afterwards (or given
        # to `from_pretrained`, which assigns its keywords again) is the family default, as in the constructor.
        layout = self.__dict__.get("mixer_layout")
        depth = self.__dict__.get("num_hidden_layers")
        resolved_depth = _is_int(depth) and depth > 0
        if name == "mixer_layout" and value is None and "mixer_layout" in self.__dict__ and resolved_depth:
            value = self.default_layout(depth)
        if name == "num_hidden_layers" and isinstance(layout, list) and value != depth and _is_int(value) and value > 0:
            super().__setattr__("mixer_layout", self.layout_at_depth(layout, depth, value))
        super().__setattr__(name, value)

    @classmethod
    def layout_at_depth(cls, layout, depth, new_depth):
        """`layout` (of `depth` layers) for `new_depth` layers: the family default at the new depth where `layout`
        is the default at the old one, else `layout_for_depth` (its first layers, or a one-mixer layout repeated; a
        mixed layout stays as it is, for validation to refuse at a greater depth)."""
        default = _is_int(depth) and depth > 0 and layout == expand_mixer_layout(cls.default_layout(depth), depth)
        return expand_mixer_layout(cls.default_layout(new_depth), new_depth) if default else layout_for_depth(
            layout, new_depth
        )

    def expand_layout(self):
        """Bring `mixer_layout` to one entry per layer with every strategy option filled in (the compact
        `{"pattern": [...]}` form repeated, default `gate` / `fusion` / `share_norm`). Runs first in every validation
        (`validate_architecture`: when the config is created or loaded, when a model is built from it, when it is
        saved), for a layout assigned afterwards (`config.mixer_layout = ...`, `update`)."""
        self.mixer_layout = self.expanded_layout()

    def expanded_layout(self):
        """`mixer_layout` with one entry per layer and every strategy option filled in, the config unchanged."""
        _check_positive_int("num_hidden_layers", self.num_hidden_layers)
        return expand_mixer_layout(self.mixer_layout, self.num_hidden_layers)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As `PretrainedConfig.from_dict` (which `from_pretrained` and `AutoConfig` call), without the fields that
        older versions stored and ignored (see `drop_ignored_fields`). Keyword overrides of config fields are applied
        before the config is checked, so that fields checked against each other can change together (`image_size`
        with `patch_size`, `hidden_size` with `num_attention_heads`, ...); a `num_hidden_layers` override without a
        `mixer_layout` one resizes the saved layout as assigning the depth does (`layout_at_depth`): a checkpoint
        loads as its first layers, as transformers' models do, except that a family's default layout becomes the
        default at the new depth. A `depths` override without a `num_hidden_layers` one sets the depth to their sum.
        transformers sets every keyword again after the config is created, so the layout is expanded once more."""
        if not kwargs.get("return_unused_kwargs"):  # returned as unused, they are the caller's (a model's __init__)
            cls.refuse_seed_keywords(kwargs.keys())
        saved = cls.upgrade_format(config_dict)
        fields = {field.name for field in dataclasses.fields(cls)} - {"transformers_version", "fourierformers_format"}
        config_dict = {**saved, **{name: value for name, value in kwargs.items() if name in fields}}
        depth = kwargs.get("num_hidden_layers")
        if depth is None:  # as in the constructor, the depth of the stages
            depth = depth_of_stages(kwargs.get("depths"))
            if "num_hidden_layers" in kwargs:
                _check_positive_int("num_hidden_layers", depth)
                # transformers sets every keyword again after the config is created: not the None replaced here
                kwargs = {name: value for name, value in kwargs.items() if name != "num_hidden_layers"}
        else:  # checked before it resizes the layout (`[entry] * depth` with a string depth raises a TypeError)
            _check_positive_int("num_hidden_layers", depth)
        if depth is not None:
            config_dict["num_hidden_layers"] = depth
            if "mixer_layout" not in kwargs:
                layout = cls.layout_at_depth(saved.get("mixer_layout"), saved.get("num_hidden_layers"), depth)
                config_dict["mixer_layout"] = layout
        loaded = super().from_dict(cls.drop_ignored_fields(config_dict, overridden=kwargs.keys() & fields), **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).expand_layout()  # (config, unused kwargs) or config
        return loaded

    @classmethod
    def from_json_file(cls, json_file):
        """As `PretrainedConfig.from_json_file`, without the ignored fields of the file (see `drop_ignored_fields`)."""
        return cls(**cls.drop_ignored_fields(cls.upgrade_format(cls._dict_from_json_file(json_file))))

    @classmethod
    def upgrade_format(cls, config_dict):
        """A saved `config_dict` of an older format (no `fourierformers_format`) marked as the current one, with a
        warning for each field whose value means something else since (`CHANGED_IN_FORMAT_2`): the weights load, but
        the model computes another function than the one saved (fine-tune it again). A packing strategy that no
        longer exists is a `ValueError` naming tinyBIG's strategies. A config of a newer format than this version's
        loads as it is, with a warning: its fields may mean what this version does not know."""
        if "fourierformers_format" in config_dict:
            saved_format = config_dict["fourierformers_format"]
            _check_positive_int("fourierformers_format", saved_format)
            if saved_format > CONFIG_FORMAT:
                logger.warning(
                    f"This {cls.__name__} was saved in format {saved_format} by a later version, but this version "
                    f"of fourierformers reads formats up to {CONFIG_FORMAT}: fields whose meaning has changed since "
                    "are read the old way. Upgrade fourierformers to load it as saved."
                )
            return config_dict
        for field, value in config_dict.items():
            if not isinstance(value, str):  # the changed values are names
                continue
            if (field, value) in REMOVED_IN_FORMAT_2:
                raise ValueError(
                    f"This {cls.__name__} was saved before format 2 with `{field}`={value!r}, a strategy that is not "
                    f"tinyBIG's and no longer exists; its sphere strategies are those of `PACKING_STRATEGIES` in "
                    "configuration/patch_geometry.py. Set one and fine-tune the model again."
                )
            if (field, value) in CHANGED_IN_FORMAT_2:
                logger.warning(
                    f"This {cls.__name__} was saved before format 2 with `{field}`={value!r}: "
                    f"{CHANGED_IN_FORMAT_2[field, value]}, so the loaded model computes another function than the "
                    "one saved."
                )
        return {**config_dict, "fourierformers_format": CONFIG_FORMAT}

    @classmethod
    def drop_ignored_fields(cls, config_dict, overridden=()):
        """A copy of a saved `config_dict` without the fields that the model never used, logging a warning for each:
        keywords of the seed libraries (`SEED_KEYWORDS`), `condition_size` without a `condition_type`, image fields (or
        invalid patch fields) in a text config, a position embedding type other than the learned one in an image config,
        `afno_num_modes` beside `afno_kept_modes`, and either without an AFNO layer. Older versions stored them and
        ignored them; the constructor now refuses them, which would make those checkpoints unloadable, so a loaded
        config drops them as the saved model did. The `overridden` fields (keywords of `from_pretrained`, applied to
        `config_dict` already) are the user's, not the saved model's: they are kept for the constructor to check."""
        reasons = {name: f"a keyword of the seed libraries (spectrans, tinyBIG) that the model never used; "
                   f"{SEED_KEYWORDS[name]}" for name in config_dict.keys() & SEED_KEYWORDS.keys()}
        if config_dict.get("condition_size") is not None and config_dict.get("condition_type") is None:
            reasons["condition_size"] = "the model has no conditioning branch (`condition_type` None)"
        text_model = config_dict.get("image_size") is None and config_dict.get("hidden_sizes") is None
        if text_model:
            for name in IMAGE_ONLY_FIELDS:
                if config_dict.get(name) is not None:
                    reasons[name] = "a field of image models, unused by a text model"
            for name, value in config_dict.items():
                if name in PATCH_FIELDS and not _valid_patch_field(name, value, config_dict.get("spatial_dims", 2)):
                    reasons[name] = "an invalid value of a field of image models, unused by a text model"
        elif config_dict.get("position_embedding_type", "absolute") != "absolute":
            reasons["position_embedding_type"] = "image models always learned one position embedding per grid cell"
        if config_dict.get("afno_kept_modes") is not None and config_dict.get("afno_num_modes") is not None:
            reasons["afno_num_modes"] = "`afno_kept_modes` overrode it"
        if "afno" not in cls.saved_mixers(config_dict):
            for name in AFNO_MODE_FIELDS:
                if config_dict.get(name) is not None:
                    reasons[name] = "no layer of the model has an AFNO mixer"
        for name in overridden:
            reasons.pop(name, None)
        for name in sorted(reasons):
            logger.warning(f"Ignoring `{name}`={config_dict[name]!r} of the saved {cls.__name__}: {reasons[name]}.")
        return {name: value for name, value in config_dict.items() if name not in reasons}

    @classmethod
    def saved_mixers(cls, config_dict):
        """The mixer names of a saved config's layout (the family default where it has none); all mixers where the
        layout is invalid, which the constructor then reports."""
        stages = depth_of_stages(config_dict.get("depths"))
        depth = config_dict.get("num_hidden_layers") or stages or DEFAULT_NUM_HIDDEN_LAYERS
        try:
            return mixer_names(expand_mixer_layout(config_dict.get("mixer_layout") or cls.default_layout(depth), depth))
        except (TypeError, ValueError, KeyError):
            return set(MIXER_TYPES)

    @property
    def mixers_used(self):
        """The set of mixer names in `mixer_layout`, including those inside hybrid-strategy entries (of a compact
        layout assigned since the config was validated, too)."""
        return mixer_names(self.expanded_layout() if isinstance(self.mixer_layout, dict) else self.mixer_layout)

    @classmethod
    def default_layout(cls, num_hidden_layers):
        """The family's mixer per layer when `mixer_layout` is not given."""
        return [cls.default_mixer] * num_hidden_layers

    @property
    def is_vision(self):
        """Whether the model embeds `pixel_values` (an `image_size` is set) rather than token ids."""
        return self.image_size is not None

    @property
    def effective_pooling(self):
        """The pooling the model applies: `pooling`, except that an image grid has no class token, so "cls" means
        "mean" there."""
        return "mean" if self.is_vision and self.pooling == "cls" else self.pooling

    @property
    def effective_condition_size(self):
        """The channels of the condition: `condition_size`, or `hidden_size` where it is unset."""
        return self.condition_size or self.hidden_size

    @property
    def centered_patch_grid(self):
        """Whether patches are centred on their cells (`patches_centred`)."""
        return patches_centred(self.centered_patches, self.packing_strategy)

    def patch_geometry(self):
        """(kernel, stride, padding, grid_shape) of the patch embedding, tuples with one int per spatial axis."""
        return patch_geometry(
            self.image_size, self.patch_size, self.patch_stride, self.packing_strategy, self.patch_shape,
            self.spatial_dims, self.centered_patches,
        )

    @property
    def image_shape(self):
        """`image_size` as a tuple with one entry per spatial axis."""
        return per_axis("image_size", self.image_size, self.spatial_dims)

    @property
    def grid_shape(self):
        """Token grid of the first stage, the FFT size of its mixers: `(T,)` = `(max_position_embeddings,)` for
        text, the patch grid for images."""
        if not self.is_vision:
            return (self.max_position_embeddings,)
        return self.patch_geometry()[3]

    @property
    def stage_hidden_sizes(self):
        return list(self.hidden_sizes) if self.hidden_sizes is not None else [self.hidden_size]

    @property
    def stage_depths(self):
        return list(self.depths) if self.depths is not None else [self.num_hidden_layers]

    @property
    def stage_names(self):
        """The outputs an `XBackbone` can return, for `out_features`: "stem" (the patch embeddings) and "stage1",
        "stage2", ... (every stage of a hierarchical model, every block of a model without stages, as ViT's)."""
        num_stages = len(self.depths) if self.depths is not None else self.num_hidden_layers
        return ["stem"] + [f"stage{index}" for index in range(1, num_stages + 1)]

    def _check_backbone_stages(self):
        """Feature maps are stages of an image model, whose `stage_names` need valid `depths` (the callers have
        checked `num_hidden_layers`)."""
        if not self.is_vision:
            raise ValueError("`out_features` and `out_indices` select the feature maps of an image model's "
                             "XBackbone: set `image_size`, or leave them unset (None).")
        if self.depths is not None and depth_of_stages(self.depths) is None:
            raise ValueError(f"`depths` must be a list of positive integers (one per stage), got {self.depths!r}.")

    @property
    def stage_grid_shapes(self):
        """Token grid of every stage: each stage after the first halves every axis (2x2 strided downsampling)."""
        shapes = [self.grid_shape]
        for _ in self.stage_depths[1:]:
            shapes.append(tuple(n // 2 for n in shapes[-1]))
        return shapes

    def _validate_patch_fields(self):
        """The image fields with defaults (`PATCH_FIELDS`), checked in text configs too (where they are unused) so
        that no invalid value is stored."""
        if not _valid_patch_field("spatial_dims", self.spatial_dims, 2):
            raise ValueError(f"`spatial_dims` must be 1, 2 or 3, got {self.spatial_dims!r}.")
        _check_positive_int("num_channels", self.num_channels)
        _check_choice("patch_shape", self.patch_shape, PATCH_SHAPES)
        per_axis("patch_size", self.patch_size, self.spatial_dims)

    def _validate_vision(self):
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"Image models learn a position embedding per grid cell: `position_embedding_type` must be "
                f"'absolute' (the default) with an `image_size`, got {self.position_embedding_type!r}."
            )
        kernel, stride, padding, _ = self.patch_geometry()
        if not self.centered_patch_grid and any(s > k for s, k in zip(stride, kernel)):
            logger.warning_once(
                f"`patch_stride` {stride} is larger than `patch_size` {kernel}: the unpadded patches skip the pixels "
                "between them. Use a stride of at most the patch size, or `centered_patches=True` for tinyBIG's "
                "sparse sampling of patch centres."
            )
        if (self.hidden_sizes is None) != (self.depths is None):
            raise ValueError("A hierarchical model needs both `hidden_sizes` and `depths` (one entry per stage).")
        if self.hidden_sizes is not None:
            for name, values in (("hidden_sizes", self.hidden_sizes), ("depths", self.depths)):
                if not isinstance(values, (list, tuple)) or not all(_is_int(v) and v >= 1 for v in values):
                    raise ValueError(f"`{name}` must be a list of positive integers (one per stage), got {values!r}.")
            if len(self.hidden_sizes) != len(self.depths) or not self.depths:
                raise ValueError(
                    f"`hidden_sizes` ({self.hidden_sizes}) and `depths` ({self.depths}) need one entry per stage."
                )
            if sum(self.depths) != self.num_hidden_layers:
                raise ValueError(
                    f"`num_hidden_layers` ({self.num_hidden_layers}) must equal sum(depths) = {sum(self.depths)}."
                )
            stage_mlp_sizes = [self.intermediate_size * width // self.hidden_size for width in self.hidden_sizes]
            if self.intermediate_size and 0 in stage_mlp_sizes:
                raise ValueError(
                    f"Each stage's MLP is intermediate_size * width // hidden_size wide, which is 0 for some of "
                    f"hidden_sizes={self.hidden_sizes} (MLP widths {stage_mlp_sizes}); raise `intermediate_size` "
                    "(or set it to 0 for blocks without an MLP in every stage)."
                )
            if self.hidden_sizes[-1] != self.hidden_size:
                raise ValueError(
                    f"`hidden_size` ({self.hidden_size}) must equal the last stage width hidden_sizes[-1] "
                    f"({self.hidden_sizes[-1]})."
                )
            grid = self.grid_shape
            for stage in range(1, len(self.depths)):
                if any(n % 2 for n in grid):
                    raise ValueError(
                        f"Stage {stage} halves the token grid {grid}, which must be even along every axis; "
                        "choose image_size / patch_size so that the first grid is divisible by 2**(stages - 1)."
                    )
                grid = tuple(n // 2 for n in grid)
        if self.patch_embed_rank is not None:
            full_rank = min(self.stage_hidden_sizes[0], self.num_channels * math.prod(kernel))
            if self.patch_embed_rank >= full_rank:
                raise ValueError(
                    f"`patch_embed_rank` ({self.patch_embed_rank}) must be below the rank of a full patch kernel, "
                    f"min(width {self.stage_hidden_sizes[0]}, num_channels * patch cells "
                    f"{self.num_channels * math.prod(kernel)}) = {full_rank}, or None for the full kernel."
                )
        if self.afno_kept_modes is not None:
            if self.hidden_sizes is not None:
                raise ValueError("`afno_kept_modes` indexes one token grid; it cannot be combined with `hidden_sizes`.")
            grid = self.grid_shape
            freq_shape = (*grid[:-1], grid[-1] // 2 + 1)
            if not isinstance(self.afno_kept_modes, (list, tuple)) or len(self.afno_kept_modes) != len(grid):
                raise ValueError(
                    f"`afno_kept_modes` needs one entry (a list of indices or None) per frequency axis "
                    f"{freq_shape}, got {self.afno_kept_modes!r}."
                )
            for axis, (modes, size) in enumerate(zip(self.afno_kept_modes, freq_shape)):
                if modes is not None and not _is_index_list(modes, size):
                    raise ValueError(
                        f"`afno_kept_modes[{axis}]` must be None or a non-empty list of distinct integer indices "
                        f"in [0, {size}), got {modes!r}."
                    )

    def validate(self):
        """Every check of `validate_architecture`, then transformers' own class validators. `save_pretrained` calls
        this before writing config.json, so a config changed into an invalid one is never saved."""
        self.validate_architecture()
        super().validate()

    def validate_architecture(self):
        """Raise `ValueError` naming the field and its allowed values for any invalid setting or combination.
        Runs at the end of `__post_init__`, and again when a model is built from the config and in `validate`
        (called by `save_pretrained`): transformers applies the keyword overrides of `from_pretrained` with setattr
        after `__post_init__`, and a user may assign a field of an existing config. A compact layout is expanded
        first (`expand_layout`)."""
        self.expand_layout()
        super().validate_architecture()
        for name in (
            "vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings", "num_labels",
            "afno_num_blocks", "afno_hidden_size_factor", "num_attention_heads", "fourierformers_format",
        ):
            _check_positive_int(name, getattr(self, name))
        if not _is_int(self.intermediate_size) or self.intermediate_size < 0:
            raise ValueError(
                f"`intermediate_size` must be a positive integer, or 0 for blocks without an MLP, got "
                f"{self.intermediate_size!r}."
            )
        for name in ("afno_num_modes", "num_output_channels", "condition_size", "patch_embed_rank"):
            _check_positive_int(name, getattr(self, name), allow_none=True)
        for name in BOOLEAN_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        if not _is_number(self.layer_norm_eps) or self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be a positive number, got {self.layer_norm_eps!r}.")
        # transformers' `_init_weights` reads 0 as its default 0.02 (for linear and embedding weights): refused, as
        # the other weights would be drawn with std 0 (and the truncated normal of image positions divides by it)
        if not _is_number(self.initializer_range) or self.initializer_range <= 0:
            raise ValueError(f"`initializer_range` must be a number > 0, got {self.initializer_range!r}.")
        if self.layer_scale_init_value is not None and not _is_number(self.layer_scale_init_value):
            raise ValueError(
                "`layer_scale_init_value` must be a number or None (no LayerScale), got "
                f"{self.layer_scale_init_value!r}."
            )
        if not _is_number(self.afno_sparsity_threshold) or self.afno_sparsity_threshold < 0:
            raise ValueError(f"`afno_sparsity_threshold` must be a number >= 0, got {self.afno_sparsity_threshold!r}.")
        _check_choice("problem_type", self.problem_type, PROBLEM_TYPES)
        if not _is_int(self.type_vocab_size) or self.type_vocab_size < 0:
            raise ValueError(f"`type_vocab_size` must be an integer >= 0, got {self.type_vocab_size!r}.")
        _check_choice("hidden_act", self.hidden_act, sorted(ACT2FN))
        _check_choice("afno_activation", self.afno_activation, sorted(ACT2FN))
        if any(True for _ in ACT2FN[self.afno_activation].parameters()):
            raise ValueError(
                f"`afno_activation` {self.afno_activation!r} has learned parameters; the AFNO block MLP takes a "
                "parameter-free activation such as 'relu', 'gelu' or 'silu'."
            )
        _check_choice("position_embedding_type", self.position_embedding_type, POSITION_EMBEDDING_TYPES)
        _check_choice("pooling", self.pooling, POOLING_TYPES)
        _check_choice("norm_type", self.norm_type, NORM_TYPES)
        _check_choice("fourier_norm", self.fourier_norm, FFT_NORMS)
        _check_choice("filter_activation", self.filter_activation, FILTER_ACTIVATIONS)
        for name in ("hidden_dropout_prob", "drop_path_rate", "attention_probs_dropout_prob", "afno_dropout"):
            _check_probability(name, getattr(self, name))
        if self.classifier_dropout is not None:
            _check_probability("classifier_dropout", self.classifier_dropout)
        if not self.mixer_residual and not self.norm_first:
            raise ValueError(
                "`mixer_residual=False` (one residual around mixer and MLP, as the original GFNet and AFNO) "
                "requires `norm_first=True`; allowed: norm_first=True with mixer_residual True or False, "
                "or norm_first=False with mixer_residual=True."
            )
        self._validate_patch_fields()
        if self.afno_kept_modes is not None and self.afno_num_modes is not None:
            raise ValueError(
                "Give at most one of `afno_kept_modes` (fixed frequency indices) and `afno_num_modes` (the lowest "
                "modes per axis)."
            )
        if self.is_vision:
            self._validate_vision()
        elif any(getattr(self, name) is not None for name in IMAGE_ONLY_FIELDS):
            given = [f"`{name}`" for name in IMAGE_ONLY_FIELDS if getattr(self, name) is not None]
            names = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
            raise ValueError(f"{names} {'needs' if len(given) == 1 else 'need'} an image model (set `image_size`).")
        mixers_used = validate_mixer_layout(self.mixer_layout, self.num_hidden_layers)
        if self.intermediate_size == 0:
            if not self.mixer_residual:
                raise ValueError(
                    "`intermediate_size=0` (blocks without an MLP) needs `mixer_residual=True`: `mixer_residual=False` "
                    "puts one residual around mixer and MLP together, and there is no MLP."
                )
            if "none" in self.mixer_layout and self.condition_type is None:
                raise ValueError(
                    f"`intermediate_size=0` (blocks without an MLP) leaves layer {self.mixer_layout.index('none')}, "
                    "whose mixer is \"none\", empty: give every layer a mixer, an MLP or a `condition_type`."
                )
        _check_choice("condition_type", self.condition_type, CONDITION_TYPES)
        if self.condition_type is None and self.condition_size is not None:
            raise ValueError(
                f"`condition_size` ({self.condition_size}) requires `condition_type` (one of "
                f"{list(CONDITION_TYPES[1:])}); without a conditioning branch leave `condition_size` unset (None)."
            )
        if self.condition_type is not None and self.hidden_sizes is not None:
            raise ValueError("`condition_type` is not supported with hierarchical `hidden_sizes`; use one width.")
        if "afno" in mixers_used:
            if any(width % self.afno_num_blocks for width in self.stage_hidden_sizes):
                widths = (f"`hidden_size` ({self.hidden_size})" if self.hidden_sizes is None
                          else f"every stage width hidden_sizes={self.stage_hidden_sizes}")
                raise ValueError(f"`afno_num_blocks` ({self.afno_num_blocks}) must be a positive divisor of {widths}.")
            num_frequencies = max(self.grid_shape) // 2 + 1
            if self.afno_num_modes is not None and not 1 <= self.afno_num_modes <= num_frequencies:
                raise ValueError(
                    f"`afno_num_modes` must be between 1 and the longest grid axis // 2 + 1 = {num_frequencies} "
                    f"(grid {self.grid_shape}: max_position_embeddings for text, the patch grid for images), "
                    f"or None to keep every frequency; got {self.afno_num_modes}."
                )
        else:
            for name in AFNO_MODE_FIELDS:
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` ({getattr(self, name)!r}) selects the modes of AFNO mixers, and no layer uses one "
                        f"(mixers {sorted(mixers_used)}): add an 'afno' layer to `mixer_layout` or leave `{name}` "
                        "unset (None)."
                    )
        uses_heads = (
            "attention" in mixers_used or self.condition_type == "cross_attention" or self.pooling == "attention"
        )
        if uses_heads and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`num_attention_heads` ({self.num_attention_heads}) must be a positive divisor of `hidden_size` "
                f"({self.hidden_size})."
            )
        if "attention" in mixers_used and any(width % self.num_attention_heads for width in self.stage_hidden_sizes):
            raise ValueError(
                f"`num_attention_heads` ({self.num_attention_heads}) must divide every stage width "
                f"hidden_sizes={self.stage_hidden_sizes}, since an `attention` mixer can run in any stage."
            )
        if self._out_features is not None or self._out_indices is not None:  # after a change of depth, too
            self._check_backbone_stages()
            self.verify_out_features_out_indices()
            if not self._out_features and not self._out_indices:
                raise ValueError(
                    f"`out_features` and `out_indices` must name at least one of the stages {self.stage_names}, or be "
                    "unset (None) for the last one."
                )
        pad_token_id = self.pad_token_id
        if pad_token_id is not None and not (_is_int(pad_token_id) and 0 <= pad_token_id < self.vocab_size):
            raise ValueError(
                f"`pad_token_id` ({pad_token_id!r}) must be in [0, vocab_size={self.vocab_size}): an integer token id, "
                "or None."
            )
