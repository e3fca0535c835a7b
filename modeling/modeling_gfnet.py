"""GFNet models.

Global Filter Networks (Rao et al., NeurIPS 2021, https://arxiv.org/abs/2107.00645;
code https://github.com/raoyongming/GFNet): every layer mixes tokens with a learnable global filter,
`irfft(rfft(x) * K)`.

The layers, block, backbone and heads are shared by every family (`modeling_spectral.py`); this file binds
them to `GFNetConfig`.
"""

from fourierformers.configuration.configuration_gfnet import GFNetConfig

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


class GFNetPreTrainedModel(SpectralPreTrainedModel):
    config_class = GFNetConfig
    base_model_prefix = "gfnet"


class GFNetModel(GFNetPreTrainedModel, SpectralModel):
    """The bare GFNet backbone returning `last_hidden_state` (B, T, D) and `pooler_output` (B, D); with an image
    config a `SpectralImageModelOutput` (the token grid flattened, (B, N, D), and `reshaped_hidden_states`)."""


class GFNetForSequenceClassification(GFNetPreTrainedModel, SpectralForSequenceClassification):
    """GFNet with a pooled linear head for regression, single-label or multi-label classification."""

    backbone_class = GFNetModel


class GFNetForTokenClassification(GFNetPreTrainedModel, SpectralForTokenClassification):
    """GFNet with a linear classifier on every token."""

    backbone_class = GFNetModel


class GFNetForQuestionAnswering(GFNetPreTrainedModel, SpectralForQuestionAnswering):
    """GFNet with start and end scores on every token for extractive question answering."""

    backbone_class = GFNetModel


class GFNetForMultipleChoice(GFNetPreTrainedModel, SpectralForMultipleChoice):
    """GFNet scoring each choice's pooled sequence; the softmax over an example's choices picks one."""

    backbone_class = GFNetModel


class GFNetForMaskedLM(GFNetPreTrainedModel, SpectralForMaskedLM):
    """GFNet with a masked-LM head tied to the input embeddings."""

    backbone_class = GFNetModel
    _tied_weights_keys = {"lm_head.decoder.weight": "gfnet.embeddings.word_embeddings.weight"}


class GFNetForImageClassification(GFNetPreTrainedModel, SpectralForImageClassification):
    """GFNet on images or volumes: the final token grid pooled by `config.pooling` -> linear classifier."""

    backbone_class = GFNetModel


class GFNetForPatchRegression(GFNetPreTrainedModel, SpectralForPatchRegression):
    """GFNet predicting a value per pixel and output channel from every patch token (FourCastNet's head)."""

    backbone_class = GFNetModel


class GFNetForMaskedImageModeling(GFNetPreTrainedModel, SpectralForMaskedImageModeling):
    """GFNet pre-trained on images by masked image modelling (SimMIM): masked patches' pixels predicted from the
    tokens."""

    backbone_class = GFNetModel


class GFNetBackbone(GFNetPreTrainedModel, SpectralBackbone):
    """GFNet feature maps for `AutoBackbone` (UperNet and other dense-prediction models): the outputs of the stages of
    `config.out_features`, (B, width, *grid) each."""

    backbone_class = GFNetModel
