"""The model code shared by every fourierformers family: embeddings, the residual block, the backbone and the
task heads. A family (GFNet, AFNO, FNet-hybrid) is a config plus thin subclasses of these classes; what it
changes is the token mixer of each layer, chosen by `config.mixer_layout`.

Data path (text):

    input_ids (B, T) -> SpectralEmbeddings -> x: (B, T, D)
    x -> num_hidden_layers x SpectralBlock(mixer, MLP) -> final norm (pre-norm models) -> last_hidden_state
    last_hidden_state -> SpectralPooler -> pooler_output (B, D) -> sequence classifier
    last_hidden_state -> token classifier / masked-LM head / question-answering span scores
    multiple choice: (B, C, T) inputs run as B * C sequences -> pooler_output -> one score per choice (B, C)

Data path (images and volumes, `SpectralModel._forward_pixels`):

    pixel_values (B, C, *image_size) -> SpectralImageEmbeddings (patch_embedding.py) -> x: (B, *grid, D)
    x -> SpectralBlocks of each stage, GridDownsample between stages (GFNet-H) -> final norm
    -> last_hidden_state (B, N, D), N = prod(grid) -> SpectralPooler -> pooler_output (B, D) -> image classifier
    last_hidden_state -> patch regression head (no pooler)
    (the image heads are in modeling_spectral_image.py)
"""

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import hub as transformers_hub

from fourierformers.configuration.configuration_spectral import PROBLEM_TYPES

from .checkpoint_loading import (
    BUILT_FIELDS,
    SAVE_PRETRAINED_KWARGS,
    as_saved,
    config_loading_kwargs,
    config_serves,
    realign_memory_mapped_tensors,
    requested_config,
    size_mismatch_message,
    validate_checkpoint,
    warnings_of_reading_configs_muted,
)
from .condition_layers import AdaLNZero, CrossAttention
from .dropout import Dropout
from .hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer, run_mixer
from .input_checks import (
    check_packed_sequence_kwargs,
    checked_positive_index,
    flatten_choices,
    is_integer_tensor,
    validate_class_labels,
    validate_condition,
    validate_input_kind,
    validate_sequence_labels,
    validate_span_positions,
    validate_text_inputs,
)
from .patch_embedding import (
    GridDownsample,
    PatchEmbedding,
    SpectralImageEmbeddings,
    patch_kernel_mask,
    resize_model_to_image_size,
)
from .portable_checkpoint import write_model_card, write_remote_code
from .spectral_layers import (
    ATTENTION_IMPLEMENTATIONS,
    MLP,
    AFNOMixer,
    AttentionPooling,
    DropPath,
    FourierMixer,
    GlobalFilter,
    SelfAttention,
    build_norm,
    can_read_values,
    masked_max,
    masked_mean,
    real_tokens,
    sinusoidal_position_table,
)

# transformers' "gelu_new" (FNet, GPT-2) is the tanh approximation of GELU written as five tensor operations;
# torch's fused kernel computes the same function (to float rounding) about three times faster.
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


def hidden_activation(name):
    """The module of `ACT2FN[name]`, or of its fused equivalent in `FUSED_ACTIVATIONS`."""
    return ACT2FN[FUSED_ACTIVATIONS.get(name, name)]


@dataclass
class SpectralImageModelOutput(BaseModelOutputWithPooling):
    r"""
    Output of an image or volume backbone: `BaseModelOutputWithPooling` with the token grid flattened, plus the same
    hidden states on their grid, as Swin's `reshaped_hidden_states`.

    Args:
        last_hidden_state: (B, N, D), the final token grid flattened row-major, N = prod(grid).
        pooler_output: (B, D), the grid pooled by `config.pooling` (when the model has a pooler).
        hidden_states: the embeddings and every block's output, each (B, N, D); in a hierarchical model each stage
            has its own N and D. Returned when `output_hidden_states=True`.
        attentions: (B, heads, N, N) per attention layer, when `output_attentions=True`.
        reshaped_hidden_states: the tensors of `hidden_states` on their token grid, channels first as in Swin:
            (B, D, L) for 1-D inputs, (B, D, H, W) for images, (B, D, depth, H, W) for volumes. Returned when
            `output_hidden_states=True`.
    """

    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


def call_fft_shape(grid_shape, built_shape):
    """The FFT grid of the spectral mixers for a token grid `grid_shape` in a stage built for `built_shape`: None
    (the built grid, zero-padding the tokens into it) when the tokens fit, which keeps the results of a text
    sequence or a smaller image independent of padding; else the larger size of each axis, so that an image larger
    than `image_size` (`interpolate_pos_encoding=True`) runs as the model loaded at that size would."""
    if all(n <= size for n, size in zip(grid_shape, built_shape)):
        return None
    return tuple(max(n, size) for n, size in zip(grid_shape, built_shape))


def build_condition_mixer(config):
    """The operator of the block's conditioning branch for `config.condition_type`, or None when it is off."""
    condition_size = config.effective_condition_size
    if config.condition_type == "cross_attention":
        return CrossAttention(
            config.hidden_size, condition_size, config.num_attention_heads, config.attention_probs_dropout_prob
        )
    if config.condition_type == "adaln_zero":
        return AdaLNZero(config.hidden_size, condition_size, eps=config.layer_norm_eps)
    return None


def build_mixer(config, layout_entry, fft_shape, hidden_size):
    """The token mixer of one `mixer_layout` entry for hidden states with grid `fft_shape` and width `hidden_size`
    (the stage's), or None for `"none"`. A strategy dict builds its child mixers and wraps them in the composite
    mixer of `hybrid_layers`."""
    if isinstance(layout_entry, dict):
        mixers = [build_mixer(config, name, fft_shape, hidden_size) for name in layout_entry["mixers"]]
        strategy = layout_entry["strategy"]
        if strategy == "adaptive":
            return AdaptiveMixer(mixers, hidden_size, gate=layout_entry["gate"])
        if strategy == "multiscale":
            return MultiscaleMixer(mixers, hidden_size, fusion=layout_entry["fusion"])
        if strategy == "cascade":
            return CascadeMixer(
                mixers, hidden_size, share_norm=layout_entry["share_norm"], eps=config.layer_norm_eps,
                norm_type=config.norm_type,
            )
        raise ValueError(f"Unknown hybrid strategy {strategy!r}.")
    # init_std=None: `_init_weights` draws the weights; drawing them here as well would advance the seeded random
    # stream, and every model would start from other weights than the same seed gave before.
    if layout_entry == "fourier":
        return FourierMixer(fft_shape, norm=config.fourier_norm)
    if layout_entry == "global_filter":
        return GlobalFilter(hidden_size, fft_shape, activation=config.filter_activation, init_std=None)
    if layout_entry == "afno":
        return AFNOMixer(
            hidden_size,
            fft_shape,
            num_blocks=config.afno_num_blocks,
            hidden_size_factor=config.afno_hidden_size_factor,
            sparsity_threshold=config.afno_sparsity_threshold,
            kept_modes=config.afno_kept_modes,
            num_modes=config.afno_num_modes,  # re-applied to any other FFT grid of a call
            activation=None if config.afno_activation == "relu" else ACT2FN[config.afno_activation],  # None: in place
            dropout=config.afno_dropout,
            init_std=None,
        )
    if layout_entry == "attention":
        return SelfAttention(hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob)
    if layout_entry == "none":
        return None
    raise ValueError(f"Unknown mixer {layout_entry!r}.")


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (CaiT; used by GFNet-H)."""

    def __init__(self, hidden_size, init_value):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((hidden_size,), float(init_value)))

    def forward(self, x):
        return x * self.gamma


class SpectralBlock(GradientCheckpointingLayer):
    """One residual block for every family and every number of grid axes: a mixer branch and an MLP branch,
    each `norm -> op -> dropout / drop-path -> residual`.

    - `config.norm_first=True` (pre-norm): `x + branch(norm(x))`; `False` (post-norm, BERT/FNet): `norm(x + branch(x))`.
    - `config.mixer_residual=False` (original GFNet/AFNO): one residual around both,
      `x + mlp(mlp_norm(mixer(mixer_norm(x))))`.
    - mixer `"none"`: no mixer and no mixer norm (an MLP-only block, the lower bound of any mixer's cost);
      `intermediate_size=0`: no MLP and no MLP norm (a mixer-only block).
    - every norm is `config.norm_type` (LayerNorm or RMSNorm).
    - a `cascade` mixer normalises the input of each of its stages itself, `h_0 = x`,
      `h_k = h_{k-1} + mixer_k(norm_k(h_{k-1}))` (spectrans' `CascadeBlock`), so a pre-norm block has no mixer norm
      for it: its mixer branch gives exactly `h_K` (before dropout, LayerScale and drop-path of the update
      `h_K - x`). With `mixer_residual=False` the MLP gets that update, `x + mlp(mlp_norm(h_K - x))`, whose first stage
      sees `norm_1(x)` as a single mixer sees `mixer_norm(x)`. A post-norm block normalises after the residual as for
      every mixer, `norm(h_K)`.
    - `config.condition_type`: a conditioning branch between mixer and MLP, pre-norm in both block styles:
      `x + condition_mixer(condition_norm(x), condition)` for cross-attention, `x + adaln_zero(x, condition)` (which
      normalises itself); with `mixer_residual=False` it conditions the MLP input. Off (None): no module, no
      parameter.

    `hidden_size` / `intermediate_size` are the block's stage's (the config's for a single-stage model; each stage of
    a hierarchical model has its own). The weights of a GlobalFilter or AFNO mixer are left to the model's
    `_init_weights`, which draws them with `initializer_range`: a block built on its own leaves them uninitialised.
    """

    def __init__(self, config, layout_entry, fft_shape, drop_path, hidden_size, intermediate_size):
        super().__init__()
        self.norm_first = config.norm_first
        self.mixer_residual = config.mixer_residual
        # the block's `mixer_layout` entry, for the config check after surgery; a copy: the config's may be edited
        self.layout_entry = copy.deepcopy(layout_entry)
        self.mixer = build_mixer(config, layout_entry, fft_shape, hidden_size)
        # A pre-norm mixer norm in front of a cascade would be a second LayerNorm before its first stage's and would
        # make later stages see `norm_k(norm(x) + ...)` instead of `norm_k(x + ...)`.
        norms_itself = self.norm_first and isinstance(self.mixer, CascadeMixer)
        use_mixer_norm = self.mixer is not None and not norms_itself
        norm_type, eps = config.norm_type, config.layer_norm_eps
        self.mixer_norm = build_norm(norm_type, hidden_size, eps) if use_mixer_norm else None
        self.condition_mixer = build_condition_mixer(config)
        use_condition_norm = config.condition_type == "cross_attention"
        self.condition_norm = build_norm(norm_type, hidden_size, eps) if use_condition_norm else None
        self.mlp_norm, self.mlp = None, None  # intermediate_size 0: no MLP branch
        if intermediate_size:
            self.mlp_norm = build_norm(norm_type, hidden_size, eps)
            activation = hidden_activation(config.hidden_act)
            self.mlp = MLP(hidden_size, intermediate_size, activation, config.hidden_dropout_prob)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.drop_path = DropPath(drop_path)
        layer_scale = config.layer_scale_init_value
        use_mixer_scale = layer_scale is not None and self.mixer is not None and self.mixer_residual
        self.mixer_layer_scale = LayerScale(hidden_size, layer_scale) if use_mixer_scale else None
        use_mlp_scale = layer_scale is not None and self.mlp is not None
        self.mlp_layer_scale = LayerScale(hidden_size, layer_scale) if use_mlp_scale else None

    def _branch(self, out, layer_scale):
        out = self.dropout(out)
        if layer_scale is not None:
            out = layer_scale(out)
        return self.drop_path(out)

    def _condition(self, x, condition, attn_implementation, condition_mask):
        if self.condition_mixer is None:
            return x
        normed = x if self.condition_norm is None else self.condition_norm(x)
        out = self.condition_mixer(normed, condition, attn_implementation=attn_implementation,
                                   condition_mask=condition_mask)
        return x + self._branch(out, None)

    def forward(self, hidden_states, mask=None, condition=None, output_attentions=False, attn_implementation="sdpa",
                fft_shape=None, condition_mask=None):
        """hidden_states: (B, *grid, D); mask: (B, *grid) bool, True on real tokens; condition: (B, M, C_cond) or
        (B, C_cond) for the conditioning branch, condition_mask: (B, M) bool, True on its real tokens; fft_shape: the
        FFT grid of the spectral mixers for this call (None: the grid they were built for). Returns (hidden_states,
        attention weights or None)."""
        x, attention = hidden_states, None
        mix_options = dict(
            output_attentions=output_attentions, attn_implementation=attn_implementation, fft_shape=fft_shape
        )
        if not self.norm_first:
            if self.mixer is not None:
                mixed, attention = run_mixer(self.mixer, x, mask, **mix_options)
                x = self.mixer_norm(x + self._branch(mixed, self.mixer_layer_scale))
            x = self._condition(x, condition, attn_implementation, condition_mask)
            if self.mlp is None:
                return x, attention
            return self.mlp_norm(x + self._branch(self.mlp(x), self.mlp_layer_scale)), attention
        mixed = x
        if self.mixer is not None:
            mixer_input = x if self.mixer_norm is None else self.mixer_norm(x)
            mixed, attention = run_mixer(self.mixer, mixer_input, mask, **mix_options)
        if self.mixer_residual:  # x + mixer(norm(x)), then x + mlp(norm(x))
            if self.mixer is not None:
                x = x + self._branch(mixed, self.mixer_layer_scale)
            x = self._condition(x, condition, attn_implementation, condition_mask)
            if self.mlp is None:
                return x, attention
            return x + self._branch(self.mlp(self.mlp_norm(x)), self.mlp_layer_scale), attention
        # one residual around both (the config requires the MLP here): x + mlp(mlp_norm(mixer(mixer_norm(x))))
        mlp_input = self._condition(mixed, condition, attn_implementation, condition_mask)
        return x + self._branch(self.mlp(self.mlp_norm(mlp_input)), self.mlp_layer_scale), attention


class SpectralEmbeddings(nn.Module):
    """Token + position (+ token type) embeddings -> optional norm -> optional projection -> dropout."""

    _no_weight_decay = ("position_embeddings.weight",)

    def __init__(self, config):
        super().__init__()
        self.position_embedding_type = config.position_embedding_type
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = None
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        elif config.position_embedding_type == "sinusoidal":
            table = sinusoidal_position_table(config.max_position_embeddings, config.hidden_size)
            self.register_buffer("position_table", table, persistent=False)
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.layer_norm = (
            build_norm(config.norm_type, config.hidden_size, config.layer_norm_eps)
            if config.embedding_layer_norm
            else None
        )
        self.projection = nn.Linear(config.hidden_size, config.hidden_size) if config.embedding_projection else None
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, inputs_embeds=None, token_type_ids=None, position_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, D)
        else:  # float32 embeddings for a bfloat16 model, as pixel_values and conditions are cast
            inputs_embeds = inputs_embeds.to(self.word_embeddings.weight.dtype)
        batch_size, seq_length = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(seq_length, device=inputs_embeds.device)[None]
        embeddings = inputs_embeds
        if self.position_embeddings is not None:
            embeddings = embeddings + self.position_embeddings(position_ids)
        elif self.position_embedding_type == "sinusoidal":
            embeddings = embeddings + self.position_table[position_ids].to(embeddings.dtype)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(batch_size, seq_length, dtype=torch.long, device=embeddings.device)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.layer_norm is not None:
            embeddings = self.layer_norm(embeddings)
        if self.projection is not None:
            embeddings = self.projection(embeddings)
        return self.dropout(embeddings)


class SpectralPooler(nn.Module):
    """(B, *grid, D) -> (B, D): the first token (`cls`), the mean of the real tokens (`mean`), their per-channel
    maximum (`max`) or their learned weighted mean (`attention`, see `AttentionPooling`), then optionally
    dense + tanh (the BERT / FNet pooler)."""

    def __init__(self, config):
        super().__init__()
        self.pooling = config.effective_pooling
        self.attention = (
            AttentionPooling(config.hidden_size, config.num_attention_heads) if self.pooling == "attention" else None
        )
        self.dense = nn.Linear(config.hidden_size, config.hidden_size) if config.pooler_projection else None

    def forward(self, hidden_states, mask=None):
        if self.pooling == "cls":
            pooled = hidden_states.flatten(1, -2)[:, 0]  # the first token of any grid
        elif self.pooling == "max":
            pooled = masked_max(hidden_states, mask)
        elif self.pooling == "attention":
            pooled = self.attention(hidden_states, mask)
        else:
            pooled = masked_mean(hidden_states, mask)
        if self.dense is not None:
            pooled = torch.tanh(self.dense(pooled))
        return pooled


class SpectralPreTrainedModel(PreTrainedModel):
    """What every family's models share: weight initialisation, class attributes, the config's family check,
    `from_pretrained` (checkpoints of another image size or length), `save_pretrained` (refusing configs changed
    after building) and `resize_token_embeddings`; subclassed once per family to set `config_class` and
    `base_model_prefix`."""

    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SpectralBlock"]
    _supports_sdpa = True
    input_kind = None  # the inputs of a head, "text" or "image"; None (the backbone): either, as its config says

    def __init__(self, config, *inputs, **kwargs):
        """Refuses a config of another family (its checkpoint would be saved under that family's model_type and
        load back into another class; see `config_serves` for custom variants) and, for a head of one input kind, a
        config of the other."""
        family = getattr(self.config_class, "model_type", "")
        model_type = getattr(type(config), "model_type", None)  # what save_pretrained writes to config.json
        if family and not config_serves(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__} (model_type {family!r}), got a "
                f"{type(config).__name__} (model_type {model_type!r}); build the classes of the config's family, or "
                "use the Auto classes (AutoModel.from_config(config))."
            )
        if self.input_kind == "text" and config.is_vision:
            raise ValueError(
                f"{type(self).__name__} takes token inputs and needs a text config (no image_size); for an image "
                "config use XForImageClassification or XForPatchRegression."
            )
        if self.input_kind == "image" and not config.is_vision:
            raise ValueError(
                f"{type(self).__name__} needs an image config: set `image_size` (and patch_size, num_channels)."
            )
        super().__init__(config, *inputs, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, GlobalFilter):
            init.normal_(module.complex_weight, std=std)
        elif isinstance(module, AFNOMixer):
            for parameter in (module.w1, module.b1, module.w2, module.b2):
                init.normal_(parameter, std=std)
        elif isinstance(module, LayerScale):
            init.constant_(module.gamma, module.init_value)
        elif isinstance(module, MultiscaleMixer) and module.fusion_logits is not None:
            init.zeros_(module.fusion_logits)
        elif isinstance(module, AdaLNZero):
            init.zeros_(module.modulation_weight)
            init.zeros_(module.modulation_bias)
        elif isinstance(module, SpectralEmbeddings) and module.position_embedding_type == "sinusoidal":
            init.copy_(module.position_table, sinusoidal_position_table(*module.position_table.shape))
        elif isinstance(module, SpectralImageEmbeddings):
            init.trunc_normal_(module.position_embeddings, std=std)
            if module.mask_token is not None:  # as SimMIM's
                init.trunc_normal_(module.mask_token, std=std)
        elif isinstance(module, PatchEmbedding):
            init.copy_(module.kernel_mask, patch_kernel_mask(module.patch_shape, tuple(module.kernel_mask.shape)))
            if module.rank_projection is not None:
                # Each kernel entry of A B sums r products: factors of std sqrt(std / sqrt(r)) give it the std of a
                # full-rank kernel (std each would make the patch signal about std * sqrt(r) times too small).
                factor_std = (std / module.rank_projection.in_features**0.5) ** 0.5
                init.normal_(module.projection.weight, std=factor_std)
                init.normal_(module.rank_projection.weight, std=factor_std)

    def _check_and_adjust_attn_implementation(self, attn_implementation, is_init_check=False, *args, **kwargs):
        """transformers' choice, limited to the implementations our attention layers run. A function registered with
        `AttentionInterface` or a hub kernel is refused when the model is built or switched (transformers builds no
        padding mask for one without a mask function, and ours would be in a format it may not expect), rather than
        at the first forward."""
        chosen = super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, *args, **kwargs)
        if chosen not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {list(ATTENTION_IMPLEMENTATIONS)} for {type(self).__name__} "
                f"(its attention layers take padding as a boolean key mask), got {chosen!r}."
            )
        return chosen

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the image-size handling of `_from_pretrained_at_image_size` and
        clear errors: a local folder that does not exist, a truncated or corrupt safetensors file and a checkpoint of
        another model type are refused before anything is built, and weights that do not fit the requested config
        raise a `ValueError` naming the config fields that differ, or saying that they do not fit the checkpoint's
        own config (transformers only refers to its load report)."""
        validate_checkpoint(cls, pretrained_model_name_or_path, kwargs)
        try:
            loaded = cls._from_pretrained_at_image_size(pretrained_model_name_or_path, *model_args, **kwargs)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            raise ValueError(size_mismatch_message(cls, pretrained_model_name_or_path, kwargs)) from error
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        realign_memory_mapped_tensors(model)
        return loaded

    @classmethod
    def _from_pretrained_at_image_size(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """An image model asked for another image size than its checkpoint's (`image_size=...`, directly or through
        an Auto class, or a `config` with another `image_size`) is loaded at the checkpoint's size, then rebuilt at
        the new one with its position embeddings and global filters resized (`resize_model_to_image_size`, bicubic
        for images), as the original GFNet fine-tunes at 384 px."""
        if pretrained_model_name_or_path is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        config_kwargs = config_loading_kwargs(kwargs)
        config = requested_config(cls.config_class, kwargs)
        requested = kwargs.pop("image_size", None)
        if requested is None and getattr(config, "is_vision", False):
            requested = config.image_size
        if requested is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        with warnings_of_reading_configs_muted(cls.config_class):
            saved = cls.config_class.from_pretrained(pretrained_model_name_or_path, **config_kwargs)
        if not saved.is_vision:
            raise ValueError(
                f"`image_size`={requested!r} applies to image checkpoints, but {pretrained_model_name_or_path} holds a "
                "text model (its config has no image_size)."
            )
        wanted = type(saved)(**{**saved.to_dict(), "image_size": requested})
        if wanted.image_shape == saved.image_shape:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if isinstance(kwargs.get("config"), PretrainedConfig):
            # a copy keeps what to_dict() leaves out, such as the attn_implementation AutoConfig took in
            kwargs["config"] = copy.deepcopy(config)
            kwargs["config"].image_size = saved.image_size
        elif config is not None:
            kwargs["image_size"] = saved.image_size
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model, info = loaded if kwargs.get("output_loading_info") else (loaded, None)
        model = resize_model_to_image_size(model, requested)
        return model if info is None else (model, info)

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """`PreTrainedModel.resize_token_embeddings`, refusing a vocabulary that would drop `config.pad_token_id`
        (the resized model could not be saved: its config would be invalid)."""
        if self.config.is_vision:
            raise ValueError(
                f"{type(self).__name__} is an image model: it has patch embeddings, not a token vocabulary to resize."
            )
        if new_num_tokens is not None:
            new_num_tokens = checked_positive_index("new_num_tokens", new_num_tokens)
        if pad_to_multiple_of is not None:  # transformers divides by it, and refuses numpy integers
            pad_to_multiple_of = checked_positive_index("pad_to_multiple_of", pad_to_multiple_of)
        if new_num_tokens is not None and self.config.pad_token_id is not None:
            size = new_num_tokens
            if pad_to_multiple_of is not None:
                size = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
            if self.config.pad_token_id >= size:
                raise ValueError(
                    f"Resizing the vocabulary to {size} tokens would drop pad_token_id={self.config.pad_token_id}; "
                    f"keep at least {self.config.pad_token_id + 1} tokens, or first set `config.pad_token_id` to an "
                    "id below the new size (or None)."
                )
        return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)

    def _check_head_unchanged(self):
        """Refuse a `config.num_labels` changed after a classifier was built: the loss follows the classifier's
        width, but the saved config would not describe the saved classifier and the checkpoint would not load."""
        classifier = getattr(self, "classifier", None)
        if isinstance(classifier, nn.Linear) and classifier.out_features != self.config.num_labels:
            raise ValueError(
                f"config.num_labels={self.config.num_labels}, but the classifier was built with "
                f"{classifier.out_features} classes: set `config.num_labels` back, or build a head for the new classes "
                f"with `from_pretrained(path, num_labels={self.config.num_labels}, ignore_mismatched_sizes=True)`."
            )

    def save_pretrained(self, save_directory, is_main_process=True, **kwargs):
        """`PreTrainedModel.save_pretrained`, then the source files that let the checkpoint load with
        `trust_remote_code=True` without fourierformers (for registered classes) and a model card (README.md).

        The config is validated first: transformers copies the source files of registered classes before it
        validates and writes config.json, so an invalid config left a folder of source files and nothing else; a
        config changed after the model was built (`_check_config_unchanged`, `_check_head_unchanged`) would not
        describe the saved weights.
        With `push_to_hub=True` the folder is uploaded last (transformers uploads before the source files and the
        card exist), so the hub repository holds what a local save holds."""
        if is_main_process:
            self.config.validate()
            # every backbone, also under another attribute than `base_model_prefix` (a user's own head)
            for module in self.modules():
                if isinstance(module, SpectralModel):
                    module._check_config_unchanged()
            self._check_head_unchanged()
        push_to_hub = kwargs.pop("push_to_hub", False) and is_main_process
        if push_to_hub:
            hub_options = {key: kwargs.pop(key) for key in ("commit_message", "create_pr") if key in kwargs}
            repo_id = kwargs.pop("repo_id", Path(save_directory).name)
            repo_options = {key: kwargs.pop(key) for key in list(kwargs) if key not in SAVE_PRETRAINED_KWARGS}
            repo_id = transformers_hub.hf_api().create_repo(
                repo_id, exist_ok=True, token=kwargs.get("token"), **repo_options
            ).repo_id
            Path(save_directory).mkdir(parents=True, exist_ok=True)
            files_timestamps = self._get_files_timestamps(save_directory)
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            if self._auto_class is not None:
                write_remote_code(self, save_directory)
            write_model_card(self, save_directory)
        if push_to_hub:
            self._upload_modified_files(
                save_directory, repo_id, files_timestamps, token=kwargs.get("token"), **hub_options
            )


def roll_rows(x, shift):
    """Circularly shift each row of x: (B, T, ...) left by shift: (B,), i.e. out[b, t] = x[b, (t + shift[b]) % T]."""
    length = x.shape[1]
    index = torch.arange(length, device=x.device)[None] + shift[:, None]  # (B, T), in (-T, 2T) for |shift| < T
    # wrapped by comparisons rather than `% length`: ONNX export has no remainder by a dynamic (symbolic) length
    index = torch.where(index < 0, index + length, torch.where(index >= length, index - length, index))
    index = index.view(*index.shape, *([1] * (x.ndim - 2))).expand_as(x)
    return x.gather(1, index)


def packed_sequences(position_ids):
    """Find the sequences packed into the rows of `position_ids` (B, T), as transformers'
    `DataCollatorWithFlattening` writes them and its attention masks read them: a sequence ends where the next position
    id is not one more. Returns None where each row holds one sequence, else, for the S sequences in token order,
    (rows, index, mask): each one's batch row (S,), the flat (B * T) indices of its tokens right-padded to the longest
    one's length L (S, L), and True on its own tokens (S, L)."""
    batch_size, length = position_ids.shape
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    flat_starts = starts.flatten().nonzero().squeeze(1)  # (S,): column 0 of every row starts one
    if len(flat_starts) == batch_size:
        return None
    lengths = torch.diff(flat_starts, append=flat_starts.new_tensor([batch_size * length]))
    offsets = torch.arange(int(lengths.max()), device=position_ids.device)
    mask = offsets < lengths[:, None]
    index = torch.where(mask, flat_starts[:, None] + offsets, flat_starts[:, None])
    return flat_starts // length, index, mask


def roll_attention(weights, shift):
    """`roll_rows` on both token axes of attention weights (B, heads, T, T)."""
    weights = roll_rows(weights.transpose(1, 2), shift).transpose(1, 2)
    return roll_rows(weights.transpose(1, 3), shift).transpose(1, 3)


class SpectralModel(SpectralPreTrainedModel):
    """The bare backbone: embeddings, blocks, final norm and (optionally) the pooler.

    Args:
        config: a family config.
        add_pooling_layer: build the pooler (sequence-level heads); token-level heads leave it out.
        use_mask_token: give an image model the learned mask token that `bool_masked_pos` puts in place of patches
            (`XForMaskedImageModeling`).
    """

    def __init__(self, config, add_pooling_layer=True, use_mask_token=False):
        super().__init__(config)
        if use_mask_token and not config.is_vision:
            raise ValueError(
                "`use_mask_token` builds the mask token of image patches (XForMaskedImageModeling); a text model "
                "masks tokens by their ids (the tokenizer's mask token, XForMaskedLM)."
            )
        # transformers applies the keyword overrides of `from_pretrained` with setattr after the config validated
        # itself (expanding its layout), and a user may assign a field: validate again, once per model (every head
        # builds its backbone before its own layers) and for about 0.1 ms.
        config.validate_architecture()
        self.stage_grid_shapes = config.stage_grid_shapes
        self.built_fields = {name: copy.deepcopy(getattr(config, name)) for name in BUILT_FIELDS}
        if config.is_vision:
            self.main_input_name, self.input_modalities = "pixel_values", ("image",)
            kernel, stride, padding, grid = config.patch_geometry()
            self.embeddings = SpectralImageEmbeddings(
                config.num_channels, config.stage_hidden_sizes[0], config.image_shape, kernel, stride, padding,
                grid, patch_shape=config.patch_shape, dropout=config.hidden_dropout_prob, rank=config.patch_embed_rank,
                centered=config.centered_patch_grid, use_mask_token=use_mask_token,
            )
        else:
            self.embeddings = SpectralEmbeddings(config)
        # on the CPU: a model built under `torch.device("meta")` (init_empty_weights) cannot read meta values
        drop_path_rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device="cpu").tolist()
        widths, depths = config.stage_hidden_sizes, config.stage_depths
        # Hierarchical models (GFNet-H): stage s has depths[s] blocks of width widths[s] on grid s; a 2x strided
        # convolution (downsamples[s - 1]) leads into every stage after the first.
        self.stage_starts = [sum(depths[:stage]) for stage in range(len(depths))]
        blocks = []
        for stage, (width, depth, grid) in enumerate(zip(widths, depths, config.stage_grid_shapes)):
            intermediate_size = config.intermediate_size * width // config.hidden_size
            for index in range(self.stage_starts[stage], self.stage_starts[stage] + depth):
                blocks.append(SpectralBlock(config, config.mixer_layout[index], grid, drop_path_rates[index],
                                            hidden_size=width, intermediate_size=intermediate_size))
        self.layers = nn.ModuleList(blocks)
        self.downsamples = (
            nn.ModuleList(GridDownsample(w_in, w_out, config.spatial_dims) for w_in, w_out in zip(widths, widths[1:]))
            if len(widths) > 1
            else None
        )
        use_final_norm = config.norm_first and config.final_layer_norm
        self.norm = build_norm(config.norm_type, config.hidden_size, config.layer_norm_eps) if use_final_norm else None
        self.pooler = SpectralPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        if self.main_input_name == "pixel_values":  # as built: the config may have been changed since
            return self.embeddings.patch_embeddings
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        if self.main_input_name == "pixel_values":
            self.embeddings.patch_embeddings = value
        else:
            self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        pixel_values=None,
        interpolate_pos_encoding=False,
        condition_mask=None,
        bool_masked_pos=None,
        **packed_sequence_kwargs,
    ):
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids in `[0, vocab_size)`.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`): 1 for real tokens, 0 for
                padding. Padding is excluded from every mixer and from pooling.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): segment ids.
            position_ids (`torch.LongTensor` of shape `(batch_size or 1, sequence_length)`): defaults to `0..T-1`.
                Without an `attention_mask`, ids that restart (a next id that is not one more) mark sequences packed
                into a row, as transformers' `DataCollatorWithFlattening` writes them: each sequence is mixed on its
                own, as transformers' attention masks keep packed sequences apart (not under `torch.compile`, which
                cannot read the ids: pad such batches instead).
            inputs_embeds (`torch.Tensor` of shape `(batch_size, sequence_length, hidden_size)`): instead of
                `input_ids`.
            condition (`torch.Tensor`): input of the conditioning branch (`config.condition_type`): shape
                `(batch_size, condition_length, condition_size)` for `"cross_attention"`, or `(batch_size,
                *condition_grid, condition_size)` (e.g. an image's feature map, attended to as its flattened cells),
                `(batch_size, condition_size)` for `"adaln_zero"`. Required when the branch is on, rejected when it
                is off.
            condition_mask (`torch.Tensor` of shape `(batch_size, condition_length)` or `(batch_size,
                *condition_grid)`): for `"cross_attention"`, 1 for real condition tokens and 0 for padding, which no
                position attends to.
            output_hidden_states (`bool`): return the embeddings and the output of every block.
            output_attentions (`bool`): return the attention weights of the attention layers.
            pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): the input of image
                and volume models (configs with an `image_size`), instead of the token inputs.
            interpolate_pos_encoding (`bool`): accept images of another size than `config.image_size`: the
                position embeddings are resized (bicubic for images) to the new token grid, and a grid larger than
                the model's runs the spectral mixers at its own size, as `from_pretrained(path, image_size=...)` would.
            bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`): image models built with
                `use_mask_token`: True (or 1) for each patch (of the first token grid, flattened row-major) whose
                embedding the mask token replaces.
            packed_sequence_kwargs: FlashAttention's `cu_seq_lens_q`, `cu_seq_lens_k`, `max_length_q`, `max_length_k`
                and `seq_idx` (`DataCollatorWithFlattening`'s options), taken beside the `position_ids` of the same
                packed sequences, which are what the model reads; any other keyword raises a `TypeError`.

        Returns:
            `BaseModelOutputWithPooling` with `last_hidden_state` (B, T, D), `pooler_output` (B, D) (for S packed
            sequences one row each, (S, D)) and optionally `hidden_states` (num_hidden_layers + 1 tensors of shape
            (B, T, D)) and `attentions` (one (B, heads, T, T) tensor per attention layer of the layout, in layer
            order). Image models return a `SpectralImageModelOutput`: the token grid flattened row-major, as ViT,
            (B, N, D) with N = prod(grid) (in a hierarchical model each stage has its own N and D), and with
            `output_hidden_states` also `reshaped_hidden_states`, the hidden states on their grid (B, D, *grid) as
            Swin's.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        text_inputs = dict(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, position_ids=position_ids)
        check_packed_sequence_kwargs(self, packed_sequence_kwargs, position_ids)
        self._check_config_unchanged()
        validate_input_kind(self.config, pixel_values, text_inputs, interpolate_pos_encoding)
        if bool_masked_pos is not None and getattr(self.embeddings, "mask_token", None) is None:
            raise ValueError(
                "`bool_masked_pos` marks the patches that a mask token replaces, and this model has none: use "
                "XForMaskedImageModeling (or build the backbone with `use_mask_token=True`)"
                + ("." if self.config.is_vision else "; a text model masks tokens by their ids (XForMaskedLM).")
            )
        if self.config.is_vision:
            return self._forward_pixels(pixel_values, interpolate_pos_encoding, condition, condition_mask,
                                        output_hidden_states, output_attentions, return_dict, bool_masked_pos)
        batch_size = validate_text_inputs(
            self.config, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids
        )
        condition, condition_mask = validate_condition(self.config, condition, batch_size, condition_mask)
        if attention_mask is None and position_ids is not None and can_read_values():
            packing = packed_sequences(position_ids.expand(batch_size, -1))
            if packing is not None:
                return self._forward_packed(packing, batch_size, text_inputs, condition, condition_mask,
                                            output_hidden_states, output_attentions, return_dict)
        mask = None if attention_mask is None else attention_mask.bool()  # (B, T), True on real tokens
        # Left padding: move each row's first real token to position 0, so that the sequence meets positions,
        # mixers and pooler exactly as it would unpadded; the outputs are moved back at the end. Eager mode skips
        # the (identity) roll of batches without left padding; reading that back would split a compiled graph (or
        # fail in vmap).
        shift = None
        if mask is not None and (not can_read_values() or not bool(mask[:, 0].all())):
            shift = mask.int().argmax(dim=1)  # (B,)
            input_ids, inputs_embeds, token_type_ids, position_ids, mask = (
                None if t is None else roll_rows(t.expand(batch_size, *t.shape[1:]), shift)
                for t in (input_ids, inputs_embeds, token_type_ids, position_ids, mask)
            )

        # Padded embeddings are zeroed before anything reads them: the mixers and pooling leave padded positions out
        # of the outputs, but a NaN there would still reach the gradients of every weight (0 * NaN in the backward).
        inputs_embeds = None if inputs_embeds is None else real_tokens(inputs_embeds, mask)
        hidden_states = self.embeddings(
            input_ids=input_ids, inputs_embeds=inputs_embeds, token_type_ids=token_type_ids, position_ids=position_ids
        )
        hidden_states, all_hidden_states, all_attentions = self._encode(
            hidden_states, mask, condition, condition_mask, output_hidden_states, output_attentions
        )
        pooled = self.pooler(hidden_states, mask) if self.pooler is not None else None
        if shift is not None:
            hidden_states = roll_rows(hidden_states, -shift)
            if output_hidden_states:
                all_hidden_states = tuple(roll_rows(h, -shift) for h in all_hidden_states)
            if output_attentions:
                all_attentions = tuple(roll_attention(a, -shift) for a in all_attentions)

        output = BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()

    def _forward_packed(self, packing, batch_size, text_inputs, condition, condition_mask, output_hidden_states,
                        output_attentions, return_dict):
        """Sequences packed into rows (no attention mask, position ids that restart: `packed_sequences`) would mix
        with their neighbours in every spectral mixer, where transformers' attention masks keep them apart. They run
        as a right-padded batch of their own (S, L) instead; the token outputs are packed back into (B, T, ...),
        attention weights are zero between sequences, and `pooler_output` has one row per sequence (S, D)."""
        rows, index, mask = packing
        seq_length = text_inputs["position_ids"].shape[1]

        def unpack(tensor):  # (B or 1, T, ...) -> (S, L, ...)
            return None if tensor is None else tensor.expand(batch_size, *tensor.shape[1:]).flatten(0, 1)[index]

        def pack(tensor):  # (S, L, ...) -> (B, T, ...)
            return tensor[mask].view(batch_size, seq_length, *tensor.shape[2:])

        # each sequence's (row, first column, length) in the packed batch
        spans = list(zip(rows.tolist(), (index[:, 0] % seq_length).tolist(), mask.sum(1).tolist()))

        def pack_attention(weights):  # (S, heads, L, L) -> (B, heads, T, T)
            packed = weights.new_zeros(batch_size, weights.shape[1], seq_length, seq_length)
            for sequence, (row, start, length) in enumerate(spans):
                end = start + length
                packed[row, :, start:end, start:end] = weights[sequence, :, :length, :length]
            return packed

        inputs = {name: unpack(tensor) for name, tensor in text_inputs.items() if name != "attention_mask"}
        outputs = self.forward(
            **inputs,
            attention_mask=mask.long(),
            condition=None if condition is None else condition[rows],
            condition_mask=None if condition_mask is None else condition_mask[rows],
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        output = BaseModelOutputWithPooling(
            last_hidden_state=pack(outputs.last_hidden_state),
            pooler_output=outputs.pooler_output,
            hidden_states=None if outputs.hidden_states is None else tuple(map(pack, outputs.hidden_states)),
            attentions=None if outputs.attentions is None else tuple(map(pack_attention, outputs.attentions)),
        )
        return output if return_dict else output.to_tuple()

    def _check_config_unchanged(self):
        """The inputs are checked against the config; refuse a config whose vocabulary, length or any other field
        the built model keeps (`BUILT_FIELDS`: sizes, layout, condition branch, image geometry, norms, activations,
        residual wiring, pooling) was changed after the model was built (its layers stay as they were built: a
        condition given to a branch added afterwards was ignored, and a saved config would not describe the
        weights)."""
        built = dict(self.built_fields)
        depths, num_blocks = self.built_fields["depths"], self.built_fields["num_hidden_layers"]
        if depths is not None and len(self.layers) != num_blocks:
            # the stage boundaries (and downsamplings) are fixed when the model is built
            raise ValueError(
                f"This hierarchical model was built with {num_blocks} blocks in stages of depths {depths} and now "
                f"holds {len(self.layers)}: blocks cannot be removed from or added to its stages. Build a new model "
                "with the new `depths` and copy over the weights to keep."
            )
        entries = [getattr(layer, "layout_entry", None) for layer in self.layers]  # None: a block wrapped by a user
        if depths is None and None not in entries:
            # Without stages the blocks are the built layout: layers removed or reordered since (model surgery) are
            # saved as they are once the config says so, and refused until then.
            built.update(num_hidden_layers=len(self.layers), mixer_layout=entries)
        if self.built_fields["image_size"] is None:
            # a replaced or wrapped input embedding (set_input_embeddings, PEFT) may have no `num_embeddings`
            vocab_size = getattr(self.get_input_embeddings(), "num_embeddings", self.config.vocab_size)
            built.update(vocab_size=vocab_size, max_position_embeddings=self.stage_grid_shapes[0][0])
        current = {name: getattr(self.config, name) for name in built}
        if current["mixer_layout"] != built["mixer_layout"]:  # the compact or option-less form of the built one?
            current["mixer_layout"] = self.config.expanded_layout()
        # as saved only where they differ as given: this runs every forward
        changed = [
            name for name, size in built.items() if current[name] != size and as_saved(current[name]) != as_saved(size)
        ]
        if changed:
            held = {"vocab_size": "the input embeddings hold"}  # the size read off the embeddings, not the build
            described = ", ".join(
                f"{name}={getattr(self.config, name)} ({held.get(name, 'built with')} {built[name]})"
                for name in changed
            )
            resize = (
                "the image size with `resize_model_to_image_size`" if self.built_fields["image_size"] is not None else
                "the vocabulary with `resize_token_embeddings` (input embeddings replaced with `set_input_embeddings`: "
                "set `config.vocab_size` to their size)"
            )
            surgery = {"num_hidden_layers", "mixer_layout"} & set(changed)
            raise ValueError(
                f"The config no longer matches the built model: {described}. Build a new model from the changed "
                f"config, or change {resize}."
                + (" Where layers were removed, set `num_hidden_layers` (and `mixer_layout`) to the blocks kept."
                   if surgery else "")
            )

    def _encode(self, hidden_states, mask, condition, condition_mask, output_hidden_states, output_attentions):
        """Blocks (with the downsampling between the stages of a hierarchical model) and the final norm on
        channels-last `hidden_states: (B, *grid, D)`. Returns them with the per-layer hidden states (B, *grid, D)
        and the attention weights of the attention layers. A grid larger than a stage's built grid (an image
        larger than `image_size`) runs its spectral mixers at a larger FFT grid (`call_fft_shape`). An image model
        records each hidden state as a pair, (B, N, D) flattened row-major and (B, *grid, D) (see `_recorded`)."""
        all_hidden_states = None
        if output_hidden_states:  # computing on from what is recorded: its gradients are the model's
            hidden_states, all_hidden_states = self._recorded(hidden_states, ())
        all_attentions = () if output_attentions else None
        if condition is not None:  # a float32 condition for a bfloat16 model, as pixel_values are cast
            condition = condition.to(hidden_states.dtype)
        stage_grids = self.stage_grid_shapes
        fft_shape = call_fft_shape(hidden_states.shape[1:-1], stage_grids[0])
        for index, layer in enumerate(self.layers):
            if index in self.stage_starts[1:]:
                stage = self.stage_starts.index(index)
                hidden_states = self.downsamples[stage - 1](hidden_states)
                fft_shape = call_fft_shape(hidden_states.shape[1:-1], stage_grids[stage])
            hidden_states, attention = layer(
                hidden_states,
                mask,
                condition,
                output_attentions=output_attentions,
                attn_implementation=self.config._attn_implementation or "sdpa",
                fft_shape=fft_shape,
                condition_mask=condition_mask,
            )
            if output_hidden_states:
                hidden_states, all_hidden_states = self._recorded(hidden_states, all_hidden_states)
            if output_attentions and attention is not None:
                all_attentions += (attention,)
        if self.norm is not None:
            hidden_states = self.norm(hidden_states)
        return hidden_states, all_hidden_states, all_attentions

    def _recorded(self, hidden_states, recorded):
        """`recorded` with `hidden_states` (B, *grid, D) appended, and the tensor to compute on from. An image model
        appends (flat, grid): the grid flattened to (B, N, D) as ViT's, and its (B, *grid, D) view, from which the
        model computes on; the returned flat tensor is thus on the path to the outputs, and gradients with respect
        to it are the model's (for saliency and attribution), where a flattened copy made afterwards would get
        none."""
        if not self.config.is_vision:
            return hidden_states, (*recorded, hidden_states)
        flat = hidden_states.flatten(1, -2)
        grid = flat.unflatten(1, hidden_states.shape[1:-1])
        return grid, (*recorded, (flat, grid))

    def _forward_pixels(self, pixel_values, interpolate_pos_encoding, condition, condition_mask, output_hidden_states,
                        output_attentions, return_dict, bool_masked_pos=None):
        """The forward pass of image and volume models: patch embedding, then every stage on its token grid.

        With `interpolate_pos_encoding=True` an image of another size is accepted: the position embeddings are
        resized to its token grid; a smaller grid is zero-padded into the FFT grid of the mixers, a larger one runs
        them at its own grid (global filters resized, AFNO modes recounted), the same outputs as the model loaded
        with `from_pretrained(path, image_size=...)` at that size. A grid larger along one axis and smaller along
        another runs at the larger size of each axis (`call_fft_shape`): the short axis is zero-padded to the built
        size, so its outputs are not those of a model loaded at that image size.
        """
        if pixel_values is None:
            raise ValueError("This is an image model (its config has an image_size): pass `pixel_values`.")
        condition, condition_mask = validate_condition(self.config, condition, pixel_values.shape[0], condition_mask)
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding, bool_masked_pos)  # (B, *grid, D)
        hidden_states, recorded, all_attentions = self._encode(
            hidden_states, None, condition, condition_mask, output_hidden_states, output_attentions
        )
        # the pooler reads the returned (B, N, D) tensor, which is thereby on the path to the outputs
        last_hidden_state = hidden_states.flatten(1, -2)
        pooled = self.pooler(last_hidden_state) if self.pooler is not None else None
        all_hidden_states = reshaped_hidden_states = None
        if output_hidden_states:
            all_hidden_states = tuple(flat for flat, _ in recorded)  # (B, N, D) as ViT's
            reshaped_hidden_states = tuple(grid.movedim(-1, 1) for _, grid in recorded)  # (B, D, *grid) as Swin's
        output = SpectralImageModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            reshaped_hidden_states=reshaped_hidden_states,
        )
        return output if return_dict else output.to_tuple()


def loss_precision(tensor):
    """`tensor` in float32 or better for a loss: half-precision logits are upcast, float64 ones kept (a float64
    model, e.g. in a gradient check, gets a float64 loss)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _reduce(losses, num_items_in_batch, kept=None):
    """Mean of per-item losses (over the `kept` ones, a bool mask, where given, the others being 0), or their sum
    over `num_items_in_batch` when Trainer counts items across gradient accumulation steps and processes (so the loss
    is the same on 1 or N processes). A count of 0 (Trainer's for a batch whose labels are all ignored, such as an
    evaluation batch with no masked token; or no kept item) gives the sum, 0, where the division gave NaN and made
    the whole evaluation loss NaN."""
    if num_items_in_batch is None:
        return losses.mean() if kept is None else losses.sum() / kept.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        count = num_items_in_batch.to(losses.device)
        return losses.sum() / torch.where(count == 0, torch.ones_like(count), count)
    return losses.sum() / (num_items_in_batch or 1)


def regression_loss(predictions, targets, num_items_in_batch):
    """Mean squared error over the targets that are not -100, as the class losses ignore -100: Trainer counts the
    labels != -100 of a step as its items (`num_items_in_batch`), so a target of -100 counted in the sum but not in
    the count would inflate the loss. It also marks a missing value of a multi-output or per-pixel target."""
    kept = targets != -100
    losses = torch.where(kept, F.mse_loss(predictions, targets, reduction="none"), 0.0)
    return _reduce(losses, num_items_in_batch, kept)


def sequence_classification_loss(logits, labels, config, num_items_in_batch=None):
    """Loss by `config.problem_type`, inferred when unset (and then stored in the config), as transformers does but by
    shape for every integer dtype: one label -> regression (MSE); integer labels of shape (B,) or (B, 1) -> single-label
    (cross-entropy); otherwise, multi-hot labels of shape (B, num_labels) of any dtype included, multi-label (BCE with
    logits). Labels that do not fit raise a `ValueError` and leave the config as it was."""
    num_labels = logits.shape[-1]  # the built classifier's, even where `config.num_labels` was changed since
    problem_type = config.problem_type
    if problem_type not in PROBLEM_TYPES:  # assigned after the config was made: any other value would pass as BCE
        raise ValueError(f"`config.problem_type` must be one of {list(PROBLEM_TYPES)}, got {problem_type!r}.")
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif torch.is_tensor(labels) and is_integer_tensor(labels) and (labels.ndim == 1 or labels.shape[1:] == (1,)):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = validate_sequence_labels(labels, problem_type, logits.shape[0], num_labels)
    config.problem_type = problem_type
    labels = labels.to(logits.device)
    logits = loss_precision(logits)
    if problem_type == "regression":
        predictions = logits.squeeze(-1) if num_labels == 1 else logits
        targets = labels.to(predictions.dtype).reshape(predictions.shape)
        return regression_loss(predictions, targets, num_items_in_batch)
    if problem_type == "single_label_classification":
        return _cross_entropy(logits, labels, num_items_in_batch)
    losses = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return _reduce(losses, num_items_in_batch)


def token_classification_loss(logits, labels, num_items_in_batch=None):
    """Cross-entropy over (..., C) logits and (...) integer labels of any integer dtype; -100 marks ignored
    positions."""
    labels = validate_class_labels(labels, logits.shape[:-1], logits.shape[-1])  # as int64
    return _cross_entropy(logits, labels, num_items_in_batch)


def _cross_entropy(logits, labels, num_items_in_batch):
    """Mean cross-entropy of validated int64 `labels` (...) over (..., C) `logits`, -100 ignored. A batch whose labels
    are all ignored (an MLM batch with no masked token) has loss 0 with zero gradients, where the plain mean is NaN
    and would poison every weight through the optimizer."""
    logits = loss_precision(logits).reshape(-1, logits.shape[-1])
    labels = labels.to(logits.device).reshape(-1)
    losses = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")
    return _reduce(losses, num_items_in_batch, kept=labels != -100)


def classifier_dropout(config):
    """The dropout before a classifier: `classifier_dropout`, or `hidden_dropout_prob` when that is None (BERT's)."""
    rate = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return Dropout(rate)


class SpectralForSequenceClassification(SpectralPreTrainedModel):
    """Backbone + pooler + dropout + linear classifier. Regression, single-label and multi-label classification
    through `config.problem_type` (inferred from `num_labels` and the label dtype when unset)."""

    input_kind = "text"
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
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        num_items_in_batch=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`): class indices of any
            integer dtype (single-label), floats (regression; -100 = ignored) or multi-hot values in [0, 1]
            (multi-label).

        Returns `SequenceClassifierOutput` with `logits` (B, num_labels).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            condition=condition,
            condition_mask=condition_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config, num_items_in_batch)
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class SpectralForTokenClassification(SpectralPreTrainedModel):
    """Backbone (no pooler) + dropout + a linear classifier on every token."""

    input_kind = "text"
    backbone_class = SpectralModel

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        num_items_in_batch=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        labels (integer `torch.Tensor` of shape `(batch_size, sequence_length)`): class index per token, -100 to
            ignore; any integer dtype.

        Returns `TokenClassifierOutput` with `logits` (B, T, num_labels).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            condition=condition,
            condition_mask=condition_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else token_classification_loss(logits, labels, num_items_in_batch)
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class SpectralForQuestionAnswering(SpectralPreTrainedModel):
    """Backbone (no pooler) + a linear layer giving every token a start and an end score of the answer span
    (extractive question answering, as `BertForQuestionAnswering`)."""

    input_kind = "text"
    backbone_class = SpectralModel

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        # No bias: it would shift every token's start (end) score alike, which the softmax over the tokens ignores,
        # so its gradient is always 0 (BERT's never learns).
        self.qa_outputs = nn.Linear(config.hidden_size, 2, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        start_positions=None,
        end_positions=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        num_items_in_batch=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        start_positions, end_positions (integer `torch.Tensor` of shape `(batch_size,)`): the token indices of the
            answer's first and last token; both or neither. A position at or past the input's end (an answer cut off
            by truncation) or -100 is left out of the loss, as in transformers' question-answering heads.

        Returns `QuestionAnsweringModelOutput` with `start_logits` and `end_logits` (B, T); the loss is the mean of
        the start and end cross-entropies.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            condition=condition,
            condition_mask=condition_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T) each
        batch_size, seq_length = start_logits.shape
        start_positions, end_positions = validate_span_positions(start_positions, end_positions, batch_size,
                                                                 seq_length)
        loss = None
        if start_positions is not None:
            start_loss = _cross_entropy(start_logits, start_positions, num_items_in_batch)
            end_loss = _cross_entropy(end_logits, end_positions, num_items_in_batch)
            loss = (start_loss + end_loss) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class SpectralForMultipleChoice(SpectralPreTrainedModel):
    """Backbone + pooler + dropout + a linear score per choice: every (context, choice) pair of an example is one
    sequence, and the softmax over an example's choices picks one."""

    input_kind = "text"
    backbone_class = SpectralModel

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.backbone_class(config))
        self.dropout = classifier_dropout(config)
        # Not `classifier`: a sequence classifier's weights (num_labels logits) are no choice scorer, and load as
        # unexpected keys rather than as a size mismatch. No bias, as for the span scores above.
        self.choice_scorer = nn.Linear(config.hidden_size, 1, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        num_items_in_batch=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, num_choices, sequence_length)`): the token ids of every
            choice; `attention_mask`, `token_type_ids` and `position_ids` have the same shape, `inputs_embeds`
            `(batch_size, num_choices, sequence_length, hidden_size)`.
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, one per example (shapes as in
            `SpectralModel.forward`), shared by its choices.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        labels (integer `torch.Tensor` of shape `(batch_size,)`): the index of the right choice, -100 to ignore.

        Returns `MultipleChoiceModelOutput` with `logits` (B, num_choices); `hidden_states` and `attentions` are
        the backbone's over the B * num_choices sequences.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, num_choices, flat_inputs = flatten_choices(
            input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids
        )
        condition, condition_mask = validate_condition(self.config, condition, batch_size, condition_mask)
        if condition is not None:  # (B, ...) -> (B * num_choices, ...), each example's rows next to each other
            condition = condition.repeat_interleave(num_choices, dim=0)
            if condition_mask is not None:
                condition_mask = condition_mask.repeat_interleave(num_choices, dim=0)
        outputs = self.base_model(
            **flat_inputs,
            condition=condition,
            condition_mask=condition_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        pooled = outputs.pooler_output  # (B * num_choices, D)
        if pooled.shape[0] != batch_size * num_choices:
            raise ValueError(
                "Multiple choice needs one sequence per choice: `position_ids` that restart within a choice (packed "
                "sequences) are not supported here; pass an `attention_mask` and pad each choice instead."
            )
        logits = self.choice_scorer(self.dropout(pooled)).reshape(batch_size, num_choices)  # (B, num_choices)
        loss = None
        if labels is not None:
            labels = validate_class_labels(labels, (batch_size,), num_choices)
            loss = _cross_entropy(logits, labels, num_items_in_batch)
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class SpectralLMHead(nn.Module):
    """dense -> activation -> norm -> decoder to the vocabulary (weight tied to the input embeddings)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = hidden_activation(config.hidden_act)
        self.layer_norm = build_norm(config.norm_type, config.hidden_size, config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states):
        return self.decoder(self.layer_norm(self.act(self.dense(hidden_states))))


class SpectralForMaskedLM(SpectralPreTrainedModel):
    """Backbone (no pooler) + masked-LM head whose decoder shares the input embedding matrix.
    Subclasses set `_tied_weights_keys = {"lm_head.decoder.weight": "<prefix>.embeddings.word_embeddings.weight"}`."""

    input_kind = "text"
    backbone_class = SpectralModel
    # a pre-training checkpoint's pooler (a converted google/fnet-base keeps FNet's, for sequence heads) is not the
    # masked-LM head's to load
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)pooler\."]

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        self.lm_head = SpectralLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        condition=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
        num_items_in_batch=None,
        condition_mask=None,
        **kwargs,
    ):
        r"""
        condition (`torch.Tensor`, *optional*): input of the conditioning branch, see `SpectralModel.forward`.
        condition_mask (`torch.Tensor`, *optional*): its padding mask, see `SpectralModel.forward`.
        labels (integer `torch.Tensor` of shape `(batch_size, sequence_length)`): target token ids at masked
            positions, -100 elsewhere; any integer dtype.

        Returns `MaskedLMOutput` with `logits` (B, T, vocab_size).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            condition=condition,
            condition_mask=condition_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, vocab_size)
        loss = None if labels is None else token_classification_loss(logits, labels, num_items_in_batch)
        output = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()
