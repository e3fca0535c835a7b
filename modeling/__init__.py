"""fourierformers: GFNet, AFNO and FNet-hybrid, attention-free spectral encoders for the Hugging Face ecosystem.

This folder is the top of the import package `fourierformers` (see pyproject.toml); the configs live in
`fourierformers.configuration`. Importing the package registers every family with the transformers Auto classes.
"""

from importlib.metadata import PackageNotFoundError, version

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageToImage,
    AutoModelForMaskedImageModeling,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration import MIXER_TYPES, AFNOConfig, FNetHybridConfig, GFNetConfig, SpectralConfig
from .condition_layers import AdaLNZero, CrossAttention
from .hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer
from .modeling_afno import (
    AFNOBackbone,
    AFNOForImageClassification,
    AFNOForMaskedImageModeling,
    AFNOForMaskedLM,
    AFNOForMultipleChoice,
    AFNOForPatchRegression,
    AFNOForQuestionAnswering,
    AFNOForSequenceClassification,
    AFNOForTokenClassification,
    AFNOModel,
    AFNOPreTrainedModel,
)
from .modeling_fnet_hybrid import (
    FNetHybridBackbone,
    FNetHybridForImageClassification,
    FNetHybridForMaskedImageModeling,
    FNetHybridForMaskedLM,
    FNetHybridForMultipleChoice,
    FNetHybridForPatchRegression,
    FNetHybridForQuestionAnswering,
    FNetHybridForSequenceClassification,
    FNetHybridForTokenClassification,
    FNetHybridModel,
    FNetHybridPreTrainedModel,
)
from .modeling_gfnet import (
    GFNetBackbone,
    GFNetForImageClassification,
    GFNetForMaskedImageModeling,
    GFNetForMaskedLM,
    GFNetForMultipleChoice,
    GFNetForPatchRegression,
    GFNetForQuestionAnswering,
    GFNetForSequenceClassification,
    GFNetForTokenClassification,
    GFNetModel,
    GFNetPreTrainedModel,
)
from .modeling_spectral import SpectralBlock, SpectralPreTrainedModel
from .spectral_layers import AFNOMixer, FourierMixer, GlobalFilter, SelfAttention
from .weight_decay import SpectralTrainer, no_weight_decay_parameter_names, optimizer_param_groups

# AutoModelForImageToImage serves the dense per-pixel heads (patch regression, FourCastNet); no pipeline uses them.
# AutoModelForMaskedImageModeling builds the SimMIM pre-training heads (no pipeline uses them either); AutoBackbone
# gives dense-prediction models (UperNet, ...) the feature maps of an image config's stages.
AUTO_CLASSES = {
    AFNOConfig: {
        AutoModel: AFNOModel,
        AutoModelForSequenceClassification: AFNOForSequenceClassification,
        AutoModelForTokenClassification: AFNOForTokenClassification,
        AutoModelForMaskedLM: AFNOForMaskedLM,
        AutoModelForQuestionAnswering: AFNOForQuestionAnswering,
        AutoModelForMultipleChoice: AFNOForMultipleChoice,
        AutoModelForImageClassification: AFNOForImageClassification,
        AutoModelForImageToImage: AFNOForPatchRegression,
        AutoModelForMaskedImageModeling: AFNOForMaskedImageModeling,
        AutoBackbone: AFNOBackbone,
    },
    FNetHybridConfig: {
        AutoModel: FNetHybridModel,
        AutoModelForSequenceClassification: FNetHybridForSequenceClassification,
        AutoModelForTokenClassification: FNetHybridForTokenClassification,
        AutoModelForMaskedLM: FNetHybridForMaskedLM,
        AutoModelForQuestionAnswering: FNetHybridForQuestionAnswering,
        AutoModelForMultipleChoice: FNetHybridForMultipleChoice,
        AutoModelForImageClassification: FNetHybridForImageClassification,
        AutoModelForImageToImage: FNetHybridForPatchRegression,
        AutoModelForMaskedImageModeling: FNetHybridForMaskedImageModeling,
        AutoBackbone: FNetHybridBackbone,
    },
    GFNetConfig: {
        AutoModel: GFNetModel,
        AutoModelForSequenceClassification: GFNetForSequenceClassification,
        AutoModelForTokenClassification: GFNetForTokenClassification,
        AutoModelForMaskedLM: GFNetForMaskedLM,
        AutoModelForQuestionAnswering: GFNetForQuestionAnswering,
        AutoModelForMultipleChoice: GFNetForMultipleChoice,
        AutoModelForImageClassification: GFNetForImageClassification,
        AutoModelForImageToImage: GFNetForPatchRegression,
        AutoModelForMaskedImageModeling: GFNetForMaskedImageModeling,
        AutoBackbone: GFNetBackbone,
    },
}

for config_class, models in AUTO_CLASSES.items():
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    config_class.register_for_auto_class()
    for auto_class, model_class in models.items():
        auto_class.register(config_class, model_class, exist_ok=True)
        # Saved checkpoints then carry `auto_map` and our source files (see `portable_checkpoint.py`).
        model_class.register_for_auto_class(auto_class.__name__)

try:
    __version__ = version("fourierformers")
except PackageNotFoundError:
    __version__ = "0.0.0"

__all__ = [
    "AFNOBackbone",
    "AFNOConfig",
    "AFNOForImageClassification",
    "AFNOForMaskedImageModeling",
    "AFNOForMaskedLM",
    "AFNOForMultipleChoice",
    "AFNOForPatchRegression",
    "AFNOForQuestionAnswering",
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
    "FNetHybridBackbone",
    "FNetHybridConfig",
    "FNetHybridForImageClassification",
    "FNetHybridForMaskedImageModeling",
    "FNetHybridForMaskedLM",
    "FNetHybridForMultipleChoice",
    "FNetHybridForPatchRegression",
    "FNetHybridForQuestionAnswering",
    "FNetHybridForSequenceClassification",
    "FNetHybridForTokenClassification",
    "FNetHybridModel",
    "FNetHybridPreTrainedModel",
    "FourierMixer",
    "GFNetBackbone",
    "GFNetConfig",
    "GFNetForImageClassification",
    "GFNetForMaskedImageModeling",
    "GFNetForMaskedLM",
    "GFNetForMultipleChoice",
    "GFNetForPatchRegression",
    "GFNetForQuestionAnswering",
    "GFNetForSequenceClassification",
    "GFNetForTokenClassification",
    "GFNetModel",
    "GFNetPreTrainedModel",
    "GlobalFilter",
    "MIXER_TYPES",
    "MultiscaleMixer",
    "SelfAttention",
    "SpectralBlock",
    "SpectralConfig",
    "SpectralPreTrainedModel",
    "SpectralTrainer",
    "no_weight_decay_parameter_names",
    "optimizer_param_groups",
]
