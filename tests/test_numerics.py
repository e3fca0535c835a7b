"""Numerical robustness: float64 gradient checks of every mixer, extreme input magnitudes, half precision."""

import pytest
import torch

from conftest import FAMILIES, model_class, tiny_config
from fourierformers.hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer
from fourierformers.spectral_layers import AFNOMixer, FourierMixer, GlobalFilter, SelfAttention


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
