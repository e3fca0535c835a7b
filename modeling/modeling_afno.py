"""AFNO models.

Adaptive Fourier Neural Operators (Guibas et al., ICLR 2022, https://arxiv.org/abs/2111.13587;
code https://github.com/NVlabs/AFNO-transformer): every layer applies a block-diagonal complex MLP to the
spectrum, soft-shrinks it and transforms back.

The layers, block, backbone and heads are shared by every family (`modeling_spectral.py`); this file binds
them to `AFNOConfig`.
"""

from fourierformers.configuration.configuration_afno import AFNOConfig

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


class AFNOPreTrainedModel(SpectralPreTrainedModel):
    config_class = AFNOConfig
    base_model_prefix = "afno"


class AFNOModel(AFNOPreTrainedModel, SpectralModel):
    """The bare AFNO backbone returning `last_hidden_state` (B, T, D) and `pooler_output` (B, D); with an image
    config a `SpectralImageModelOutput` (the token grid flattened, (B, N, D), and `reshaped_hidden_states`)."""


class AFNOForSequenceClassification(AFNOPreTrainedModel, SpectralForSequenceClassification):
    """AFNO with a pooled linear head for regression, single-label or multi-label classification."""

    backbone_class = AFNOModel


class AFNOForTokenClassification(AFNOPreTrainedModel, SpectralForTokenClassification):
    """AFNO with a linear classifier on every token."""

    backbone_class = AFNOModel


class AFNOForQuestionAnswering(AFNOPreTrainedModel, SpectralForQuestionAnswering):
    """AFNO with start and end scores on every token for extractive question answering."""

    backbone_class = AFNOModel


class AFNOForMultipleChoice(AFNOPreTrainedModel, SpectralForMultipleChoice):
    """AFNO scoring each choice's pooled sequence; the softmax over an example's choices picks one."""

    backbone_class = AFNOModel


class AFNOForMaskedLM(AFNOPreTrainedModel, SpectralForMaskedLM):
    """AFNO with a masked-LM head tied to the input embeddings."""

    backbone_class = AFNOModel
    _tied_weights_keys = {"lm_head.decoder.weight": "afno.embeddings.word_embeddings.weight"}


class AFNOForImageClassification(AFNOPreTrainedModel, SpectralForImageClassification):
    """AFNO on images or volumes: the final token grid pooled by `config.pooling` -> linear classifier."""

    backbone_class = AFNOModel


class AFNOForPatchRegression(AFNOPreTrainedModel, SpectralForPatchRegression):
    """AFNO predicting a value per pixel and output channel from every patch token (FourCastNet's head)."""

    backbone_class = AFNOModel


class AFNOForMaskedImageModeling(AFNOPreTrainedModel, SpectralForMaskedImageModeling):
    """AFNO pre-trained on images by masked image modelling (SimMIM): masked patches' pixels predicted from the
    tokens."""

    backbone_class = AFNOModel


class AFNOBackbone(AFNOPreTrainedModel, SpectralBackbone):
    """AFNO feature maps for `AutoBackbone` (UperNet and other dense-prediction models): the outputs of the stages of
    `config.out_features`, (B, width, *grid) each."""

    backbone_class = AFNOModel
