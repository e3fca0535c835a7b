"""Shared configuration of the fourierformers families (GFNet, AFNO, FNet-hybrid).

Every family has the same embeddings, blocks and heads; what differs is the token mixer of each layer
(`mixer_layout`) and a few defaults. This base class holds every field, validates combinations, and is
subclassed by `GFNetConfig`, `AFNOConfig` and `FNetHybridConfig`, which only set `model_type` and defaults.
"""

from typing import ClassVar

from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from .mixer_layout import MIXER_TYPES, expand_mixer_layout, validate_mixer_layout

CONDITION_TYPES = (None, "cross_attention", "adaln_zero")
POSITION_EMBEDDING_TYPES = ("absolute", "sinusoidal", "none")
POOLING_TYPES = ("cls", "mean")
FILTER_ACTIVATIONS = ("identity", "sigmoid", "tanh")
FFT_NORMS = ("backward", "ortho", "forward")


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def _check_probability(name, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")


class SpectralConfig(PretrainedConfig):
    r"""
    Configuration shared by every fourierformers family. Instantiate a family config (`GFNetConfig`,
    `AFNOConfig`, `FNetHybridConfig`) rather than this class.

    Args:
        vocab_size (`int`): Number of token ids.
        hidden_size (`int`): Width D of the channels-last hidden states `(B, *grid, D)`.
        num_hidden_layers (`int`): Number of blocks.
        intermediate_size (`int`): Width of the MLP in each block.
        hidden_act (`str`): MLP activation, any key of `transformers.activations.ACT2FN`.
        hidden_dropout_prob (`float`): Dropout on embeddings and on the output of every block branch.
        drop_path_rate (`float`): Stochastic depth rate of the last block, growing linearly from 0 at the first.
        classifier_dropout (`float`, *optional*): Dropout before the classifier; `hidden_dropout_prob` if unset.
        max_position_embeddings (`int`): Longest sequence. It is also the fixed FFT length of the spectral mixers,
            which is what makes a sequence's outputs independent of the padding of its batch.
        position_embedding_type (`str`): `"absolute"` (learned), `"sinusoidal"` (fixed) or `"none"`.
        type_vocab_size (`int`): Number of token type ids; 0 disables token type embeddings.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        norm_first (`bool`): Pre-norm blocks (`True`, with a final LayerNorm) or post-norm blocks (`False`, as BERT
            and FNet).
        mixer_residual (`bool`): Whether the mixer branch has its own residual. The original GFNet and AFNO use a
            single residual around mixer and MLP together (`False`); only valid with `norm_first=True`.
        layer_scale_init_value (`float`, *optional*): Enables LayerScale with this initial value.
        embedding_layer_norm (`bool`): LayerNorm after summing the embeddings.
        embedding_projection (`bool`): Linear projection after the embedding LayerNorm (as in FNet).
        initializer_range (`float`): Std of the normal initialisation of linear and embedding weights.
        pooling (`str`): `"cls"` (first token) or `"mean"` (average over real, unpadded tokens).
        pooler_projection (`bool`): Dense + tanh on the pooled vector (BERT / FNet pooler).
        mixer_layout (`list`, *optional*): The token mixer of each layer: a name (`"fourier"`, `"global_filter"`,
            `"afno"`, `"attention"`, `"none"`) or a hybrid-strategy dict (`adaptive`, `multiscale`, `cascade`); a
            dict `{"pattern": [...]}` is repeated to `num_hidden_layers` entries. See `configuration/mixer_layout.py`.
            Defaults to the family's layout.
        fourier_norm (`str`): FFT normalisation of the `fourier` mixer (`"backward"` is FNet's unnormalised DFT).
        filter_activation (`str`): Parameterisation of the global filter K = f(W_r) + i f(W_i), f one of
            `"identity"` (original GFNet), `"sigmoid"`, `"tanh"`.
        afno_num_blocks (`int`): Number of diagonal blocks of the AFNO channel MLP; must divide `hidden_size`.
        afno_hidden_size_factor (`int`): Width multiplier of the AFNO block MLP.
        afno_sparsity_threshold (`float`): Soft-shrink threshold on the AFNO spectrum.
        afno_num_modes (`int`, *optional*): Keep only frequencies with |f| < `afno_num_modes` along the sequence;
            all frequencies when unset.
        num_attention_heads (`int`): Heads of the `attention` mixer; must divide `hidden_size`.
        attention_probs_dropout_prob (`float`): Dropout on attention probabilities.
        condition_type (`str`, *optional*): A conditioning branch in every block between mixer and MLP:
            `"cross_attention"` to a `condition` of shape (B, M, condition_size), or `"adaln_zero"` modulation from a
            pooled `condition` of shape (B, condition_size). `None` (default): no branch, no parameters.
        condition_size (`int`, *optional*): Channels of the condition; `hidden_size` if unset.
    """

    model_type = "spectral"
    default_mixer: ClassVar[str] = "none"

    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    drop_path_rate: float | int = 0.0
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 512
    position_embedding_type: str = "absolute"
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
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
    afno_num_modes: int | None = None
    num_attention_heads: int = 4
    attention_probs_dropout_prob: float | int = 0.1
    condition_type: str | None = None
    condition_size: int | None = None
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.mixer_layout is None:
            self.mixer_layout = self.default_layout(self.num_hidden_layers)
        self.mixer_layout = expand_mixer_layout(self.mixer_layout, self.num_hidden_layers)
        super().__post_init__(**kwargs)
        self.validate_architecture()

    @classmethod
    def default_layout(cls, num_hidden_layers):
        """The family's mixer per layer when `mixer_layout` is not given."""
        return [cls.default_mixer] * num_hidden_layers

    def validate_architecture(self):
        """Raise `ValueError` naming the field and its allowed values for any invalid setting or combination.
        Runs at the end of `__post_init__`, so every config that exists is valid."""
        super().validate_architecture()
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ValueError(f"`type_vocab_size` must be an integer >= 0, got {self.type_vocab_size!r}.")
        _check_choice("hidden_act", self.hidden_act, sorted(ACT2FN))
        _check_choice("position_embedding_type", self.position_embedding_type, POSITION_EMBEDDING_TYPES)
        _check_choice("pooling", self.pooling, POOLING_TYPES)
        _check_choice("fourier_norm", self.fourier_norm, FFT_NORMS)
        _check_choice("filter_activation", self.filter_activation, FILTER_ACTIVATIONS)
        for name in ("hidden_dropout_prob", "drop_path_rate", "attention_probs_dropout_prob"):
            _check_probability(name, getattr(self, name))
        if self.classifier_dropout is not None:
            _check_probability("classifier_dropout", self.classifier_dropout)
        if not self.mixer_residual and not self.norm_first:
            raise ValueError(
                "`mixer_residual=False` (one residual around mixer and MLP, as the original GFNet and AFNO) "
                "requires `norm_first=True`; allowed: norm_first=True with mixer_residual True or False, "
                "or norm_first=False with mixer_residual=True."
            )
        mixers_used = validate_mixer_layout(self.mixer_layout, self.num_hidden_layers)
        _check_choice("condition_type", self.condition_type, CONDITION_TYPES)
        if self.condition_size is not None and (not isinstance(self.condition_size, int) or self.condition_size < 1):
            raise ValueError(f"`condition_size` must be a positive integer or None, got {self.condition_size!r}.")
        if "afno" in mixers_used:
            if self.afno_num_blocks < 1 or self.hidden_size % self.afno_num_blocks:
                raise ValueError(
                    f"`afno_num_blocks` ({self.afno_num_blocks}) must be a positive divisor of `hidden_size` "
                    f"({self.hidden_size})."
                )
            if self.afno_hidden_size_factor < 1:
                raise ValueError(f"`afno_hidden_size_factor` must be >= 1, got {self.afno_hidden_size_factor}.")
            if self.afno_sparsity_threshold < 0:
                raise ValueError(f"`afno_sparsity_threshold` must be >= 0, got {self.afno_sparsity_threshold}.")
            num_frequencies = self.max_position_embeddings // 2 + 1
            if self.afno_num_modes is not None and not 1 <= self.afno_num_modes <= num_frequencies:
                raise ValueError(
                    f"`afno_num_modes` must be between 1 and max_position_embeddings // 2 + 1 = {num_frequencies} "
                    f"(or None to keep every frequency), got {self.afno_num_modes}."
                )
        if ("attention" in mixers_used or self.condition_type == "cross_attention") and (
            self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads
        ):
            raise ValueError(
                f"`num_attention_heads` ({self.num_attention_heads}) must be a positive divisor of `hidden_size` "
                f"({self.hidden_size})."
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size}).")
