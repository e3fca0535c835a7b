from .configuration_afno import AFNOConfig
from .configuration_fnet_hybrid import FNetHybridConfig
from .configuration_gfnet import GFNetConfig
from .configuration_spectral import SpectralConfig
from .mixer_layout import MIXER_TYPES

__all__ = ["AFNOConfig", "FNetHybridConfig", "GFNetConfig", "MIXER_TYPES", "SpectralConfig"]
