"""GFNet configuration.

Global Filter Networks (Rao et al., NeurIPS 2021, https://arxiv.org/abs/2107.00645, code
https://github.com/raoyongming/GFNet): every layer mixes tokens with a learnable global filter,
`irfft(rfft(x) * K)`, a circular convolution as wide as the FFT.
"""

from typing import ClassVar

from .configuration_spectral import SpectralConfig


class GFNetConfig(SpectralConfig):
    r"""
    Configuration of a GFNet model: a `global_filter` mixer in every layer unless `mixer_layout` says otherwise.
    All fields are documented on [`SpectralConfig`].

    Example:

    ```python
    >>> from fourierformers import GFNetConfig, GFNetModel
    >>> config = GFNetConfig(hidden_size=128, num_hidden_layers=2, filter_activation="sigmoid")
    >>> model = GFNetModel(config)
    ```
    """

    model_type = "gfnet"
    default_mixer: ClassVar[str] = "global_filter"
