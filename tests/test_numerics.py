"""Numerical robustness: float64 gradient checks of every mixer, extreme input magnitudes, half precision."""

import pytest
import torch
import torch.autograd.forward_ad as forward_ad

from conftest import FAMILIES, model_class, tiny_config
from fourierformers import spectral_layers
from fourierformers.condition_layers import CrossAttention
from fourierformers.hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer
from fourierformers.spectral_layers import AFNOMixer, FourierMixer, GlobalFilter, SelfAttention, masked_mean


def mixers():
    torch.manual_seed(0)
    afno = AFNOMixer(4, (7,), num_blocks=2, hidden_size_factor=2, sparsity_threshold=0.05, kept_modes=[[0, 1, 2]])
    modules = {
        "fourier": FourierMixer((7,), norm="ortho"),
        "global_filter": GlobalFilter(4, (7,), activation="tanh"),
        "afno": afno,
        "attention": SelfAttention(4, 2),
    }
    children = lambda: [GlobalFilter(4, (7,), activation="tanh"), SelfAttention(4, 2)]  # noqa: E731
    modules.update(
        adaptive_soft=AdaptiveMixer(children(), 4, gate="soft"),
        multiscale_concat=MultiscaleMixer(children(), 4, fusion="concat"),
        multiscale_weighted=MultiscaleMixer(children(), 4, fusion="weighted"),
        cascade_shared_norm=CascadeMixer(children(), 4, share_norm=True),
    )
    for module in modules.values():
        for parameter in module.parameters():
            torch.nn.init.normal_(parameter, std=0.5)
    return {name: module.double() for name, module in modules.items()}


@pytest.mark.parametrize(
    "name",
    ["fourier", "global_filter", "afno", "attention", "adaptive_soft", "multiscale_concat", "multiscale_weighted",
     "cascade_shared_norm"],
)
def test_gradcheck_float64(name):
    """Every mixer and every differentiable hybrid strategy (the hard gate's straight-through gradient is by
    design not the derivative of its forward pass; its gradient is tested in test_hybrid.py)."""
    mixer = mixers()[name]
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)

    def run(inputs, *parameters):
        out = mixer(inputs, mask)
        return out[0] if isinstance(out, tuple) else out

    parameters = [p for p in mixer.parameters()]
    assert torch.autograd.gradcheck(run, (x, *parameters), eps=1e-6, atol=1e-5, nondet_tol=0.0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scale", [1e-6, 1e4])
def test_extreme_input_magnitudes_stay_finite(family, scale):
    model = model_class(family, "ForSequenceClassification")(tiny_config(family)).eval()
    embeds = scale * torch.randn(2, 12, model.config.hidden_size)
    with torch.no_grad():
        outputs = model(inputs_embeds=embeds, output_hidden_states=True)
    assert torch.isfinite(outputs.logits).all()
    assert all(torch.isfinite(h).all() for h in outputs.hidden_states)


@pytest.mark.parametrize("family", FAMILIES)
def test_float16_weights_on_cpu_are_finite_and_close(family):
    model = model_class(family, "ForSequenceClassification")(tiny_config(family, initializer_range=0.02)).eval()
    ids = torch.randint(5, 99, (2, 12))
    with torch.no_grad():
        reference = model(ids).logits
        half = model.half()(ids).logits
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), reference, atol=0.02, rtol=0.02)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_the_same_training_losses(family):
    def train():
        torch.manual_seed(123)
        model = model_class(family, "ForSequenceClassification")(tiny_config(family, hidden_dropout_prob=0.1,
                                                                             drop_path_rate=0.1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(3):
            ids = torch.randint(5, 99, (4, 10))
            loss = model(ids, labels=torch.randint(0, 3, (4,))).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return losses

    assert train() == train()


class OutputOnly(torch.nn.Module):
    """A mixer that returns (output, attention weights), as attention and the hybrid strategies do, as a function of
    its input alone."""

    def __init__(self, mixer):
        super().__init__()
        self.mixer = mixer

    def forward(self, x):
        return self.mixer(x)[0]


def test_fourier_short_path_runs_in_float32_under_autocast():
    """The short input's DFT is a matrix product, which autocast ran in bfloat16 (3.6e-3 relative error, and a
    sentence's logits changed by 2e-2 with the batch's padded length), while the FFTs run in float32."""
    mixer, x = FourierMixer((512,)), torch.randn(2, 50, 16)
    assert mixer.uses_short_fourier(50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = mixer(x)
    torch.testing.assert_close(autocast, mixer(x), atol=0, rtol=0)


def test_masked_mean_of_many_float16_tokens_does_not_overflow():
    """The adaptive gate and mean pooling read it; an all-ones mask gave inf where no mask gave the mean."""
    x = torch.full((1, 8192, 4), 10.0, dtype=torch.float16)
    assert masked_mean(x, torch.ones(1, 8192, dtype=torch.bool)).tolist() == [[10.0] * 4]


def transform_mixers():
    torch.manual_seed(0)
    modules = {
        "global_filter": (GlobalFilter(4, (8,)), (3, 8, 4)),
        "global_filter_short_input": (GlobalFilter(4, (64,)), (3, 5, 4)),
        "global_filter_2d": (GlobalFilter(4, (4, 6)), (3, 4, 6, 4)),
        "afno": (AFNOMixer(4, (8,), num_blocks=2), (3, 8, 4)),
        "fourier": (FourierMixer((8,)), (3, 8, 4)),
        "fourier_short_input": (FourierMixer((64,)), (3, 5, 4)),
        # CPU SDPA has no forward-mode derivative; the hard gate's one_hot checked its indices (no vmap rule)
        "attention": (OutputOnly(SelfAttention(4, 2)), (3, 8, 4)),
        "adaptive_hard": (OutputOnly(AdaptiveMixer([GlobalFilter(4, (8,)), SelfAttention(4, 2)], 4, gate="hard")),
                          (3, 8, 4)),
    }
    for module, _ in modules.values():
        for parameter in module.parameters():
            torch.nn.init.normal_(parameter)
    return {
        name: (module.double(), torch.randn(*shape, dtype=torch.float64)) for name, (module, shape) in modules.items()
    }


@pytest.mark.parametrize("name", list(transform_mixers()))
def test_function_transforms_match_autograd(name):
    """`torch.func` (vmap, per-example gradients, jvp, ensembles over stacked weights), forward-mode AD and
    `jacobian(vectorize=True)` give what plain autograd gives. The CPU fast paths (autograd Functions without vmap rules
    or jvp, in-place copies into unbatched buffers, cached weight layouts) step aside for them; GlobalFilter and AFNO
    used to raise in every one of these calls."""
    mixer, x = transform_mixers()[name]
    tangent = torch.randn_like(x)
    out = mixer(x)
    torch.testing.assert_close(torch.func.vmap(lambda example: mixer(example[None])[0])(x), out, atol=1e-12, rtol=0)
    jacobian = torch.autograd.functional.jacobian(mixer, x)
    vectorized = torch.autograd.functional.jacobian(mixer, x, vectorize=True)
    torch.testing.assert_close(vectorized, jacobian, atol=1e-12, rtol=0)
    expected_jvp = (jacobian.reshape(out.numel(), x.numel()) @ tangent.reshape(-1)).reshape(out.shape)
    torch.testing.assert_close(torch.func.jvp(mixer, (x,), (tangent,))[1], expected_jvp, atol=1e-12, rtol=0)
    with forward_ad.dual_level():
        dual_out = forward_ad.unpack_dual(mixer(forward_ad.make_dual(x, tangent))).tangent
    torch.testing.assert_close(dual_out, expected_jvp, atol=1e-12, rtol=0)
    parameters = dict(mixer.named_parameters())
    if not parameters:
        return

    def example_loss(weights, example):
        return torch.func.functional_call(mixer, weights, (example[None],)).square().sum()

    per_example = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0))(parameters, x)
    for index in range(x.shape[0]):
        gradients = torch.autograd.grad(mixer(x[index : index + 1]).square().sum(), list(parameters.values()))
        for key, gradient in zip(parameters, gradients):
            torch.testing.assert_close(per_example[key][index], gradient, atol=1e-12, rtol=1e-10)
    stacked = {key: torch.stack([p.detach(), 1.5 * p.detach()]) for key, p in parameters.items()}
    with torch.no_grad():  # inference: the weight-layout cache must not keep a batched tensor
        ensemble = torch.func.vmap(lambda weights: torch.func.functional_call(mixer, weights, (x,)))(stacked)
        for index, scale in enumerate([1.0, 1.5]):
            scaled = {key: scale * p.detach() for key, p in parameters.items()}
            torch.testing.assert_close(ensemble[index], torch.func.functional_call(mixer, scaled, (x,)))
        torch.testing.assert_close(mixer(x), out, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["global_filter", "afno", "fourier"])
def test_function_transforms_of_a_batch_split_into_chunks_without_autograd(name, monkeypatch):
    """Without autograd the chunks of a large batch are written into one output tensor, which cannot take a
    batched (vmap) or dual (forward-mode) result: those calls concatenate the chunks, as with autograd, and give
    what they give with autograd (they raised inside torch's vmap and forward-mode AD)."""
    mixer, x = transform_mixers()[name]
    monkeypatch.setattr(spectral_layers, "CHUNK_BYTES", 4 * x[0].numel())  # one example per chunk
    assert len(spectral_layers._batch_chunks(x, None)) == x.shape[0]
    tangent = torch.randn_like(x)
    masks = torch.ones(2, *x.shape[:-1], dtype=torch.bool)
    masks[1, :, 5:] = False
    weights = {key: p.detach() for key, p in mixer.named_parameters()}
    weight_tangents = {key: torch.randn_like(p) for key, p in weights.items()}
    stacked = {key: torch.stack([p, 1.5 * p]) for key, p in weights.items()}

    def with_weights(given):
        return torch.func.functional_call(mixer, given, (x,))

    expected = {"jvp": torch.func.jvp(mixer, (x,), (tangent,))[1], "masks": torch.stack([mixer(x, m) for m in masks])}
    expected["dual"] = expected["jvp"]
    if weights:
        expected["weights_jvp"] = torch.func.jvp(with_weights, (weights,), (weight_tangents,))[1]
        expected["ensemble"] = torch.stack([with_weights({key: s * p for key, p in weights.items()}) for s in (1, 1.5)])
    with torch.no_grad():
        got = {"jvp": torch.func.jvp(mixer, (x,), (tangent,))[1],
               "masks": torch.func.vmap(lambda mask: mixer(x, mask))(masks)}
        with forward_ad.dual_level():
            got["dual"] = forward_ad.unpack_dual(mixer(forward_ad.make_dual(x, tangent))).tangent
            if weights:
                dual_weights = {key: forward_ad.make_dual(p, weight_tangents[key]) for key, p in weights.items()}
                got["weights_jvp"] = forward_ad.unpack_dual(with_weights(dual_weights)).tangent
        if weights:
            got["ensemble"] = torch.func.vmap(with_weights)(stacked)
    assert set(got) == set(expected)
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key], atol=1e-12, rtol=0, msg=key)


def test_forward_mode_derivative_of_attention_whose_query_has_no_tangent():
    """SDPA has no forward-mode derivative: attention left it only for a query with a tangent, so a tangent on the
    condition of cross-attention, or on a key or value weight alone, raised inside torch."""
    torch.manual_seed(0)
    cross = CrossAttention(8, 6, 2).double()
    x, condition = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    tangent = torch.randn_like(condition)
    expected = torch.func.jvp(lambda c: cross(x, c), (condition,), (tangent,))[1]
    with forward_ad.dual_level():
        dual = forward_ad.unpack_dual(cross(x, forward_ad.make_dual(condition, tangent))).tangent
    torch.testing.assert_close(dual, expected, atol=1e-12, rtol=0)
    attention = SelfAttention(8, 2).double()
    weight = attention.v_proj.weight.detach()
    weight_tangent = torch.randn_like(weight)

    def with_value_weight(value_weight):
        return torch.func.functional_call(attention, {"v_proj.weight": value_weight}, (x,))[0]

    expected = torch.func.jvp(with_value_weight, (weight,), (weight_tangent,))[1]
    with forward_ad.dual_level():
        dual = forward_ad.unpack_dual(with_value_weight(forward_ad.make_dual(weight, weight_tangent))).tangent
    torch.testing.assert_close(dual, expected, atol=1e-12, rtol=0)


def test_hard_gate_forward_derivative_is_the_same_without_autograd():
    """In inference a hard gate runs each child on the examples that chose it only; with forward-mode tangents it
    keeps the full path, whose derivative includes the gate's (straight-through) term, as with autograd."""
    torch.manual_seed(0)
    mixer = OutputOnly(AdaptiveMixer([GlobalFilter(4, (8,)), FourierMixer((8,))], 4, gate="hard")).eval().double()
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter)
    x, tangent = torch.randn(4, 8, 4, dtype=torch.float64), torch.randn(4, 8, 4, dtype=torch.float64)
    expected = torch.func.jvp(mixer, (x,), (tangent,))[1]
    with torch.no_grad(), forward_ad.dual_level():
        dual = forward_ad.unpack_dual(mixer(forward_ad.make_dual(x, tangent))).tangent
    torch.testing.assert_close(dual, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_example_gradients_of_a_model(family):
    """The per-example gradient recipe (`vmap(grad(functional_call))`, as for differential privacy) on a whole padded
    model equals one backward pass per example."""
    model = model_class(family, "ForSequenceClassification")(tiny_config(family)).double()
    input_ids, labels = torch.randint(1, 99, (3, 6)), torch.tensor([0, 1, 2])
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 1 + [1] * 5])
    parameters = {key: p.detach() for key, p in model.named_parameters()}

    def example_loss(weights, ids, example_mask, label):
        inputs = dict(input_ids=ids[None], attention_mask=example_mask[None], labels=label[None])
        return torch.func.functional_call(model, weights, (), inputs).loss

    per_example = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0, 0, 0))(
        parameters, input_ids, mask, labels
    )
    for index in range(3):
        model.zero_grad()
        model(input_ids[index : index + 1], attention_mask=mask[index : index + 1], labels=labels[index : index + 1]
              ).loss.backward()
        for key, p in model.named_parameters():
            torch.testing.assert_close(per_example[key][index], p.grad, atol=1e-10, rtol=1e-8, msg=key)
