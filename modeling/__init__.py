"""Models of every family, registered with the transformers Auto classes on import."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from fourierformers.configuration import AFNOConfig, FNetHybridConfig, GFNetConfig

from .modeling_afno import (
    AFNOForMaskedLM,
    AFNOForSequenceClassification,
    AFNOForTokenClassification,
    AFNOModel,
    AFNOPreTrainedModel,
)
from .modeling_fnet_hybrid import (
    FNetHybridForMaskedLM,
    FNetHybridForSequenceClassification,
    FNetHybridForTokenClassification,
    FNetHybridModel,
    FNetHybridPreTrainedModel,
)
from .modeling_gfnet import (
    GFNetForMaskedLM,
    GFNetForSequenceClassification,
    GFNetForTokenClassification,
    GFNetModel,
    GFNetPreTrainedModel,
)
from .modeling_spectral import SpectralBlock, SpectralModelOutput, SpectralPreTrainedModel
from .condition_layers import AdaLNZero, CrossAttention
from .hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer
from .spectral_layers import AFNOMixer, FourierMixer, GlobalFilter, SelfAttention
from .weight_decay import SpectralTrainer, no_weight_decay_parameter_names, optimizer_param_groups

AUTO_CLASSES = {
    AFNOConfig: {
        AutoModel: AFNOModel,
        AutoModelForSequenceClassification: AFNOForSequenceClassification,
        AutoModelForTokenClassification: AFNOForTokenClassification,
        AutoModelForMaskedLM: AFNOForMaskedLM,
    },
    FNetHybridConfig: {
        AutoModel: FNetHybridModel,
        AutoModelForSequenceClassification: FNetHybridForSequenceClassification,
        AutoModelForTokenClassification: FNetHybridForTokenClassification,
        AutoModelForMaskedLM: FNetHybridForMaskedLM,
    },
    GFNetConfig: {
        AutoModel: GFNetModel,
        AutoModelForSequenceClassification: GFNetForSequenceClassification,
        AutoModelForTokenClassification: GFNetForTokenClassification,
        AutoModelForMaskedLM: GFNetForMaskedLM,
    },
}

for config_class, models in AUTO_CLASSES.items():
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_class, model_class in models.items():
        auto_class.register(config_class, model_class, exist_ok=True)

__all__ = [
    "AFNOForMaskedLM",
    "AFNOForSequenceClassification",
    "AFNOForTokenClassification",
    "AFNOMixer",
    "AFNOModel",
    "AFNOPreTrainedModel",
    "AUTO_CLASSES",
    "AdaLNZero",
    "AdaptiveMixer",
    "CascadeMixer",
    "CrossAttention",
    "FNetHybridForMaskedLM",
    "FNetHybridForSequenceClassification",
    "FNetHybridForTokenClassification",
    "FNetHybridModel",
    "FNetHybridPreTrainedModel",
    "FourierMixer",
    "GFNetForMaskedLM",
    "GFNetForSequenceClassification",
    "GFNetForTokenClassification",
    "GFNetModel",
    "GFNetPreTrainedModel",
    "GlobalFilter",
    "MultiscaleMixer",
    "SelfAttention",
    "SpectralBlock",
    "SpectralModelOutput",
    "SpectralPreTrainedModel",
    "SpectralTrainer",
    "no_weight_decay_parameter_names",
    "optimizer_param_groups",
]
