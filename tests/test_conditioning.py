"""The optional conditioning branch of the block: cross-attention to a condition sequence or AdaLN-zero modulation
from a pooled condition, in every family and head."""

import json
import os
import subprocess
import sys

import datasets
import pytest
import torch
import torch.nn.functional as F
from conftest import FAMILIES, model_class, tiny_config
from safetensors.torch import save_file
from test_hybrid import STRATEGIES
from test_remote_code import LOADER
from transformers import AutoModel, Trainer, TrainingArguments

from fourierformers import AdaLNZero

HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForMaskedLM", "ForQuestionAnswering"]
IMAGE_HEADS = ["ForImageClassification", "ForPatchRegression"]
IMAGE_FIELDS = dict(image_size=8, patch_size=2, num_channels=1, num_output_channels=1, mixer_layout=None)
CONDITION_SIZE = 6


def conditioned_config(family, condition_type, **overrides):
    return tiny_config(family, condition_type=condition_type, condition_size=CONDITION_SIZE, **overrides)


def make_condition(condition_type, batch_size=3, condition_length=5):
    if condition_type == "cross_attention":
        return torch.randn(batch_size, condition_length, CONDITION_SIZE)
    return torch.randn(batch_size, CONDITION_SIZE)


def text_batch(batch_size=3, seq_length=9):
    input_ids = torch.randint(4, 99, (batch_size, seq_length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    return input_ids, attention_mask


def randomise(model):
    """Move the zero-initialised AdaLN modulation away from zero so the condition changes the outputs."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "condition_mixer.modulation" in name:
                parameter.normal_(std=0.2)
    return model


family_and_type = pytest.mark.parametrize(
    "family,condition_type", [(f, t) for f in FAMILIES for t in ("cross_attention", "adaln_zero")]
)


@pytest.mark.parametrize("family", FAMILIES)
def test_branch_off_adds_no_module_and_no_parameter(family):
    default = model_class(family, "Model")(tiny_config(family))
    explicit_off = model_class(family, "Model")(tiny_config(family, condition_type=None))
    assert list(default.state_dict()) == list(explicit_off.state_dict())
    assert not any("condition" in name for name in explicit_off.state_dict())
    assert not any("condition" in name for name, _ in explicit_off.named_modules())
    on = model_class(family, "Model")(conditioned_config(family, "cross_attention"))
    assert any("condition_mixer" in name for name in on.state_dict())


@family_and_type
def test_missing_unexpected_or_misshapen_condition_is_a_clear_error(family, condition_type):
    input_ids, attention_mask = text_batch()
    conditioned = model_class(family, "Model")(conditioned_config(family, condition_type))
    with pytest.raises(ValueError, match="pass `condition` of shape"):
        conditioned(input_ids, attention_mask=attention_mask)
    wrong = torch.randn(3, 2, 3, CONDITION_SIZE + 1)
    with pytest.raises(ValueError, match=f"condition_size={CONDITION_SIZE}"):
        conditioned(input_ids, attention_mask=attention_mask, condition=wrong)
    unconditioned = model_class(family, "Model")(tiny_config(family))
    with pytest.raises(ValueError, match="condition_type=None"):
        unconditioned(input_ids, condition=make_condition(condition_type))
    condition = make_condition(condition_type)
    for bad, got in [(condition.tolist(), "got list"), (condition.long(), "got dtype torch.int64")]:
        with pytest.raises(ValueError, match=f"must be a floating-point torch.Tensor of shape .*, {got}"):
            conditioned(input_ids, attention_mask=attention_mask, condition=bad)


@family_and_type
def test_condition_follows_the_model_dtype(family, condition_type):
    """A float32 condition for a bfloat16 model is cast, as pixel_values are (a float64 one for float32 too)."""
    input_ids, attention_mask = text_batch()
    model = randomise(model_class(family, "Model")(conditioned_config(family, condition_type))).eval()
    condition = make_condition(condition_type)
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, condition=condition).last_hidden_state
        float64 = model(input_ids, attention_mask=attention_mask, condition=condition.double()).last_hidden_state
        half = model.to(torch.bfloat16)(input_ids, attention_mask=attention_mask, condition=condition)
    torch.testing.assert_close(float64, expected)
    assert half.last_hidden_state.dtype == torch.bfloat16
    torch.testing.assert_close(half.last_hidden_state.float(), expected, atol=0.1, rtol=0.1)


def test_bad_condition_config_is_rejected():
    with pytest.raises(ValueError, match="'cross_attention', 'adaln_zero'"):
        tiny_config("gfnet", condition_type="film")
    with pytest.raises(ValueError, match="condition_size"):
        tiny_config("gfnet", condition_type="adaln_zero", condition_size=0)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("condition_type", ["cross_attention", "adaln_zero"])
def test_a_block_of_only_its_conditioning_branch_is_allowed(condition_type, norm_first):
    """A "none" mixer without an MLP leaves a block that only conditions (a decoder-style cross-attention layer);
    without a condition such a block would be empty and is refused."""
    config = conditioned_config("gfnet", condition_type, intermediate_size=0, mixer_layout=["none", "global_filter"],
                                norm_first=norm_first)
    model = randomise(model_class("gfnet", "Model")(config))
    first = model.layers[0]
    assert first.mixer is None and first.mlp is None and first.condition_mixer is not None
    hidden = torch.randn(3, 9, config.hidden_size)
    condition = make_condition(condition_type)
    out, _ = first(hidden, condition=condition)
    expected = first._condition(hidden, condition, "sdpa", None)  # x + branch(x, condition), nothing else
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, hidden)
    with pytest.raises(ValueError, match=r"leaves layer 0, whose mixer is \"none\", empty"):
        tiny_config("gfnet", intermediate_size=0, mixer_layout=["none", "global_filter"])


@pytest.mark.parametrize("mixer_residual", [True, False])
@pytest.mark.parametrize("condition_type", ["cross_attention", "adaln_zero"])
def test_pre_norm_block_conditions_between_mixer_and_mlp(condition_type, mixer_residual):
    """Pre-norm, with c(h) = h + condition_mixer(condition_norm(h), condition): `mixer_residual=True` gives
    h = c(x + mixer(mixer_norm(x))), h + mlp(mlp_norm(h)); `False` (one residual) conditions the mixer output, x +
    mlp(mlp_norm(c(mixer(mixer_norm(x)))))."""
    config = conditioned_config("gfnet", condition_type, mixer_residual=mixer_residual)
    block = randomise(model_class("gfnet", "Model")(config)).layers[0].eval()
    x, condition = torch.randn(3, 24, config.hidden_size), make_condition(condition_type)

    def conditioned(h):
        normed = h if block.condition_norm is None else block.condition_norm(h)
        return h + block.condition_mixer(normed, condition)

    with torch.no_grad():
        mixed = block.mixer(block.mixer_norm(x))
        if mixer_residual:
            h = conditioned(x + mixed)
            expected = h + block.mlp(block.mlp_norm(h))
        else:
            expected = x + block.mlp(block.mlp_norm(conditioned(mixed)))
        torch.testing.assert_close(block(x, condition=condition)[0], expected)


@pytest.mark.parametrize("condition_type", ["cross_attention", "adaln_zero"])
def test_conditioning_branch_has_the_blocks_dropout(condition_type):
    """In training the branch's update goes through the block's dropout (`hidden_dropout_prob`) as the mixer's and
    the MLP's do: about half its entries are dropped at 0.5."""
    config = conditioned_config("gfnet", condition_type, intermediate_size=0, mixer_layout=["none", "global_filter"],
                                hidden_dropout_prob=0.5)
    block = randomise(model_class("gfnet", "Model")(config)).layers[0].train()
    x = torch.randn(3, 9, config.hidden_size)
    with torch.no_grad():
        update = block(x, condition=make_condition(condition_type))[0] - x
    assert 0.35 < (update == 0).float().mean() < 0.65


@pytest.mark.parametrize("head", HEADS)
@family_and_type
def test_every_head_uses_the_condition_and_trains_the_branch(family, condition_type, head):
    model = randomise(model_class(family, head)(conditioned_config(family, condition_type)))
    input_ids, attention_mask = text_batch()
    condition = make_condition(condition_type).requires_grad_()
    output = model(input_ids, attention_mask=attention_mask, condition=condition)
    logits = output.to_tuple()[0]  # the head's logits (start logits), or the backbone's hidden states
    other = model(input_ids, attention_mask=attention_mask, condition=make_condition(condition_type))
    other_logits = other.to_tuple()[0]
    assert not torch.allclose(logits, other_logits), "the condition does not change the outputs"
    (logits * torch.randn_like(logits)).sum().backward()
    assert condition.grad.abs().sum() > 0
    for name, parameter in model.named_parameters():
        if "condition" in name:
            assert parameter.grad.abs().sum() > 0, name


@family_and_type
def test_multiple_choice_gives_every_choice_its_examples_condition(family, condition_type):
    """An example's condition (and condition mask) goes to each of its choices: the scores are those of each choice
    run alone with it."""
    model = randomise(model_class(family, "ForMultipleChoice")(conditioned_config(family, condition_type))).eval()
    input_ids, attention_mask = text_batch(batch_size=4)
    input_ids, attention_mask = input_ids.reshape(2, 2, -1), attention_mask.reshape(2, 2, -1)
    condition = make_condition(condition_type, batch_size=2)
    condition_mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5]) if condition_type == "cross_attention" else None
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask, condition=condition,
                       condition_mask=condition_mask).logits
        for row in range(2):
            mask_row = None if condition_mask is None else condition_mask[row : row + 1]
            for choice in range(2):
                alone = model(input_ids[row : row + 1, choice : choice + 1],
                              attention_mask=attention_mask[row : row + 1, choice : choice + 1],
                              condition=condition[row : row + 1], condition_mask=mask_row).logits
                torch.testing.assert_close(alone[0, 0], logits[row, choice], atol=1e-5, rtol=1e-5)
        other = model(input_ids, attention_mask=attention_mask, condition=condition.flip(0),
                      condition_mask=None if condition_mask is None else condition_mask.flip(0)).logits
    assert not torch.allclose(other, logits), "the condition does not change the scores"


@pytest.mark.parametrize("head", IMAGE_HEADS)
@family_and_type
def test_image_heads_use_the_condition(family, condition_type, head):
    model = randomise(model_class(family, head)(conditioned_config(family, condition_type, **IMAGE_FIELDS)))
    pixel_values = torch.randn(3, 1, 8, 8)
    condition = make_condition(condition_type).requires_grad_()
    output = model(pixel_values, condition=condition).to_tuple()[0]
    other = model(pixel_values, condition=make_condition(condition_type)).to_tuple()[0]
    assert not torch.allclose(output, other), "the condition does not change the outputs"
    (output * torch.randn_like(output)).sum().backward()
    assert condition.grad.abs().sum() > 0


@pytest.mark.parametrize("head", HEADS + IMAGE_HEADS)
def test_trainer_keeps_the_condition_columns(head, tmp_path):
    """Trainer passes on only the dataset columns that the model's `forward` names (`remove_unused_columns`, on by
    default): every head must name `condition` and `condition_mask`, not take them through `**kwargs`."""
    image = head in IMAGE_HEADS
    config = conditioned_config("gfnet", "cross_attention", **(IMAGE_FIELDS if image else {}))
    model = model_class("gfnet", head)(config)
    inputs = {"pixel_values": torch.randn(4, 1, 8, 8)} if image else {"input_ids": torch.randint(4, 99, (4, 6))}
    dataset = datasets.Dataset.from_dict(
        {**inputs, "condition": torch.randn(4, 5, CONDITION_SIZE), "condition_mask": torch.ones(4, 5, dtype=torch.long),
         "unused": [0, 1, 2, 3]}
    ).with_format("torch")
    arguments = TrainingArguments(tmp_path, per_device_train_batch_size=2, report_to=[], use_cpu=True)
    batch = next(iter(Trainer(model, arguments, train_dataset=dataset).get_train_dataloader()))
    assert set(batch) == {*inputs, "condition", "condition_mask"}
    model(**batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_adaln_zero_starts_as_the_unconditioned_model(family, tmp_path):
    """Added to a trained model, by `load_state_dict` or by `from_pretrained` with `condition_type="adaln_zero"`
    (where `_init_weights` initialises the missing branch), the branch starts at zero: the model is unchanged."""
    unconditioned = model_class(family, "Model")(tiny_config(family)).eval()
    conditioned = model_class(family, "Model")(conditioned_config(family, "adaln_zero")).eval()
    missing, unexpected = conditioned.load_state_dict(unconditioned.state_dict(), strict=False)
    assert not unexpected and all("condition_mixer.modulation" in name for name in missing)
    unconditioned.save_pretrained(tmp_path)
    loaded = model_class(family, "Model").from_pretrained(
        tmp_path, condition_type="adaln_zero", condition_size=CONDITION_SIZE
    ).eval()
    input_ids, attention_mask = text_batch()
    condition = make_condition("adaln_zero")
    for model in (conditioned, loaded):
        for name, parameter in model.named_parameters():
            if "modulation" in name:
                assert parameter.abs().sum() == 0, name
        with torch.no_grad():
            torch.testing.assert_close(
                model(input_ids, attention_mask=attention_mask, condition=condition).last_hidden_state,
                unconditioned(input_ids, attention_mask=attention_mask).last_hidden_state,
            )


def test_adaln_zero_is_the_dit_modulation():
    """Off its zero start: gate * (LN(x) * (1 + scale) + shift), (shift, scale, gate) = SiLU(c) W^T + b."""
    branch = AdaLNZero(16, CONDITION_SIZE)
    torch.nn.init.normal_(branch.modulation_weight, std=0.3)
    torch.nn.init.normal_(branch.modulation_bias, std=0.3)
    x, condition = torch.randn(2, 5, 16), torch.randn(2, CONDITION_SIZE)
    modulation = F.silu(condition) @ branch.modulation_weight.T + branch.modulation_bias
    shift, scale, gate = (part[:, None] for part in modulation.chunk(3, dim=-1))
    normed = F.layer_norm(x, (16,), eps=1e-6)
    torch.testing.assert_close(branch(x, condition), gate * (normed * (1 + scale) + shift))


@family_and_type
def test_conditioned_outputs_do_not_depend_on_padding(family, condition_type):
    model = randomise(model_class(family, "Model")(conditioned_config(family, condition_type))).eval()
    input_ids, attention_mask = text_batch(seq_length=12)
    condition = make_condition(condition_type)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask, condition=condition).last_hidden_state
        length = int(attention_mask[1].sum())
        alone = model(input_ids[1:2, :length], condition=condition[1:2]).last_hidden_state
    torch.testing.assert_close(batched[1, :length], alone[0], atol=1e-5, rtol=1e-5)


@family_and_type
def test_packed_sequences_take_the_condition_of_their_row(family, condition_type):
    """Sequences packed into a row (restarting position ids, no attention mask) run alone with their row's
    condition (and its mask)."""
    model = randomise(model_class(family, "Model")(conditioned_config(family, condition_type))).eval()
    input_ids = torch.randint(4, 99, (2, 9))
    position_ids = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4], list(range(9))])
    condition = make_condition(condition_type, batch_size=2)
    masks = {}
    if condition_type == "cross_attention":
        masks = dict(condition_mask=torch.tensor([[1, 1, 1, 0, 0], [1] * 5]))
    with torch.no_grad():
        packed = model(input_ids, position_ids=position_ids, condition=condition, **masks).last_hidden_state
        for row, start, end in ((0, 0, 4), (0, 4, 9), (1, 0, 9)):
            row_masks = {name: mask[row : row + 1] for name, mask in masks.items()}
            alone = model(input_ids[row : row + 1, start:end], condition=condition[row : row + 1], **row_masks)
            torch.testing.assert_close(packed[row, start:end], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["Model", "ForSequenceClassification"])
def test_padded_condition_tokens_are_masked(family, head):
    """A condition sequence padded in its batch and masked by `condition_mask` gives the outputs of its real tokens
    alone; without the mask the padding would be attended to."""
    model = model_class(family, head)(conditioned_config(family, "cross_attention")).eval()
    input_ids, attention_mask = text_batch()
    condition = make_condition("cross_attention", condition_length=7)
    condition_mask = torch.ones(3, 7, dtype=torch.long)
    condition_mask[0, 4:] = 0
    condition[0, 4:] = 100.0  # padding values that would change the outputs if attended to

    def output(**inputs):
        outputs = model(**inputs)
        return outputs.last_hidden_state if head == "Model" else outputs.logits

    with torch.no_grad():
        batched = output(input_ids=input_ids, attention_mask=attention_mask, condition=condition,
                         condition_mask=condition_mask)
        alone = output(input_ids=input_ids[:1], condition=condition[:1, :4])
        unmasked = output(input_ids=input_ids, attention_mask=attention_mask, condition=condition)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[:1], alone, atol=1e-3)
    torch.testing.assert_close(batched[1:], unmasked[1:], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_cross_attention_takes_a_condition_grid_as_its_cells(family):
    """A condition on a grid (B, *condition_grid, C), nvSubquadratic's (B, *spatial_dims_condition, C), is attended to
    as its flattened cells: the same outputs as the flattened sequence, with its mask on the grid."""
    model = randomise(model_class(family, "Model")(conditioned_config(family, "cross_attention"))).eval()
    input_ids, attention_mask = text_batch()
    grid = torch.randn(3, 2, 3, CONDITION_SIZE)
    grid_mask = torch.ones(3, 2, 3, dtype=torch.long)
    grid_mask[0, 1] = 0
    grid[0, 1] = 100.0  # masked cells
    with torch.no_grad():
        from_grid = model(input_ids, attention_mask=attention_mask, condition=grid, condition_mask=grid_mask)
        from_cells = model(input_ids, attention_mask=attention_mask, condition=grid.flatten(1, 2),
                           condition_mask=grid_mask.flatten(1))
        unmasked = model(input_ids, attention_mask=attention_mask, condition=grid)
    torch.testing.assert_close(from_grid.last_hidden_state, from_cells.last_hidden_state, rtol=0, atol=0)
    assert not torch.allclose(from_grid.last_hidden_state[0], unmasked.last_hidden_state[0], atol=1e-3)
    message = r"`condition_mask` must have shape \(batch_size, \*condition_grid\) = \(3, 2, 3\)"
    with pytest.raises(ValueError, match=message):
        model(input_ids, condition=grid, condition_mask=grid_mask.flatten(1))


def test_bad_condition_mask_is_a_clear_error():
    input_ids, _ = text_batch()
    cross = model_class("gfnet", "Model")(conditioned_config("gfnet", "cross_attention"))
    condition = make_condition("cross_attention")
    for mask, message in [
        (torch.ones(3, 4), r"shape \(batch_size, condition_length\) = \(3, 5\)"),
        ([[1] * 5] * 3, r"shape \(batch_size, condition_length\) = \(3, 5\).*got list"),
        (torch.full((3, 5), 2), "only 1 \\(real condition token\\) and 0"),
        (torch.ones(3, 5).index_fill(0, torch.tensor([2]), 0),
         r"at least one real condition token \(a 1\), but 1 of its 3 rows hold none \(0-based indices: 2\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            cross(input_ids, condition=condition, condition_mask=mask)
    adaln = model_class("gfnet", "Model")(conditioned_config("gfnet", "adaln_zero"))
    with pytest.raises(ValueError, match="only condition_type='cross_attention' takes"):
        adaln(input_ids, condition=make_condition("adaln_zero"), condition_mask=torch.ones(3, 5))


@family_and_type
def test_conditioned_model_saves_loads_and_checkpoints(family, condition_type, tmp_path):
    config = conditioned_config(family, condition_type, mixer_layout=["attention", "global_filter"])
    model = randomise(model_class(family, "Model")(config)).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    input_ids, attention_mask = text_batch()
    condition = make_condition(condition_type)
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, condition=condition).last_hidden_state
        torch.testing.assert_close(
            loaded(input_ids, attention_mask=attention_mask, condition=condition).last_hidden_state, expected
        )
    loaded.train()
    loaded.activation_checkpointing_enable()
    condition.requires_grad_()
    loaded(input_ids, attention_mask=attention_mask, condition=condition).pooler_output.square().sum().backward()
    assert condition.grad.abs().sum() > 0


@pytest.mark.slow
def test_hybrid_and_conditioned_checkpoints_load_without_the_package(tmp_path):
    """Every new module (hybrid mixers, condition branch, layout validation) is saved with the checkpoint and the
    checkpoint loads with `trust_remote_code=True` in a process where `import fourierformers` fails."""
    cases = {
        "gfnet-cross": ("gfnet", "cross_attention", [STRATEGIES["adaptive_hard"], STRATEGIES["multiscale_weighted"]]),
        "afno-adaln": ("afno", "adaln_zero", [STRATEGIES["cascade_shared_norm"], STRATEGIES["multiscale_concat"]]),
    }
    arguments = []
    for name, (family, condition_type, layout) in cases.items():
        folder = tmp_path / name
        model = model_class(family, "ForSequenceClassification")(
            conditioned_config(family, condition_type, mixer_layout=layout)
        )
        randomise(model).eval().save_pretrained(folder)
        input_ids, attention_mask = text_batch()
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "condition": make_condition(condition_type)}
        with torch.no_grad():
            expected = {"main": model(**inputs).logits, "hidden": model.base_model(**inputs).last_hidden_state}
        save_file(inputs, folder / "inputs.safetensors")
        save_file(expected, folder / "expected.safetensors")
        arguments.append(f"{folder}={model._auto_class}")
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_MODULES_CACHE")}
    environment.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", LOADER, *arguments], cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(cases)
    for name, loaded in report.items():
        assert loaded["model_module"] == "transformers_modules", name
        assert max(loaded["main"], loaded["hidden"], loaded["resaved"]) <= 1e-6, (name, loaded)
