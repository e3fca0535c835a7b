"""The image-classification head shared by every family (kept apart from the text heads of
`modeling_spectral.py`): backbone -> final norm -> mean over the token grid -> dropout -> linear classifier."""

from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from .modeling_spectral import SpectralModel, SpectralPreTrainedModel, sequence_classification_loss


class SpectralForImageClassification(SpectralPreTrainedModel):
    """Image (or volume) classification, regression or multi-label classification through `config.problem_type`,
    as for text. The config must have an `image_size`."""

    main_input_name = "pixel_values"
    backbone_class = SpectralModel

    def __init__(self, config):
        if not config.is_vision:
            raise ValueError(
                f"{type(self).__name__} needs an image config: set `image_size` (and patch_size, num_channels)."
            )
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.backbone_class(config))
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        interpolate_pos_encoding=False,
        return_dict=None,
        num_items_in_batch=None,
        **kwargs,
    ):
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, *image_size)`): images (B, C, H, W) or
            volumes (B, C, D, H, W).
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`): class indices
            (single-label), floats (regression) or multi-hot floats (multi-label).
        interpolate_pos_encoding (`bool`): accept another image size, resizing the position embeddings.

        Returns `ImageClassifierOutput` with `logits` (B, num_labels) and `hidden_states` flattened to (B, N, D).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config, num_items_in_batch)
        output = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()
