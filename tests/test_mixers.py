"""Every mixer against a plain reference built from explicit DFT sums, circular convolution and loops,
forward and gradient, in float64 (tight) and float32 (the fast path as used)."""

import math
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fourierformers import GFNetConfig
from fourierformers.condition_layers import AdaLNZero, CrossAttention
from fourierformers.hybrid_layers import AdaptiveMixer, CascadeMixer, MultiscaleMixer
from fourierformers.modeling_spectral import LayerScale, build_mixer
from fourierformers.spectral_layers import (
    AFNOMixer,
    AttentionPooling,
    FourierMixer,
    GlobalFilter,
    SelfAttention,
    grid_irfftn,
    grid_rfftn,
    lowest_kept_modes,
    lowest_modes,
    multi_head_attention,
)


def dft_matrix(size, inverse=False, dtype=torch.complex128):
    """W[f, t] = exp(-2πi f t / size) (conjugate for the inverse), unnormalised."""
    index = torch.arange(size, dtype=torch.float64)
    sign = 1.0 if inverse else -1.0
    return torch.exp(sign * 2j * math.pi * torch.outer(index, index) / size).to(dtype)


def explicit_rfft(x, size):
    """Ortho rfft of x: (B, n, D) zero-padded to `size`, by a DFT matrix: (B, size // 2 + 1, D)."""
    padded = F.pad(x, (0, 0, 0, size - x.shape[1])).to(torch.complex128)
    return torch.einsum("ft,btd->bfd", dft_matrix(size)[: size // 2 + 1], padded) / math.sqrt(size)


def explicit_irfft(spectrum, size):
    """Ortho inverse of a half spectrum (B, size // 2 + 1, D) as a real signal: the DC term and (even size) the
    Nyquist term count once with their real part, every other frequency twice (itself and its conjugate)."""
    t = torch.arange(size, dtype=torch.float64)
    f = torch.arange(size // 2 + 1, dtype=torch.float64)
    weight = torch.full((size // 2 + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    phase = torch.exp(2j * math.pi * torch.outer(t, f) / size)  # (size, F)
    terms = torch.einsum("tf,bfd->btfd", phase, spectrum.to(torch.complex128)).real
    return torch.einsum("f,btfd->btd", weight, terms) / math.sqrt(size)


def reference_fourier(x, size, norm):
    """Re(DFT_seq(DFT_channels(x))) with x zero-padded to `size`, by DFT matrices; rows 0..n-1."""
    n, hidden = x.shape[1], x.shape[2]
    padded = F.pad(x, (0, 0, 0, size - n)).to(torch.complex128)
    y = torch.einsum("ft,btd,kd->bfk", dft_matrix(size), padded, dft_matrix(hidden)).real
    scale = {"backward": 1.0, "ortho": 1 / math.sqrt(size * hidden), "forward": 1 / (size * hidden)}[norm]
    return y[:, :n] * scale


def reference_global_filter(x, complex_filter, size):
    """Circular convolution of x (zero-padded to `size`) with the filter's impulse response k = irfft(K),
    written as an explicit sum y[t] = sum_s x[s] k[(t - s) mod size]."""
    n = x.shape[1]
    kernel = explicit_irfft(complex_filter[None], size)[0] / math.sqrt(size)  # backward-normalised irfft
    t = torch.arange(n)
    taps = kernel[(t[:, None] - t[None, :]) % size]  # (n_out, n_in, D)
    return torch.einsum("tsd,bsd->btd", taps, x.to(torch.float64))


def reference_afno(mixer, x, size, activation=torch.relu):
    """AFNO with the block MLP written as loops over blocks and frequencies with real arithmetic."""
    spectrum = explicit_rfft(x, size)  # (B, F, D)
    kept = mixer.kept_modes[0] if mixer.kept_modes is not None else range(size // 2 + 1)
    out = torch.zeros_like(spectrum)
    w1, b1, w2, b2 = (p.to(torch.float64) for p in (mixer.w1, mixer.b1, mixer.w2, mixer.b2))
    d, lam = mixer.block_size, mixer.sparsity_threshold
    for f in kept:
        for k in range(mixer.num_blocks):
            z = spectrum[:, f, k * d : (k + 1) * d]
            xr, xi = z.real, z.imag
            h_r = activation(xr @ w1[0, k] - xi @ w1[1, k] + b1[0, k])
            h_i = activation(xi @ w1[0, k] + xr @ w1[1, k] + b1[1, k])
            o_r = h_r @ w2[0, k] - h_i @ w2[1, k] + b2[0, k]
            o_i = h_i @ w2[0, k] + h_r @ w2[1, k] + b2[1, k]
            out[:, f, k * d : (k + 1) * d] = torch.complex(F.softshrink(o_r, lam), F.softshrink(o_i, lam))
    return explicit_irfft(out, size)[:, : x.shape[1]] + x.to(torch.float64)


def reference_attention(attention, x, mask):
    """Softmax attention with explicit per-head loops; padded keys get no weight, and padded positions query as
    zero tokens."""
    batch, n, hidden = x.shape
    h, d = attention.num_heads, attention.head_dim
    q = attention.q_proj(x if mask is None else x * mask[..., None])
    k, v = attention.k_proj(x), attention.v_proj(x)
    out = torch.zeros_like(x)
    for b in range(batch):
        keys = mask[b].nonzero().flatten() if mask is not None else torch.arange(n)
        for head in range(h):
            cols = slice(head * d, (head + 1) * d)
            scores = q[b, :, cols] @ k[b, keys, cols].T / math.sqrt(d)
            out[b, :, cols] = scores.softmax(-1) @ v[b, keys, cols]
    return attention.out_proj(out)


def random_init(module, std=0.5):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(std=std)
    return module


def assert_same_outputs_and_gradients(fast, reference, leaves, **tolerance):
    """`fast` equals `reference`, and so do their gradients with respect to `leaves` under one random upstream
    gradient; `tolerance`: atol / rtol of `torch.testing.assert_close` (its defaults when empty)."""
    torch.testing.assert_close(fast, reference, **tolerance)
    upstream = torch.randn_like(reference)
    for fast_grad, reference_grad in zip(
        torch.autograd.grad(fast, leaves, upstream), torch.autograd.grad(reference, leaves, upstream)
    ):
        torch.testing.assert_close(fast_grad, reference_grad, **tolerance)


SIZES = [(5, 8), (7, 7), (6, 9)]  # (tokens n, FFT length) with even and odd lengths, n < length and n == length


@pytest.mark.parametrize("n,size", SIZES)
@pytest.mark.parametrize("norm", ["backward", "ortho"])
@pytest.mark.parametrize("hidden", [6, 7])
def test_fourier_matches_dft_matrices(n, size, norm, hidden):
    x = torch.randn(2, n, hidden, dtype=torch.float64, requires_grad=True)
    mixer = FourierMixer((size,), norm=norm)
    assert_same_outputs_and_gradients(mixer(x), reference_fourier(x, size, norm), (x,), atol=1e-10, rtol=1e-10)


def test_fourier_float32_matches_reference():
    x = torch.randn(3, 11, 16)
    torch.testing.assert_close(
        FourierMixer((16,))(x).double(), reference_fourier(x.double(), 16, "backward"), atol=1e-3, rtol=1e-5
    )


def test_fourier_on_2d_grid_is_a_3d_dft():
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    expected = torch.fft.fftn(F.pad(x, (0, 0, 0, 1, 0, 2)), dim=(1, 2, 3)).real[:, :3, :4]
    torch.testing.assert_close(FourierMixer((5, 5))(x), expected)


@pytest.mark.parametrize("n,size", SIZES)
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh"])
def test_global_filter_is_circular_convolution(n, size, activation):
    hidden = 4
    mixer = random_init(GlobalFilter(hidden, (size,), activation=activation)).double()
    x = torch.randn(2, n, hidden, dtype=torch.float64, requires_grad=True)
    reference = reference_global_filter(x, mixer.complex_filter(torch.float64), size)
    assert_same_outputs_and_gradients(mixer(x), reference, (x, mixer.complex_weight), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "grid, fft_shape", [((4, 6), (4, 6)), ((3, 5), (4, 6)), ((5, 7), (5, 7)), ((2, 3, 4), (3, 4, 4))]
)
def test_global_filter_on_grids_matches_torch_fft_on_channels_last_input(batch, grid, fft_shape):
    """The mixer (channels-first transforms, staggered copies, cached filter layout) against `torch.fft` applied
    directly to the channels-last input, forward and gradients, on 2-D and 3-D grids: even and odd halved axes,
    grids smaller than the FFT, one and several examples."""
    hidden = 3
    mixer = random_init(GlobalFilter(hidden, fft_shape)).double()
    x = torch.randn(batch, *grid, hidden, dtype=torch.float64, requires_grad=True)
    axes = tuple(range(1, len(grid) + 1))
    kernel = mixer.complex_filter(torch.float64)  # (*freq_shape, D)
    spectrum = torch.fft.rfftn(x, s=fft_shape, dim=axes) * kernel
    reference = torch.fft.irfftn(spectrum, s=fft_shape, dim=axes)[(slice(None), *(slice(0, n) for n in grid))]
    assert_same_outputs_and_gradients(mixer(x), reference, (x, mixer.complex_weight), atol=1e-12, rtol=1e-12)


# (grid, FFT grid): even and odd halved axes, cropped grids, 1-D to 3-D
TRANSFORM_GRIDS = [((5,), (8,)), ((7,), (7,)), ((6,), (6,)), ((3, 4), (4, 6)), ((2, 3, 3), (3, 4, 5))]


@pytest.mark.parametrize("grid, fft_shape", TRANSFORM_GRIDS)
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_grid_rfftn_is_rfftn_with_its_adjoint_as_gradient(grid, fft_shape, norm):
    """The transform under GlobalFilter and AFNO (on CPU a staggered copy and a hand-written backward, the adjoint
    FFT with halved middle bins) against `torch.fft.rfftn` of the channels-first input; `gradcheck` and
    `gradgradcheck` compare its backward with finite differences for even and odd halved axes and cropped grids."""
    x = torch.randn(2, *grid, 3, dtype=torch.float64, requires_grad=True)
    spectrum = grid_rfftn(x, fft_shape, norm)
    axes = tuple(range(2, x.ndim))
    torch.testing.assert_close(spectrum, torch.fft.rfftn(x.movedim(-1, 1), s=fft_shape, dim=axes, norm=norm))

    def transform(x):
        return torch.view_as_real(grid_rfftn(x, fft_shape, norm))

    assert torch.autograd.gradcheck(transform, (x,))
    assert torch.autograd.gradgradcheck(transform, (x,))


@pytest.mark.parametrize("grid, fft_shape", TRANSFORM_GRIDS)
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("truncated", [False, True])
def test_grid_irfftn_is_irfftn_with_its_adjoint_as_gradient(grid, fft_shape, norm, truncated):
    """The inverse transform (on CPU a transposing copy and a hand-written backward, the adjoint rfft of a
    staggered copy with doubled paired bins) against `torch.fft.irfftn` and its autograd, on spectra that need not
    be Hermitian (irfftn's gradient then differs from a plain doubling), and against finite differences.
    `truncated`: fewer frequencies than the FFT grid has on every axis, zero-padded by irfftn (AFNO's kept modes)."""
    freq_shape = (*fft_shape[:-1], fft_shape[-1] // 2 + 1)
    if truncated:
        freq_shape = tuple(size - 1 for size in freq_shape)
    spectrum = torch.randn(2, 3, *freq_shape, dtype=torch.complex128, requires_grad=True)
    signal = grid_irfftn(spectrum, fft_shape, grid, norm)
    full = torch.fft.irfftn(spectrum, s=fft_shape, dim=tuple(range(2, spectrum.ndim)), norm=norm)
    reference = full[(slice(None), slice(None), *(slice(0, n) for n in grid))].movedim(1, -1)
    assert signal.is_contiguous()
    assert_same_outputs_and_gradients(signal, reference, (spectrum,), atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda s: grid_irfftn(s, fft_shape, grid, norm), (spectrum,))
    assert torch.autograd.gradgradcheck(lambda s: grid_irfftn(s, fft_shape, grid, norm), (spectrum,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hidden", [256, 100])
def test_grid_rfftn_writes_the_spectrum_channels_first(dtype, hidden):
    """The mixers multiply and invert the spectrum along its frequency axis, which is fast only when that axis is
    innermost in memory: the spectrum must come out contiguous, with no copy (torch lays an FFT's output out with
    the transformed axes innermost; a change there would show here first)."""
    x = torch.randn(2, 16, hidden, dtype=dtype)
    spectrum = grid_rfftn(x, (20,), "backward")
    assert spectrum.shape == (2, hidden, 11) and spectrum.is_contiguous()


@pytest.mark.parametrize(
    "activation, real_range, imag_range", [("sigmoid", (0.0, 1.0), (-0.5, 0.5)), ("tanh", (-1.0, 1.0), (-1.0, 1.0))]
)
def test_global_filter_activation_bounds_the_filter_without_confining_its_phase(activation, real_range, imag_range):
    mixer = random_init(GlobalFilter(4, (8,), activation=activation), std=5.0)
    coefficients = mixer.complex_filter()
    assert real_range[0] <= coefficients.real.min() and coefficients.real.max() <= real_range[1]
    assert imag_range[0] <= coefficients.imag.min() and coefficients.imag.max() <= imag_range[1]
    assert coefficients.imag.min() < 0 < coefficients.imag.max()  # phases on both sides of the real axis
    assert GlobalFilter(4, (8,)).complex_weight.shape == (5, 4, 2)


@pytest.mark.parametrize("size", [8, 9])
def test_sigmoid_global_filter_spans_spectrans_filters(size):
    """spectrans' GFNet layer, y = Re(ifft(fft(x) * H)) with H = sigmoid(A) + i sigmoid(B) on all `size` frequencies,
    keeps only the conjugate-symmetric part of H, (H[f] + conj(H[-f])) / 2: a real part in (0, 1) and an imaginary
    part in (-1/2, 1/2). The sigmoid filter, given the weights that produce that part on the half spectrum, returns
    the same outputs (at initialisation, near zero weights, both are about half the identity)."""
    hidden = 3
    a, b = torch.randn(size, hidden, dtype=torch.float64), torch.randn(size, hidden, dtype=torch.float64)
    x = torch.randn(2, size, hidden, dtype=torch.float64)
    spectrum = torch.fft.fft(x, dim=1, norm="ortho") * torch.complex(torch.sigmoid(a), torch.sigmoid(b))
    spectrans = torch.fft.ifft(spectrum, dim=1, norm="ortho").real
    half = torch.arange(size // 2 + 1)
    mirrored = (-half) % size
    real = (torch.sigmoid(a)[half] + torch.sigmoid(a)[mirrored]) / 2
    imaginary = (torch.sigmoid(b)[half] - torch.sigmoid(b)[mirrored]) / 2
    mixer = GlobalFilter(hidden, (size,), activation="sigmoid").double()
    with torch.no_grad():
        mixer.complex_weight.copy_(torch.stack([torch.logit(real), torch.logit(imaginary + 0.5)], dim=-1))
    torch.testing.assert_close(mixer(x), spectrans, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        mixer.complex_weight.zero_()
    torch.testing.assert_close(mixer(x), 0.5 * x, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("n,size", SIZES)
@pytest.mark.parametrize("num_modes", [None, 2])
@pytest.mark.parametrize("factor", [1, 2])
def test_afno_matches_loop_reference(n, size, num_modes, factor):
    hidden, blocks = 8, 2
    kept = None if num_modes is None else [lowest_modes(size, num_modes, half=True)]
    mixer = AFNOMixer(hidden, (size,), num_blocks=blocks, hidden_size_factor=factor, sparsity_threshold=0.1,
                      kept_modes=kept)
    random_init(mixer).double()
    x = torch.randn(2, n, hidden, dtype=torch.float64, requires_grad=True)
    leaves = (x, mixer.w1, mixer.b1, mixer.w2, mixer.b2)
    assert_same_outputs_and_gradients(mixer(x), reference_afno(mixer, x, size), leaves, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("activation", [F.gelu, torch.tanh])
def test_afno_activation_matches_loop_reference(activation):
    """Another activation of the block MLP (spectrans' option; the paper's ReLU is the default)."""
    mixer = AFNOMixer(8, (12,), num_blocks=2, sparsity_threshold=0.1, activation=activation)
    random_init(mixer).double()
    x = torch.randn(2, 12, 8, dtype=torch.float64, requires_grad=True)
    leaves = (x, mixer.w1, mixer.b1, mixer.w2, mixer.b2)
    reference = reference_afno(mixer, x, 12, activation=activation)
    assert_same_outputs_and_gradients(mixer(x), reference, leaves, atol=1e-9, rtol=1e-9)


def test_afno_dropout_acts_in_training_only():
    mixer = random_init(AFNOMixer(8, (12,), num_blocks=2, sparsity_threshold=0.0, dropout=0.5))
    x = torch.randn(2, 12, 8)
    torch.testing.assert_close(mixer.eval()(x), reference_afno(mixer, x, 12).float())
    mixer.train()
    torch.manual_seed(0)
    first = mixer(x)
    assert not torch.allclose(first, mixer(x)) and not torch.allclose(first, mixer.eval()(x))


@pytest.mark.parametrize(
    "kept_modes", [[[1, 1, 2]], [[5]], [[0, -1]], [[0], [1]], [[]], [[True, 2]], [[0.0]], [[[0]]], [["0"]], [2], 2],
)
def test_afno_refuses_kept_modes_that_are_not_distinct_indices_of_its_frequencies(kept_modes):
    """A repeated index was processed once but got its gradient twice; one out of range failed in the forward; a
    nested list, a float or a bool escaped as a TypeError or was taken as an index (True == 1)."""
    with pytest.raises(ValueError, match=r"AFNO kept_modes.* \(8,\)"):
        AFNOMixer(4, (8,), num_blocks=2, kept_modes=kept_modes)


SPECTRAL_PROPERTY_MIXERS = {
    "fourier": lambda size, hidden: FourierMixer((size,)),
    "global_filter": lambda size, hidden: GlobalFilter(hidden, (size,)),
    "afno": lambda size, hidden: AFNOMixer(hidden, (size,), num_blocks=2, sparsity_threshold=0.1),
    "afno_num_modes": lambda size, hidden: AFNOMixer(
        hidden, (size,), num_blocks=2, sparsity_threshold=0.1, num_modes=2
    ),
}


@pytest.mark.parametrize("name", SPECTRAL_PROPERTY_MIXERS)
def test_spectral_properties_describe_what_the_mixer_computes(name):
    """`spectral_properties` (spectrans' `get_spectral_properties`), checked against the mixer's outputs: only the
    global filter commutes with a circular shift over the FFT length, only AFNO is nonlinear (its weighting of a
    frequency depends on the input), none preserves the norm, and AFNO with `num_modes` passes a dropped frequency
    through its residual alone."""
    size, hidden = 8, 8
    mixer = random_init(SPECTRAL_PROPERTY_MIXERS[name](size, hidden)).double()
    properties = mixer.spectral_properties()
    x = torch.randn(3, size, hidden, dtype=torch.float64)
    out = mixer(x)
    assert properties["translation_equivariant"] == torch.allclose(mixer(x.roll(3, dims=1)), out.roll(3, dims=1))
    assert properties["adaptive"] == (not torch.allclose(mixer(2 * x), 2 * out))
    preserves_norm = torch.allclose(out.norm(), x.norm())
    assert properties["energy_preserving"] == properties["unitary"] == preserves_norm
    assert properties["real_output"] == (not out.is_complex()) and out.dtype == torch.float64
    assert properties["learnable_parameters"] == any(p.requires_grad for p in mixer.parameters())
    frequency = torch.cos(2 * math.pi * 3 * torch.arange(size, dtype=torch.float64) / size)  # |f| = 3 >= 2
    high = frequency[None, :, None].expand(1, size, hidden)
    passed_through = torch.allclose(mixer(high) - high, mixer(torch.zeros_like(high)))
    assert properties["mode_truncation"] == passed_through


@pytest.mark.parametrize("modes", [range(3), (0, 1, 2), np.arange(3), list(np.arange(3)), torch.arange(3)])
def test_afno_kept_modes_take_any_integer_sequence(modes):
    """numpy and torch indices (a 1-D array, or a list of their scalars) are stored as Python ints."""
    mixer = AFNOMixer(4, (8,), num_blocks=2, kept_modes=[modes])
    assert mixer.kept_modes == [[0, 1, 2]] and all(type(index) is int for index in mixer.kept_modes[0])


def test_afno_fixed_kept_modes_must_fit_a_smaller_call_grid():
    mixer = AFNOMixer(4, (8,), num_blocks=2, kept_modes=[[0, 4]])
    with pytest.raises(ValueError, match=r"kept_modes\[0\] must be .* distinct integer indices in \[0, 3\)"):
        mixer(torch.randn(1, 4, 4), fft_shape=(4,))
    assert mixer(torch.randn(1, 4, 4), fft_shape=(16,)).shape == (1, 4, 4)


def test_lowest_modes():
    assert lowest_modes(8, 3, half=True) == [0, 1, 2]
    assert lowest_modes(8, 3, half=False) == [0, 1, 2, 6, 7]
    assert lowest_modes(4, 10, half=False) == [0, 1, 2, 3]
    assert lowest_modes(4, 10, half=True) == [0, 1, 2]


def test_afno_truncation_zeroes_the_other_modes():
    mixer = random_init(AFNOMixer(4, (16,), num_blocks=1, sparsity_threshold=0.0, kept_modes=[[0, 1]]))
    x = torch.randn(1, 16, 4)
    spectrum = torch.fft.rfft(mixer(x) - x, dim=1, norm="ortho")
    assert spectrum[:, 2:].abs().max() < 1e-5
    assert spectrum[:, :2].abs().max() > 1e-2


@pytest.mark.parametrize("output_attentions", [False, True])
def test_attention_matches_loop_reference(output_attentions):
    attention = random_init(SelfAttention(8, 2), std=0.3).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    fast, weights = attention(x, mask, output_attentions=output_attentions)
    assert_same_outputs_and_gradients(fast, reference_attention(attention, x, mask), (x,))
    if output_attentions:
        assert weights.shape == (2, 2, 5, 5)
        assert weights[1, :, :, 3:].abs().max() == 0


def test_returned_attention_weights_are_those_the_context_used_in_training():
    """With dropout the returned weights are the dropped-out probabilities the context was computed from (as
    transformers' eager attention returns them), not the softmax before dropout."""
    query, key, value = torch.randn(3, 2, 2, 5, 4).unbind(0)
    key_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None]
    context, weights = multi_head_attention(query, key, value, key_mask, 0.5, True, "eager")
    torch.testing.assert_close(context, weights @ value)
    assert (weights[0] == 0).any() and weights.sum(-1).max() > 1.01  # dropped (no padding in row 0) and rescaled
    assert weights[1, :, :, 3:].abs().max() == 0


@pytest.mark.parametrize(
    "mixer",
    [
        FourierMixer((12,)),
        random_init(GlobalFilter(4, (12,))),
        random_init(AFNOMixer(4, (12,), num_blocks=2, sparsity_threshold=0.0)),
        random_init(SelfAttention(4, 2)),
    ],
    ids=["fourier", "global_filter", "afno", "attention"],
)
def test_padding_never_reaches_real_tokens(mixer):
    x = torch.randn(1, 9, 4)
    mask = torch.tensor([[1] * 6 + [0] * 3], dtype=torch.bool)
    garbage = x.clone()
    garbage[:, 6:] = 1e3 * torch.randn(1, 3, 4)

    def run(inputs):
        out = mixer(inputs, mask)
        return out[0] if isinstance(out, tuple) else out

    torch.testing.assert_close(run(x)[:, :6], run(garbage)[:, :6])
    alone = mixer(x[:, :6])
    alone = alone[0] if isinstance(alone, tuple) else alone
    torch.testing.assert_close(run(x)[:, :6], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_spectral_mixers_run_in_float32_under_half_precision(dtype):
    x = torch.randn(2, 10, 8)
    for mixer in (FourierMixer((16,), norm="ortho"), random_init(GlobalFilter(8, (16,)), 0.1),
                  random_init(AFNOMixer(8, (16,), num_blocks=2), 0.1)):
        full = mixer(x)
        half = mixer.to(dtype)(x.to(dtype))
        assert half.dtype == dtype
        torch.testing.assert_close(half.float(), full, atol=0.05, rtol=0.05)
        mixer.float()


def test_grid_larger_than_fft_size_is_rejected():
    with pytest.raises(ValueError, match="does not fit the FFT size"):
        GlobalFilter(4, (8,))(torch.randn(1, 9, 4))


@pytest.mark.parametrize("mixer", [GlobalFilter(8, (6, 6)), FourierMixer((6, 6)), AFNOMixer(8, (6, 6), num_blocks=2),
                                   GlobalFilter(8, (6,))], ids=["gfnet-2d", "fourier-2d", "afno-2d", "gfnet-1d"])
def test_input_with_another_number_of_grid_axes_is_rejected(mixer):
    x = torch.randn(1, 5, 8) if len(mixer.fft_shape) == 2 else torch.randn(1, 5, 5, 8)
    with pytest.raises(ValueError, match="does not fit the FFT size"):
        mixer(x)


def test_afno_mode_options():
    """`num_modes` keeps the lowest frequencies of every axis (the rfft axis, the last, is halved), at the call's FFT
    grid; `kept_modes` and `num_modes` exclude each other; no kept entry is no truncation."""
    assert lowest_kept_modes((8, 8), 2) == [[0, 1, 7], [0, 1]]
    mixer = random_init(AFNOMixer(8, (8, 8), num_blocks=2, num_modes=2, sparsity_threshold=0.0))
    assert mixer.kept_modes_at((16, 16)) == [[0, 1, 15], [0, 1]]
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        # AFNO adds its input back (the paper's skip inside the mixer): the rest is the filtered spectrum
        spectrum = torch.fft.rfftn(mixer(x) - x, dim=(1, 2), norm="ortho").abs().amax(-1)[0]  # (8, 5)
    assert (spectrum > 1e-6).any(1).nonzero().flatten().tolist() == [0, 1, 7]
    assert (spectrum > 1e-6).any(0).nonzero().flatten().tolist() == [0, 1]
    with pytest.raises(ValueError, match="at most one of `kept_modes`"):
        AFNOMixer(8, (8,), num_blocks=2, kept_modes=[[0, 3]], num_modes=2)
    assert not AFNOMixer(8, (8, 8), num_blocks=2, kept_modes=[None, None]).spectral_properties()["mode_truncation"]


def test_attention_pooling_keeps_padding_out_even_when_it_is_nan():
    pooling = random_init(AttentionPooling(8, 2))
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    reference = pooling(x[1:, :3], None)
    x[1, 3:] = float("nan")
    torch.testing.assert_close(pooling(x, mask)[1:], reference)


@pytest.mark.parametrize("build", [
    lambda: SelfAttention(12, 8), lambda: CrossAttention(12, 4, 8), lambda: AttentionPooling(12, 8),
    lambda: SelfAttention(12, 0),
])
def test_attention_heads_must_divide_the_width(build):
    """A view of 12 channels into 8 heads of 1 would regroup values across tokens (96 'tokens' from 64)."""
    with pytest.raises(ValueError, match="attention heads cannot split a width of 12"):
        build()


MIXERS_TAKING_WIDTH_8 = {
    "fourier": lambda: FourierMixer((12,)),
    "global_filter": lambda: GlobalFilter(8, (12,)),
    "afno": lambda: AFNOMixer(8, (12,), num_blocks=2),
    "attention": lambda: SelfAttention(8, 2),
    # the composites refuse before their gate, norms or projection fail (or a hard gate takes an empty batch); an
    # AFNO child adds its input back, padded positions included
    "adaptive": lambda: AdaptiveMixer([AFNOMixer(8, (12,), num_blocks=2), GlobalFilter(8, (12,))], 8, gate="soft"),
    "hard_gate": lambda: AdaptiveMixer([FourierMixer((12,)), GlobalFilter(8, (12,))], 8, gate="hard").eval(),
    "multiscale": lambda: MultiscaleMixer([AFNOMixer(8, (12,), num_blocks=2), SelfAttention(8, 2)], 8, fusion="concat"),
    "weighted": lambda: MultiscaleMixer([AFNOMixer(8, (12,), num_blocks=2), FourierMixer((12,))], 8, fusion="weighted"),
    "cascade": lambda: CascadeMixer([FourierMixer((12,)), SelfAttention(8, 2)], 8),
}


@pytest.mark.parametrize("name", sorted(MIXERS_TAKING_WIDTH_8))
def test_nan_at_padded_positions_reaches_no_gradient(name):
    """Self-attention built its queries, a cascade its norms' inputs, and the other composites their gate or fusion
    inputs (an AFNO child's output) from the padded positions as given: NaN there reached every projection's, norm's,
    gate's or fusion weight's gradient."""
    mixer = random_init(MIXERS_TAKING_WIDTH_8[name]().train())
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    x = torch.randn(2, 6, 8).masked_fill(~mask[..., None], math.nan).requires_grad_()
    out = mixer(x, mask)
    out = out[0] if isinstance(out, tuple) else out
    out[mask].sum().backward()
    assert all(torch.isfinite(tensor.grad).all() for tensor in [x, *mixer.parameters()])


@pytest.mark.parametrize("name", sorted(MIXERS_TAKING_WIDTH_8))
@pytest.mark.parametrize(
    "x, mask, message",
    [
        (lambda: torch.randn(2, 5, 7), None, r"x of shape \(batch, \*grid, hidden_size=8\), got \(2, 5, 7\)"),
        (lambda: torch.randint(0, 9, (2, 5, 8)), None,
         r"floating-point tensor x .* got shape \(2, 5, 8\) and dtype torch.int64"),
        (lambda: torch.randn(5, 8), None, r"shape \(batch, \*grid, hidden_size.*\), got shape \(5, 8\)"),
        (lambda: torch.randn(0, 5, 8), None, r"at least one example and one token, got x of shape \(0, 5, 8\)"),
        (lambda: torch.randn(2, 5, 8), lambda: torch.ones(2, 5),
         r"bool mask of shape \(batch, \*grid\) = \(2, 5\), .*got torch.float32 of shape \(2, 5\)"),
        (lambda: torch.randn(2, 5, 8), lambda: torch.ones(2, 4, dtype=torch.bool),
         r"bool mask .* got torch.bool of shape \(2, 4\)"),
    ],
    ids=["width", "integers", "no grid", "empty", "float mask", "mask shape"],
)
def test_mixers_called_directly_refuse_bad_inputs_naming_the_expected_form(name, x, mask, message):
    """Used to fail inside torch (a matmul, a view, `~` on floats, MKL's "inconsistent configuration"), return
    truncated int64 outputs, or add a 0/1 float mask to the attention scores as a bias."""
    mixer, x = MIXERS_TAKING_WIDTH_8[name](), x()
    if name == "fourier" and x.shape[-1] == 7:
        pytest.skip("the Fourier mixer has no weights per channel: any width is its input")
    with pytest.raises(ValueError, match=message):
        mixer(x, None if mask is None else mask())


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: GlobalFilter(8, (12,), activation="relu"),
         r"GlobalFilter `activation` must be one of \['identity', 'sigmoid', 'tanh'\], got 'relu'"),
        (lambda: FourierMixer((12,), norm="unitary"), r"`norm` must be one of \['backward', 'ortho', 'forward'\]"),
        (lambda: AFNOMixer(8, (12,), num_blocks=0), r"num_blocks \(0\) must be a positive divisor of hidden_size"),
        (lambda: GlobalFilter(8, (12.0,)), r"`fft_shape` must be a positive integer or a sequence of them"),
        (lambda: FourierMixer((0,)), r"`fft_shape` must be a positive int"),
    ],
    ids=["activation", "norm", "blocks", "float size", "zero size"],
)
def test_mixer_constructors_refuse_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_an_int_fft_shape_is_one_axis():
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(FourierMixer(12)(x), FourierMixer((12,))(x))


def test_the_layers_accept_the_configs_choices():
    """The layers keep their own tuples of allowed values (they take plain arguments, not configs)."""
    from fourierformers.configuration import configuration_spectral
    from fourierformers import spectral_layers

    assert spectral_layers.FFT_NORMS == configuration_spectral.FFT_NORMS
    assert spectral_layers.FILTER_ACTIVATIONS == configuration_spectral.FILTER_ACTIVATIONS


def nan_filled_empty(*size, **kwargs):
    """torch.empty with its memory made visible: NaN wherever a layer leaves a parameter uninitialised."""
    shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    return torch.full(tuple(shape), math.nan, **kwargs)


STANDALONE_LAYERS = {
    "global_filter": lambda: GlobalFilter(64, (32,)),
    "afno": lambda: AFNOMixer(64, (32,), num_blocks=4, hidden_size_factor=2),
    "layer_scale": lambda: LayerScale(16, 1e-5),
    "adaln_zero": lambda: AdaLNZero(16, 8),
    "multiscale_weighted": lambda: MultiscaleMixer([FourierMixer(8), FourierMixer(8)], 16, fusion="weighted"),
}


@pytest.mark.parametrize("name", STANDALONE_LAYERS)
def test_a_layer_built_alone_is_initialised(name):
    """A layer used on its own (outside a model, whose `_init_weights` would draw its weights) starts from defined
    values: GlobalFilter and AFNO from the global random stream with GFNet's std 0.02, so a seed reproduces them,
    the others at their documented constants."""
    with mock.patch("torch.empty", nan_filled_empty):
        torch.manual_seed(0)
        layer = STANDALONE_LAYERS[name]()
        torch.manual_seed(0)
        again = STANDALONE_LAYERS[name]()
    for (parameter_name, parameter), repeat in zip(layer.named_parameters(), again.parameters()):
        assert torch.isfinite(parameter).all(), parameter_name
        torch.testing.assert_close(parameter, repeat, rtol=0, atol=0)
        if name in ("global_filter", "afno"):
            assert abs(parameter.mean().item()) < 0.005 and 0.016 < parameter.std().item() < 0.024, parameter_name
    constants = {"layer_scale": 1e-5, "adaln_zero": 0.0, "multiscale_weighted": 0.0}
    if name in constants:
        assert all((parameter == constants[name]).all() for parameter in layer.parameters())


@pytest.mark.parametrize("entry", ["global_filter", "afno", {
    "strategy": "multiscale", "mixers": ["global_filter", "afno"], "fusion": "weighted"}])
def test_a_model_s_mixers_leave_the_random_stream_to_init_weights(entry):
    """Inside a model `_init_weights` draws the mixer weights; drawing them in the constructor as well would move
    the seeded stream, and every model would start from other weights than the same seed gave before."""
    config = GFNetConfig(hidden_size=16, num_hidden_layers=1, intermediate_size=32, afno_num_blocks=2)
    state = torch.get_rng_state()
    build_mixer(config, entry, (8,), config.hidden_size)
    assert torch.equal(torch.get_rng_state(), state)
