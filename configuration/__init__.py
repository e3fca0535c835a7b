from .configuration_afno import AFNOConfig
from .configuration_fnet_hybrid import FNetHybridConfig
from .configuration_gfnet import GFNetConfig
from .configuration_spectral import MIXER_TYPES, SpectralConfig

__all__ = ["AFNOConfig", "FNetHybridConfig", "GFNetConfig", "MIXER_TYPES", "SpectralConfig"]
