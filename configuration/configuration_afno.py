"""AFNO configuration.

Adaptive Fourier Neural Operators (Guibas et al., ICLR 2022, https://arxiv.org/abs/2111.13587, code
https://github.com/NVlabs/AFNO-transformer): every layer applies a block-diagonal complex MLP, shared across
frequencies, to the (optionally truncated) spectrum, soft-shrinks it and transforms back.
"""

from typing import ClassVar

from .configuration_spectral import SpectralConfig


class AFNOConfig(SpectralConfig):
    r"""
    Configuration of an AFNO model: an `afno` mixer in every layer unless `mixer_layout` says otherwise.
    The AFNO-specific fields are `afno_num_blocks`, `afno_hidden_size_factor`, `afno_sparsity_threshold`,
    `afno_activation`, `afno_dropout` and `afno_num_modes` or `afno_kept_modes`; all fields are documented on
    [`SpectralConfig`].

    Example:

    ```python
    >>> from fourierformers import AFNOConfig, AFNOForSequenceClassification
    >>> config = AFNOConfig(hidden_size=128, num_hidden_layers=2, afno_num_blocks=4, num_labels=3)
    >>> model = AFNOForSequenceClassification(config)
    ```
    """

    model_type = "afno"
    default_mixer: ClassVar[str] = "afno"
