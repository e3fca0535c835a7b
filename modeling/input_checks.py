"""The checks of a forward pass's inputs and labels: each raises a `ValueError` that names what is wrong and what
is allowed, before a tensor reaches an FFT, an embedding or a loss."""

import math

import torch

from .spectral_layers import can_read_values, positive_index


def checked_positive_index(name, value):
    """`value` as an int where it is a positive integer of any type (numpy's included), else a `ValueError`."""
    index = positive_index(value)
    if index is None:
        raise ValueError(f"`{name}` must be a positive integer (or None), got {value!r}.")
    return index


TEXT_INPUT_NAMES = ("input_ids", "inputs_embeds", "attention_mask", "token_type_ids", "position_ids")
# FlashAttention's description of packed sequences, which `DataCollatorWithFlattening(return_flash_attn_kwargs=True,
# return_seq_idx=True)` adds to the position ids that restart at each sequence
PACKED_SEQUENCE_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


def check_packed_sequence_kwargs(model, kwargs, position_ids):
    """Accept FlashAttention's packed-sequence keywords beside the position ids that describe the same sequences
    (the spectral mixers read those); refuse any other keyword, as a misspelt one would otherwise go unused."""
    for name in kwargs:
        if name not in PACKED_SEQUENCE_KWARGS:
            raise TypeError(f"{type(model).__name__}.forward() got an unexpected keyword argument {name!r}")
    if kwargs and position_ids is None:
        raise ValueError(
            f"{sorted(kwargs)} describe packed sequences to FlashAttention; this model finds them from `position_ids` "
            "that restart at each sequence, which `DataCollatorWithFlattening` returns by default "
            "(`return_position_ids=True`): pass those."
        )


def validate_input_kind(config, pixel_values, text_inputs, interpolate_pos_encoding=False):
    """Reject inputs of the other modality: `pixel_values` or `interpolate_pos_encoding` for a text model, token
    inputs for an image model (`text_inputs`: name -> tensor or None). Raises `ValueError` saying which inputs the
    model takes."""
    given = [name for name in TEXT_INPUT_NAMES if text_inputs.get(name) is not None]
    if config.is_vision:
        if given:
            # the backbone's first parameter is `input_ids` (text and images share it); the heads' is the image
            input_ids = text_inputs.get("input_ids")
            images_as_ids = given == ["input_ids"] and torch.is_tensor(input_ids) and input_ids.is_floating_point()
            hint = " (images as `input_ids`, the first positional argument: pass them as `pixel_values=`)"
            raise ValueError(
                f"This is an image model (its config has image_size={config.image_size}): pass `pixel_values` of "
                f"shape (batch_size, num_channels={config.num_channels}, *{config.image_shape}) and no text inputs, "
                f"got {given}{hint if images_as_ids else ''}."
            )
        if pixel_values is not None and not torch.is_tensor(pixel_values):
            raise ValueError(
                f"`pixel_values` must be a torch.Tensor of shape (batch_size, num_channels={config.num_channels}, "
                f"*{config.image_shape}) (an image processor returns one), got {type(pixel_values).__name__}."
            )
        if pixel_values is not None and not pixel_values.is_floating_point():
            raise ValueError(
                f"`pixel_values` must be a floating-point tensor (rescaled and normalised by the image processor), "
                f"got dtype {pixel_values.dtype}: raw {pixel_values.dtype} images would be read as unnormalised values."
            )
    elif pixel_values is not None:
        raise ValueError(
            "This is a text model (its config has no image_size): pass `input_ids` or `inputs_embeds`, not "
            "`pixel_values`; an image model needs a config with `image_size` (and patch_size, num_channels)."
        )
    elif interpolate_pos_encoding:
        raise ValueError(
            "`interpolate_pos_encoding` resizes the position embeddings of image models to another image size; this "
            "is a text model (its config has no image_size), which takes any length up to max_position_embeddings="
            f"{config.max_position_embeddings} as it is."
        )
    for name in given:
        if not torch.is_tensor(text_inputs[name]):
            raise ValueError(
                f"`{name}` must be a torch.Tensor (e.g. from `tokenizer(..., return_tensors='pt')`), got "
                f"{type(text_inputs[name]).__name__}."
            )


def is_integer_tensor(tensor):
    """Whether `tensor` holds integers of any width (int64, the int32 of numpy arrays, uint8, ...), not bools."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def check_padding_mask_values(name, mask, token):
    """A padding mask (B, L) must hold only 1 (a real `token`) and 0, with a real one in every row. Reads the values
    back to Python, so callers skip it where they cannot (`can_read_values`)."""
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"`{name}` must hold only 1 (real {token}) and 0 (padding).")
    real_rows = mask.bool().any(dim=1)
    if not bool(real_rows.all()):
        empty = (~real_rows).nonzero().flatten().tolist()  # only where some row is empty: this runs every forward
        listed = ", ".join(map(str, empty[:8])) + (", ..." if len(empty) > 8 else "")
        raise ValueError(
            f"Every row of `{name}` needs at least one real {token} (a 1), but {len(empty)} of its {len(mask)} rows "
            f"hold none (0-based indices: {listed})."
        )


def validate_text_inputs(config, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids):
    """Check the inputs of a text forward pass, raising `ValueError` with what is wrong and what is allowed.
    Returns the batch size.

    The checks of tensor values (id ranges, a 0/1 mask with a real token per row) read the data back to Python,
    which splits a `torch.compile` graph and cannot run inside `torch.func.vmap`; they run where `can_read_values`."""
    check_values = can_read_values()
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
    for name, tensor in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
        if tensor is not None and tensor.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"`{name}` must be an int64 or int32 tensor, got dtype {tensor.dtype}.")
    if input_ids is not None:
        if input_ids.ndim != 2:
            raise ValueError(
                f"`input_ids` must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}."
            )
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"`input_ids` must be int64 or int32 token ids, got dtype {input_ids.dtype}.")
        shape = tuple(input_ids.shape)
    else:
        if not inputs_embeds.is_floating_point():
            raise ValueError(f"`inputs_embeds` must be a floating-point tensor, got dtype {inputs_embeds.dtype}.")
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"`inputs_embeds` must have shape (batch_size, sequence_length, hidden_size={config.hidden_size}), "
                f"got {tuple(inputs_embeds.shape)}."
            )
        shape = tuple(inputs_embeds.shape[:2])
    batch_size, seq_length = shape
    if seq_length == 0 or batch_size == 0:
        raise ValueError(f"Inputs must hold at least one sequence of at least one token, got shape {shape}.")
    if seq_length > config.max_position_embeddings:
        raise ValueError(
            f"Sequence length {seq_length} exceeds max_position_embeddings={config.max_position_embeddings}; "
            f"truncate the inputs (`tokenizer(..., truncation=True, max_length={config.max_position_embeddings})`, "
            f"or set `tokenizer.model_max_length = {config.max_position_embeddings}`: `truncation=True` alone, as "
            "pipelines pass it, cuts nothing for a tokenizer without one, such as one trained with `tokenizers`), pad "
            "them to at most that length (a collator's `pad_to_multiple_of` or `padding='max_length'` can pad past "
            "it), or use a config with a larger max_position_embeddings."
        )
    if input_ids is not None and check_values:
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"`input_ids` must be in [0, vocab_size={config.vocab_size}), got values from {low} to {high}."
            )
    if attention_mask is not None:
        if tuple(attention_mask.shape) != shape:
            raise ValueError(
                f"`attention_mask` must have the shape of the input ids {shape}, got {tuple(attention_mask.shape)}."
            )
        if check_values:
            check_padding_mask_values("attention_mask", attention_mask, "token")
    if token_type_ids is not None:
        if tuple(token_type_ids.shape) != shape:
            raise ValueError(
                f"`token_type_ids` must have the shape of the input ids {shape}, got {tuple(token_type_ids.shape)}."
            )
    if token_type_ids is not None and check_values:
        # Without token type embeddings only segment 0 exists (tokenizers send all-zero token_type_ids).
        num_types = max(config.type_vocab_size, 1)
        low, high = int(token_type_ids.min()), int(token_type_ids.max())
        if low < 0 or high >= num_types:
            raise ValueError(
                f"`token_type_ids` must be in [0, {num_types}) (type_vocab_size={config.type_vocab_size}), "
                f"got {low} to {high}."
            )
    if position_ids is not None:
        rows, columns = position_ids.shape if position_ids.ndim == 2 else (None, None)
        if columns != seq_length or rows not in (1, batch_size):
            raise ValueError(
                f"`position_ids` must have shape ({batch_size} or 1, {seq_length}), got {tuple(position_ids.shape)}."
            )
    if position_ids is not None and check_values:
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= config.max_position_embeddings:
            raise ValueError(
                f"`position_ids` must be in [0, max_position_embeddings={config.max_position_embeddings}), "
                f"got {low} to {high}."
            )
    return batch_size


def flatten_choices(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids):
    """Multiple-choice inputs, `input_ids` (B, C, T) or `inputs_embeds` (B, C, T, D), as one batch of B * C
    sequences for the backbone, after checking that every other input has the choices' shape (B, C, T).
    Returns (batch_size, num_choices, dict of the flattened inputs)."""
    if input_ids is None and inputs_embeds is None:
        raise ValueError(
            "Pass `input_ids` of shape (batch_size, num_choices, sequence_length) or `inputs_embeds` of shape "
            "(batch_size, num_choices, sequence_length, hidden_size)."
        )
    main_name = "input_ids" if input_ids is not None else "inputs_embeds"
    main = input_ids if input_ids is not None else inputs_embeds
    dims = "(batch_size, num_choices, sequence_length" + (")" if main_name == "input_ids" else ", hidden_size)")
    if not torch.is_tensor(main):
        raise ValueError(f"`{main_name}` must be a torch.Tensor of shape {dims}, got {type(main).__name__}.")
    if main.ndim != (3 if main_name == "input_ids" else 4):
        raise ValueError(f"`{main_name}` of a multiple-choice model must have shape {dims}, got {tuple(main.shape)}.")
    shape = tuple(main.shape[:3])
    batch_size, num_choices, seq_length = shape
    inputs = dict(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                  token_type_ids=token_type_ids, position_ids=position_ids)
    for name in ("attention_mask", "token_type_ids", "position_ids"):
        tensor = inputs[name]
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"`{name}` must have the shape of the choices {shape} (batch_size, num_choices, sequence_length), got "
                f"{tuple(tensor.shape)}."
            )
    flat = {
        name: None if tensor is None else tensor.reshape(batch_size * num_choices, seq_length, *tensor.shape[3:])
        for name, tensor in inputs.items()
    }
    return batch_size, num_choices, flat


def validate_masked_positions(bool_masked_pos, grid_shape):
    """`bool_masked_pos` of shape (B, N), one entry per patch of the (B, *grid_shape) patch grid flattened row-major
    (ViT's and Swin's layout), True or 1 where the patch is masked, as a (B, *grid_shape, 1) bool tensor. Raises
    `ValueError` naming the shape and values allowed."""
    batch_size, *grid = grid_shape
    num_patches = math.prod(grid)
    if not torch.is_tensor(bool_masked_pos) or tuple(bool_masked_pos.shape) != (batch_size, num_patches):
        got = tuple(bool_masked_pos.shape) if torch.is_tensor(bool_masked_pos) else type(bool_masked_pos).__name__
        raise ValueError(
            f"`bool_masked_pos` must be a tensor of shape (batch_size={batch_size}, num_patches={num_patches}), one "
            f"entry per patch of the {tuple(grid)} grid flattened row-major, got {got}."
        )
    binary = bool_masked_pos.dtype == torch.bool or (
        is_integer_tensor(bool_masked_pos)
        and (not can_read_values() or bool(((bool_masked_pos == 0) | (bool_masked_pos == 1)).all()))
    )
    if not binary:
        raise ValueError(
            "`bool_masked_pos` must hold booleans, or the integers 1 (masked patch) and 0, got "
            f"{'other integers' if is_integer_tensor(bool_masked_pos) else f'dtype {bool_masked_pos.dtype}'}."
        )
    return bool_masked_pos.bool().view(batch_size, *grid, 1)


def validate_span_positions(start_positions, end_positions, batch_size, seq_length):
    """Check the answer spans of a question-answering head: both or neither, integer token indices of shape (B,) or
    (B, 1). As transformers' question-answering heads do, a position at or past the input's end (an answer cut off
    by truncation) is ignored, and so is -100, the ignored label of every other loss; other negative positions are
    refused. Returns (start, end) as int64 (B,), ignored positions as -100, or (None, None)."""
    if (start_positions is None) != (end_positions is None):
        raise ValueError("Pass both `start_positions` and `end_positions` for the span loss, or neither.")
    if start_positions is None:
        return None, None
    allowed = (
        f"integer token indices in [0, {seq_length}) of shape ({batch_size},) or ({batch_size}, 1) (positions >= "
        f"{seq_length} and -100 are ignored)"
    )
    checked = []
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        if not torch.is_tensor(positions) or not is_integer_tensor(positions):
            got = f"dtype {positions.dtype}" if torch.is_tensor(positions) else type(positions).__name__
            raise ValueError(f"`{name}` must be {allowed}, got {got}.")
        if tuple(positions.shape) not in ((batch_size,), (batch_size, 1)):
            raise ValueError(f"`{name}` must be {allowed}, got shape {tuple(positions.shape)}.")
        positions = positions.reshape(batch_size).long()
        if can_read_values():
            refused = (positions < 0) & (positions != -100)
            if bool(refused.any()):
                raise ValueError(f"`{name}` must be {allowed}, got {int(positions[refused][0])}.")
        checked.append(torch.where((positions < 0) | (positions >= seq_length), -100, positions))
    return tuple(checked)


def validate_condition(config, condition, batch_size, condition_mask=None):
    """Check `condition` (and `condition_mask`) against `config.condition_type`, raising `ValueError` with the
    expected shape. Returns (condition, mask): a cross-attention condition on a grid (B, *grid, C) flattened to its
    cells (B, M, C), and its mask, flattened alike, as bool (B, M), True on real condition tokens, or None."""
    condition_size = config.effective_condition_size
    if condition_mask is not None and config.condition_type != "cross_attention":
        raise ValueError(
            f"`condition_mask` masks the tokens of a condition sequence, which only condition_type='cross_attention' "
            f"takes; the config has condition_type={config.condition_type!r}."
        )
    if config.condition_type is None:
        if condition is not None:
            raise ValueError(
                "`condition` was given but the config has condition_type=None; set condition_type to "
                "'cross_attention' or 'adaln_zero' to use a condition."
            )
        return None, None
    # cross-attention takes a condition sequence or grid (any number of axes between batch and channels)
    expected = {
        "cross_attention": (3, f"(batch_size={batch_size}, condition_length, condition_size={condition_size}) "
                               f"or (batch_size={batch_size}, *condition_grid, condition_size={condition_size})"),
        "adaln_zero": (2, f"(batch_size={batch_size}, condition_size={condition_size})"),
    }[config.condition_type]
    sequence_or_grid = config.condition_type == "cross_attention"
    if condition is None:
        raise ValueError(
            f"The config has condition_type={config.condition_type!r}: pass `condition` of shape {expected[1]}."
        )
    if not torch.is_tensor(condition) or not condition.is_floating_point():
        kind = f"dtype {condition.dtype}" if torch.is_tensor(condition) else type(condition).__name__
        raise ValueError(
            f"`condition` for condition_type={config.condition_type!r} must be a floating-point torch.Tensor of "
            f"shape {expected[1]}, got {kind}."
        )
    rank_ok = condition.ndim >= expected[0] if sequence_or_grid else condition.ndim == expected[0]
    if (
        not rank_ok or condition.shape[0] != batch_size or condition.shape[-1] != condition_size
        or condition.numel() == 0
    ):
        tokens = " with at least one condition token" if config.condition_type == "cross_attention" else ""
        raise ValueError(
            f"`condition` for condition_type={config.condition_type!r} must have shape {expected[1]}{tokens}, "
            f"got {tuple(condition.shape)}."
        )
    if condition_mask is not None and (
        not torch.is_tensor(condition_mask) or tuple(condition_mask.shape) != tuple(condition.shape[:-1])
    ):
        tokens = "condition_length" if condition.ndim == 3 else "*condition_grid"
        raise ValueError(
            f"`condition_mask` must have shape (batch_size, {tokens}) = {tuple(condition.shape[:-1])}, "
            f"1 for real condition tokens and 0 for padding, got "
            f"{tuple(condition_mask.shape) if torch.is_tensor(condition_mask) else type(condition_mask).__name__}."
        )
    if sequence_or_grid:
        condition = condition.flatten(1, -2)  # (B, M, C)
    if condition_mask is None:
        return condition, None
    condition_mask = condition_mask.flatten(1)  # (B, M)
    if can_read_values():
        check_padding_mask_values("condition_mask", condition_mask, "condition token")
    return condition, condition_mask.bool()


def validate_class_labels(labels, expected_shape, num_classes):
    """Check integer class labels of shape `expected_shape` against `num_classes` logits (-100 = ignored),
    raising `ValueError` with the expected shape and range before the loss would index out of bounds. Any integer
    dtype is accepted (numpy gives int32); they are returned as int64, the one `cross_entropy` takes and in which
    the range is checked (torch cannot compare uint16 to uint64 tensors). Under `torch.compile` only dtype and shape
    are checked, as for the inputs."""
    allowed = f"integer class indices in [0, {num_classes}) or -100 (ignored) of shape {tuple(expected_shape)}"
    if not torch.is_tensor(labels):
        raise ValueError(f"`labels` must be a torch.Tensor of {allowed}, got {type(labels).__name__}.")
    if not is_integer_tensor(labels):
        raise ValueError(f"`labels` must be {allowed}, got dtype {labels.dtype}.")
    if tuple(labels.shape) != tuple(expected_shape):
        raise ValueError(f"`labels` must be {allowed}, got shape {tuple(labels.shape)}.")
    labels = labels.long()
    if not can_read_values():
        return labels
    out_of_range = (labels != -100) & ((labels < 0) | (labels >= num_classes))
    if bool(out_of_range.any()):
        raise ValueError(f"`labels` must be {allowed}, got {int(labels[out_of_range][0])}.")
    return labels


def check_real_targets(labels, what):
    """Refuse complex regression targets: the cast to the predictions' real dtype drops the imaginary part."""
    if labels.is_complex():
        raise ValueError(f"{what} must be real numbers (predictions are real), got dtype {labels.dtype}.")


def validate_sequence_labels(labels, problem_type, batch_size, num_labels):
    """Check the labels of a sequence- or image-level head for `problem_type`, raising `ValueError` with the
    expected shape (and range) before the loss would fail or broadcast; returns them (class indices as int64)."""
    if not torch.is_tensor(labels):
        raise ValueError(f"`labels` must be a torch.Tensor with one row per example, got {type(labels).__name__}.")
    if problem_type == "regression":
        if labels.ndim == 0 or labels.shape[0] != batch_size or labels.numel() != batch_size * num_labels:
            shapes = f"({batch_size},) or " if num_labels == 1 else ""
            raise ValueError(
                f"Regression `labels` must have shape {shapes}({batch_size}, num_labels={num_labels}), "
                f"got {tuple(labels.shape)}."
            )
        check_real_targets(labels, "Regression `labels`")
    elif problem_type == "single_label_classification":
        if tuple(labels.shape) == (batch_size, 1):  # a column of class indices, as BERT's heads accept
            labels = labels.reshape(batch_size)
        return validate_class_labels(labels, (batch_size,), num_labels)
    else:
        if tuple(labels.shape) != (batch_size, num_labels):
            raise ValueError(
                f"Multi-label `labels` must be multi-hot floats of shape ({batch_size}, num_labels={num_labels}), "
                f"got {tuple(labels.shape)}; single-label classification takes integer class indices of shape "
                f"({batch_size},)."
            )
        allowed = "values in [0, 1] (1: the label applies; soft targets in between are allowed)"
        if labels.is_complex():
            raise ValueError(f"Multi-label `labels` must be real {allowed}, got dtype {labels.dtype}.")
        if not can_read_values():
            return labels
        # As floats: torch has no comparisons for uint16 to uint64. NaN fails both.
        values = labels if labels.is_floating_point() else labels.double()
        outside = ~((values >= 0) & (values <= 1))
        if bool(outside.any()):
            raise ValueError(
                f"Multi-label `labels` must be {allowed}, got {values[outside][0].item()}; binary cross-entropy has "
                "no ignored value such as -100."
            )
    return labels
