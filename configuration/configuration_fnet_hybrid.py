"""FNet-hybrid configuration.

FNet (Lee-Thorp et al., NAACL 2022, https://arxiv.org/abs/2105.03824) mixes tokens with the real part of a 2-D
DFT over sequence and channels. The paper's best speed/accuracy trade-off replaces the mixer of the last two layers
with self-attention; that hybrid is the default layout here. The other defaults follow FNet (post-norm,
`gelu_new`, embedding projection, first-token pooler with tanh, unnormalised DFT), so a transformers FNet
checkpoint maps onto this model exactly. FNet checkpoints are text only; image models (an `image_size`) default to
the orthonormal DFT and no pooler projection instead, see `FNetHybridConfig`.
"""

from typing import ClassVar

from .configuration_spectral import SpectralConfig


class FNetHybridConfig(SpectralConfig):
    r"""
    Configuration of an FNet-hybrid model. By default every layer uses the parameter-free `fourier` mixer except the
    last two, which use `attention` (fewer than three layers: only the last one). All fields are documented on
    [`SpectralConfig`].

    `fourier_norm` and `pooler_projection` left unset (None) follow the kind of model. Text: FNet's unnormalised
    DFT (`"backward"`) and dense + tanh pooler, so that transformers FNet checkpoints map exactly. Images: `"ortho"`
    and no projection. Where `image_size` is assigned afterwards (or given to `from_pretrained`) and changes the
    kind, those still at the old kind's defaults take the new kind's, as a depth assigned afterwards brings the
    default layout along. An unnormalised DFT over a whole H x W grid and D channels scales the mixer output by about
    sqrt(H W D / 2) (45x measured on 8x8 digits at width 64), so the post-norm `LayerNorm(x + mixer(x))` all but
    drops the residual x; and the tanh pooler on the mean of post-norm tokens trains poorly from scratch (see the
    README's example results).

    Example:

    ```python
    >>> from fourierformers import FNetHybridConfig, FNetHybridForMaskedLM
    >>> config = FNetHybridConfig(hidden_size=128, num_hidden_layers=4, num_attention_heads=4)
    >>> config.mixer_layout
    ['fourier', 'fourier', 'attention', 'attention']
    >>> model = FNetHybridForMaskedLM(config)
    ```
    """

    model_type = "fnet_hybrid"
    default_mixer: ClassVar[str] = "fourier"

    hidden_act: str = "gelu_new"
    norm_first: bool = False
    embedding_projection: bool = True
    pooling: str = "cls"
    pooler_projection: bool | None = None
    fourier_norm: str | None = None

    def __post_init__(self, **kwargs):
        for name, default in kind_defaults(self.image_size is not None).items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        super().__post_init__(**kwargs)

    def __setattr__(self, name, value):
        # While the dataclass __init__ runs, `image_size` is set for the first time and __post_init__ resolves; a
        # None assigned afterwards (or given to `from_pretrained`) is the kind's default, as in the constructor.
        kind_default = kind_defaults(self.__dict__.get("image_size") is not None).get(name)
        if value is None and kind_default is not None and name in self.__dict__:
            value = kind_default
        if name == "image_size" and "image_size" in self.__dict__:
            for field, default in defaults_of_new_kind(self.__dict__, value).items():
                super().__setattr__(field, default)
        super().__setattr__(name, value)

    def update(self, config_dict):
        """`PretrainedConfig.update`, with `image_size` assigned first: the kind's defaults it brings along (see
        `__setattr__`) then give way to the values given with it, whatever their order in `config_dict`."""
        if "image_size" in config_dict:
            config_dict = {"image_size": config_dict["image_size"], **config_dict}
        super().update(config_dict)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As `SpectralConfig.from_dict`; an `image_size` keyword that changes the kind of model brings the kind's
        defaults along where the saved values are the old kind's (explicit keywords win)."""
        if "image_size" in kwargs:
            kwargs = {**defaults_of_new_kind(config_dict, kwargs["image_size"]), **kwargs}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def default_layout(cls, num_hidden_layers):
        num_attention_layers = 2 if num_hidden_layers > 2 else 1
        return ["fourier"] * (num_hidden_layers - num_attention_layers) + ["attention"] * num_attention_layers


def kind_defaults(is_vision):
    """The `fourier_norm` and `pooler_projection` of a text model (FNet's) or an image model."""
    return {"fourier_norm": "ortho" if is_vision else "backward", "pooler_projection": not is_vision}


def defaults_of_new_kind(values, new_image_size):
    """The fields of `values` (a config's fields) to change when its `image_size` becomes `new_image_size`: where that
    changes the kind of model (text <-> image), those at the old kind's defaults take the new kind's."""
    was_vision, is_vision = values.get("image_size") is not None, new_image_size is not None
    if was_vision == is_vision:
        return {}
    old, new = kind_defaults(was_vision), kind_defaults(is_vision)
    return {name: new[name] for name in old if values.get(name) == old[name]}
