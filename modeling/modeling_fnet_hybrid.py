"""FNetHybrid models.

FNet (Lee-Thorp et al., NAACL 2022, https://arxiv.org/abs/2105.03824) with attention where it pays: Fourier
mixing in every layer but the last two, which use self-attention (the paper's hybrid).

The layers, block, backbone and heads are shared by every family (`modeling_spectral.py`); this file binds
them to `FNetHybridConfig`.
"""

from fourierformers.configuration.configuration_fnet_hybrid import FNetHybridConfig

from .modeling_spectral import (
    SpectralForMaskedLM,
    SpectralForMultipleChoice,
    SpectralForQuestionAnswering,
    SpectralForSequenceClassification,
    SpectralForTokenClassification,
    SpectralModel,
    SpectralPreTrainedModel,
)
from .modeling_spectral_image import (
    SpectralBackbone,
    SpectralForImageClassification,
    SpectralForMaskedImageModeling,
    SpectralForPatchRegression,
)


class FNetHybridPreTrainedModel(SpectralPreTrainedModel):
    config_class = FNetHybridConfig
    base_model_prefix = "fnet_hybrid"


class FNetHybridModel(FNetHybridPreTrainedModel, SpectralModel):
    """The bare FNetHybrid backbone returning `last_hidden_state` (B, T, D) and `pooler_output` (B, D); with an image
    config a `SpectralImageModelOutput` (the token grid flattened, (B, N, D), and `reshaped_hidden_states`)."""


class FNetHybridForSequenceClassification(FNetHybridPreTrainedModel, SpectralForSequenceClassification):
    """FNetHybrid with a pooled linear head for regression, single-label or multi-label classification."""

    backbone_class = FNetHybridModel


class FNetHybridForTokenClassification(FNetHybridPreTrainedModel, SpectralForTokenClassification):
    """FNetHybrid with a linear classifier on every token."""

    backbone_class = FNetHybridModel


class FNetHybridForQuestionAnswering(FNetHybridPreTrainedModel, SpectralForQuestionAnswering):
    """FNetHybrid with start and end scores on every token for extractive question answering."""

    backbone_class = FNetHybridModel


class FNetHybridForMultipleChoice(FNetHybridPreTrainedModel, SpectralForMultipleChoice):
    """FNetHybrid scoring each choice's pooled sequence; the softmax over an example's choices picks one."""

    backbone_class = FNetHybridModel


class FNetHybridForMaskedLM(FNetHybridPreTrainedModel, SpectralForMaskedLM):
    """FNetHybrid with a masked-LM head tied to the input embeddings."""

    backbone_class = FNetHybridModel
    _tied_weights_keys = {"lm_head.decoder.weight": "fnet_hybrid.embeddings.word_embeddings.weight"}


class FNetHybridForImageClassification(FNetHybridPreTrainedModel, SpectralForImageClassification):
    """FNet-hybrid on images or volumes: the final token grid pooled by `config.pooling` -> linear classifier."""

    backbone_class = FNetHybridModel


class FNetHybridForPatchRegression(FNetHybridPreTrainedModel, SpectralForPatchRegression):
    """FNet-hybrid predicting a value per pixel and output channel from every patch token (FourCastNet's head)."""

    backbone_class = FNetHybridModel


class FNetHybridForMaskedImageModeling(FNetHybridPreTrainedModel, SpectralForMaskedImageModeling):
    """FNet-hybrid pre-trained on images by masked image modelling (SimMIM): masked patches' pixels predicted from the
    tokens."""

    backbone_class = FNetHybridModel


class FNetHybridBackbone(FNetHybridPreTrainedModel, SpectralBackbone):
    """FNet-hybrid feature maps for `AutoBackbone` (UperNet and other dense-prediction models): the outputs of the
    stages of `config.out_features`, (B, width, *grid) each."""

    backbone_class = FNetHybridModel
