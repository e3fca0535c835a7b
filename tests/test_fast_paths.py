"""The fast paths of the spectral mixers against plain, obviously correct implementations (forward and gradients).

Each reference transforms the zero-padded input at the full fixed size `fft_shape` with a single library call
and crops, exactly as the mixer's docstring states the math.
"""

import copy
import math
import pickle

import pytest
import torch

from fourierformers import spectral_layers
from fourierformers.spectral_layers import (
    CHECKED_SAMPLES,
    AFNOMixer,
    FourierMixer,
    GlobalFilter,
    fast_fft_size,
    _sample_step,
    lowest_modes,
)


def _pad_to(x, fft_shape):
    """(B, *grid, D) -> (B, *fft_shape, D) with zeros after the real positions of every grid axis."""
    padded = x.new_zeros(x.shape[0], *fft_shape, x.shape[-1])
    padded[(slice(None), *(slice(0, n) for n in x.shape[1:-1]))] = x
    return padded


def _crop_like(y, x):
    return y[(slice(None), *(slice(0, n) for n in x.shape[1:-1]))]


def reference_fourier(x, fft_shape, norm):
    axes = tuple(range(1, x.ndim))
    return _crop_like(torch.fft.fftn(_pad_to(x, fft_shape).to(torch.complex64), dim=axes, norm=norm).real, x)


def reference_global_filter(x, fft_shape, mixer):
    axes = tuple(range(1, x.ndim - 1))
    spectrum = torch.fft.rfftn(_pad_to(x, fft_shape), dim=axes, norm="ortho") * mixer.complex_filter()
    return _crop_like(torch.fft.irfftn(spectrum, s=fft_shape, dim=axes, norm="ortho"), x)


def reference_block_mlp(spectrum, mixer):
    """The AFNO block MLP on a channels-last spectrum (..., D), written with complex einsums as in the original
    implementation."""
    shape = spectrum.shape
    z = spectrum.reshape(*shape[:-1], mixer.num_blocks, mixer.block_size)  # (..., k, d)
    w1, b1, w2, b2 = (torch.complex(p[0], p[1]) for p in (mixer.w1, mixer.b1, mixer.w2, mixer.b2))
    hidden = torch.einsum("...ki,kio->...ko", z, w1) + b1
    hidden = torch.complex(torch.relu(hidden.real), torch.relu(hidden.imag))
    out = torch.einsum("...ki,kio->...ko", hidden, w2) + b2
    shrink = mixer.sparsity_threshold
    out = torch.complex(
        torch.nn.functional.softshrink(out.real, shrink), torch.nn.functional.softshrink(out.imag, shrink)
    )
    return out.reshape(shape)


def reference_afno(x, fft_shape, mixer):
    axes = tuple(range(1, x.ndim - 1))
    spectrum = torch.fft.rfftn(_pad_to(x, fft_shape), dim=axes, norm="ortho")
    processed = reference_block_mlp(spectrum, mixer)
    if mixer.kept_modes is not None:
        keep = torch.zeros(spectrum.shape[1:-1], dtype=torch.bool)
        keep[torch.meshgrid(*[torch.tensor(modes) for modes in mixer.kept_modes], indexing="ij")] = True
        processed = processed * keep[..., None]
    y = torch.fft.irfftn(processed, s=fft_shape, dim=axes, norm="ortho")
    return _crop_like(y, x) + x


def assert_same_forward_and_gradients(fast, reference, inputs, parameters):
    """`fast` and `reference` map `inputs` to equal outputs and give equal gradients for inputs and parameters."""
    fast_out = fast(inputs)
    reference_out = reference(inputs)
    torch.testing.assert_close(fast_out, reference_out, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(fast_out)
    leaves = [inputs, *parameters]
    fast_grads = torch.autograd.grad(fast_out, leaves, upstream)
    reference_grads = torch.autograd.grad(reference_out, leaves, upstream)
    for fast_grad, reference_grad in zip(fast_grads, reference_grads):
        torch.testing.assert_close(fast_grad, reference_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 7, 16, 31, 97, 121, 1000])
def test_fast_fft_size_is_smallest_5_smooth_size(size):
    def smooth(n):
        for prime in (2, 3, 5):
            while n % prime == 0:
                n //= prime
        return n == 1

    found = fast_fft_size(size)
    assert found >= size and smooth(found)
    assert not any(smooth(n) for n in range(size, found))


@pytest.mark.parametrize("hidden_size", [16, 15])
@pytest.mark.parametrize("norm", ["backward", "ortho"])
@pytest.mark.parametrize("grid_shape, fft_shape", [((5,), (12,)), ((12,), (12,)), ((3, 4), (5, 6)), ((1, 6), (4, 6))])
def test_fourier_mixer_matches_full_complex_fft(grid_shape, fft_shape, norm, hidden_size):
    mixer = FourierMixer(fft_shape, norm=norm)
    x = torch.randn(2, *grid_shape, hidden_size, dtype=torch.float64).float().requires_grad_()
    assert_same_forward_and_gradients(mixer, lambda t: reference_fourier(t, fft_shape, norm), x, [])


@pytest.mark.parametrize("norm", ["backward", "ortho"])
@pytest.mark.parametrize("grid_shape, fft_shape", [((5,), (12,)), ((12,), (12,)), ((3, 4), (5, 6)), ((1, 6), (4, 6))])
def test_fourier_full_transform_equals_halved_transform(grid_shape, fft_shape, norm):
    """`full_transform`, which small GPU inputs and exported graphs take, against the halved transform with its
    mirrored copies (the CPU path), forward and gradients."""
    mixer = FourierMixer(fft_shape, norm=norm)
    x = torch.randn(2, *grid_shape, 15).requires_grad_()
    assert_same_forward_and_gradients(lambda t: mixer.full_transform(_pad_to(t, fft_shape), grid_shape), mixer, x, [])


def test_fourier_mixer_equals_transformers_fnet_fourier_transform_at_full_length():
    x = torch.randn(3, 32, 24)
    torch.testing.assert_close(FourierMixer((32,))(x), torch.fft.fftn(x, dim=(1, 2)).real, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("hidden_size", [16, 15])
@pytest.mark.parametrize("length, fft_length", [(1, 64), (2, 64), (7, 64), (20, 75), (64, 4096)])
def test_fourier_short_path_equals_full_length_fft(length, fft_length, hidden_size, norm):
    mixer = FourierMixer((fft_length,), norm=norm)
    assert mixer.uses_short_fourier(length)
    # Inputs scaled so that outputs are about 1 and the tolerance is relative to them; the gradient of an input
    # sums n D upstream values times the normalisation.
    size = fft_length * hidden_size
    norm_factor = {"backward": 1.0, "ortho": size**-0.5, "forward": 1 / size}[norm]
    gradient_scale = norm_factor * (length * hidden_size) ** 0.5
    x = torch.randn(2, length, hidden_size).div(gradient_scale).requires_grad_()
    fast_out, reference_out = mixer(x), reference_fourier(x, (fft_length,), norm)
    torch.testing.assert_close(fast_out, reference_out, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(fast_out)
    torch.testing.assert_close(
        torch.autograd.grad(fast_out, x, upstream)[0],
        torch.autograd.grad(reference_out, x, upstream)[0],
        atol=1e-5 * gradient_scale,
        rtol=1e-5,
    )


def test_the_short_fourier_matrix_follows_a_changed_normalisation():
    """The cached DFT matrix holds the normalisation: a mixer whose `norm` was set after a call reused the old one."""
    mixer, x = FourierMixer((24,), norm="backward"), torch.randn(2, 10, 16)
    mixer(x)
    mixer.norm = "ortho"
    torch.testing.assert_close(mixer(x), reference_fourier(x, (24,), "ortho"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length, fft_length", [(40, 64), (64, 64), (400, 4096)])
def test_fourier_uses_full_length_fft_when_short_path_does_not_pay(length, fft_length):
    assert not FourierMixer((fft_length,)).uses_short_fourier(length)


def _global_filter(hidden_size, fft_shape, activation="identity"):
    mixer = GlobalFilter(hidden_size, fft_shape, activation=activation)
    torch.nn.init.normal_(mixer.complex_weight, std=0.5)
    return mixer


@pytest.mark.parametrize("activation", ["identity", "sigmoid"])
@pytest.mark.parametrize("fft_length", [64, 75])
@pytest.mark.parametrize("length", [1, 2, 5, 16, 20])
def test_global_filter_short_path_equals_full_length_filter(length, fft_length, activation):
    mixer = _global_filter(8, (fft_length,), activation)
    assert mixer.short_fft_size(batch_size=2, length=length) is not None
    x = torch.randn(2, length, 8, requires_grad=True)
    assert_same_forward_and_gradients(
        mixer, lambda t: reference_global_filter(t, (fft_length,), mixer), x, [mixer.complex_weight]
    )


@pytest.mark.parametrize("length", [40, 64])
def test_global_filter_uses_full_length_fft_when_short_path_does_not_pay(length):
    mixer = _global_filter(8, (64,))
    assert mixer.short_fft_size(batch_size=2, length=length) is None
    x = torch.randn(2, length, 8, requires_grad=True)
    assert_same_forward_and_gradients(
        mixer, lambda t: reference_global_filter(t, (64,), mixer), x, [mixer.complex_weight]
    )


def test_global_filter_short_path_honours_mask():
    mixer = _global_filter(8, (64,))
    x = torch.randn(2, 10, 8)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    masked = mixer(x, mask)
    torch.testing.assert_close(masked[1, :6], mixer(x[1:, :6])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked, reference_global_filter(x * mask[..., None], (64,), mixer), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grid_shape, fft_shape", [((3, 4), (6, 8)), ((6, 8), (6, 8))])
def test_global_filter_2d_matches_reference(grid_shape, fft_shape):
    mixer = _global_filter(16, fft_shape)
    x = torch.randn(2, *grid_shape, 16, requires_grad=True)
    assert_same_forward_and_gradients(
        mixer, lambda t: reference_global_filter(t, fft_shape, mixer), x, [mixer.complex_weight]
    )


@pytest.mark.parametrize("num_modes", [None, 3])
@pytest.mark.parametrize("grid_shape, fft_shape", [((5,), (16,)), ((16,), (16,)), ((3, 4), (6, 8))])
def test_afno_matches_reference(grid_shape, fft_shape, num_modes):
    kept_modes = None
    if num_modes is not None:
        kept_modes = [
            lowest_modes(size, num_modes, half=axis == len(fft_shape) - 1) for axis, size in enumerate(fft_shape)
        ]
    mixer = AFNOMixer(16, fft_shape, num_blocks=4, sparsity_threshold=0.01, kept_modes=kept_modes)
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    x = torch.randn(2, *grid_shape, 16, requires_grad=True)
    assert_same_forward_and_gradients(mixer, lambda t: reference_afno(t, fft_shape, mixer), x, list(mixer.parameters()))


@pytest.mark.parametrize("hidden_size_factor", [1, 2])
def test_afno_block_mlp_matches_complex_einsum(hidden_size_factor):
    mixer = AFNOMixer(16, (8,), num_blocks=4, hidden_size_factor=hidden_size_factor, sparsity_threshold=0.05)
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    spectrum = torch.randn(2, 16, 3, 5, dtype=torch.complex64).requires_grad_()  # channels-first, a 2-D grid
    assert_same_forward_and_gradients(
        mixer.block_mlp,
        lambda z: reference_block_mlp(z.movedim(1, -1), mixer).movedim(-1, 1),
        spectrum,
        list(mixer.parameters()),
    )


def _random_afno(hidden_size, fft_shape):
    mixer = AFNOMixer(hidden_size, fft_shape, num_blocks=2)
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return mixer


# the mixers that cache tensors derived from their weights in inference (`SpectralMixer.derived_from_weights`),
# built for 64 tokens, with their references
CACHING_MIXERS = {
    "global_filter": (lambda: _global_filter(8, (64,)), lambda x, mixer: reference_global_filter(x, (64,), mixer)),
    "afno": (lambda: _random_afno(8, (64,)), lambda x, mixer: reference_afno(x, (64,), mixer)),
}


def test_inference_cache_sees_a_weight_relaid_in_the_same_memory():
    """`param.data = param.data.transpose(...)` keeps memory, shape, dtype and version: the strides tell."""
    mixer = _random_afno(8, (64,))  # square block matrices: the transposed weight has the same shape
    x = torch.randn(2, 60, 8)
    with torch.no_grad():
        mixer(x)
        mixer.w1.data = mixer.w1.data.transpose(-1, -2)
        torch.testing.assert_close(mixer(x), reference_afno(x, (64,), mixer), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [60, 8])  # the full-length and the short-input path
def test_inference_cache_sees_a_changed_filter_activation(length):
    """The cached filter was keyed by dtype and grid only: after `mixer.activation = "sigmoid"` inference went on
    with the identity filter, while a call with gradients used the new one."""
    mixer = _global_filter(8, (64,))
    x = torch.randn(2, length, 8)
    with torch.no_grad():
        mixer(x)
        mixer.activation = "sigmoid"
        torch.testing.assert_close(mixer(x), reference_global_filter(x, (64,), mixer), atol=1e-5, rtol=1e-5)
        mixer.activation = "Sigmoid"  # ran as the identity filter
        with pytest.raises(ValueError, match=r"`activation` must be one of .*got 'Sigmoid'"):
            mixer(x)


@pytest.mark.parametrize("hidden_size,fft_length", [(64, 64), (256, 4096), (96, 30), (256, 8)])
def test_inference_cache_sees_one_channel_of_the_filter_edited_through_data(hidden_size, fft_length):
    """Zeroing one channel through `.data` (no version bump) touches 2 F of the filter's F * D * 2 values. With an even
    step between the compared values, every such edit of channels 1 to 7 of a 64-channel filter went unseen."""
    mixer = _global_filter(hidden_size, (fft_length,))
    x = torch.randn(1, fft_length, hidden_size)
    with torch.no_grad():
        mixer(x)
        for channel in (1, 3, hidden_size // 2 + 1, hidden_size - 1):
            mixer.complex_weight.data[:, channel] = 0.0
            assert mixer(x)[..., channel].abs().max() == 0


@pytest.mark.parametrize("name", sorted(CACHING_MIXERS))
def test_inference_cache_sees_an_edit_made_while_it_computes(name, monkeypatch):
    """Another thread's edit through `.data` that lands while the cached tensors are being computed is seen at the
    next call (a sample of the weights taken after the computation matched the edited weights, and paired them with
    the tensors computed from the old ones for good)."""
    build, reference = CACHING_MIXERS[name]
    mixer = build()
    derived_from_weights = mixer.derived_from_weights

    def edited_meanwhile(cache_name, weights, key, compute):
        def compute_then_edit():
            value = compute()
            for weight in weights:
                weight.data.mul_(1.5)
            return value

        return derived_from_weights(cache_name, weights, key, compute_then_edit)

    x = torch.randn(2, 60, 8)
    with torch.no_grad():
        monkeypatch.setattr(mixer, "derived_from_weights", edited_meanwhile)
        mixer(x)
        monkeypatch.undo()
        torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)


def test_inference_cache_is_skipped_for_weights_in_shared_memory():
    """`share_memory()` (torch.multiprocessing, Hogwild): another process edits the weights in place without moving
    this process's version counter. A second tensor on the same storage, with its own counter, stands for it here,
    and edits one value between the compared ones of a filter too large to compare in full."""
    mixer = _global_filter(64, (256,)).share_memory()
    step = _sample_step(mixer.complex_weight.numel(), 2 * 64)
    # the real part of a channel at frequency 5 (the imaginary parts at frequency 0 do not reach a real output)
    index = next(i for i in range(2 * 64 * 5, mixer.complex_weight.numel(), 2) if i % step)
    x = torch.randn(1, 200, 64)
    with torch.no_grad():
        mixer(x)
        weight = mixer.complex_weight
        other_process_view = torch.empty(0).set_(
            weight.untyped_storage(), weight.storage_offset(), weight.shape, weight.stride()
        )
        other_process_view.view(-1)[index] += 10.0
        assert other_process_view._version != weight._version
        torch.testing.assert_close(mixer(x), reference_global_filter(x, (256,), mixer), atol=1e-4, rtol=1e-5)


def test_afno_cache_keeps_no_more_than_a_chunk_of_repeated_weights():
    """Many short inputs put many examples in one chunk of the batch: the block weights repeated for each of them
    are not kept (1024 one-token inputs kept a gigabyte in a small model)."""
    mixer = _random_afno(64, (4,))
    x = torch.randn(256, 2, 64)
    with torch.no_grad():
        for _ in range(2):  # built, then reused
            torch.testing.assert_close(mixer(x), reference_afno(x, (4,), mixer), atol=1e-5, rtol=1e-5)
    cached = sum(t.numel() * t.element_size() for entry in mixer._inference_cache.values() for t in entry[-1])
    assert 0 < cached <= 2 * sum(p.numel() * p.element_size() for p in mixer.parameters())


def test_global_filter_keeps_its_built_grid_and_one_other_in_the_cache():
    """Images of many sizes (`interpolate_pos_encoding`) would otherwise each leave a resized filter behind."""
    mixer = _global_filter(8, (4, 6))
    with torch.no_grad():
        for grid in [(4, 6), (5, 6), (6, 7), (8, 8), (4, 6)]:
            x = torch.randn(1, *grid, 8)
            fft_shape = tuple(max(n, size) for n, size in zip(grid, (4, 6)))
            mixer(x, fft_shape=fft_shape)
    assert sorted(mixer._inference_cache) == ["channels_first", "channels_first_resized"]


@pytest.mark.parametrize(
    "hidden_size", [1, 2, 3, 8, 48, 64, 96, 100, 256, 352, 384, 416, 704, 768, 1000, 1001, 1024, 1536, 2047, 2048]
)
def test_compared_filter_values_cover_every_channel(hidden_size):
    """For GFNet filters (*freq_shape, D, 2) of any size, the compared values fall on every channel, so that a
    channel edited through `.data` is seen; and at least `CHECKED_SAMPLES` values (all of a small filter) are
    compared. A step coprime to 210 alone missed channels of widths with larger prime factors (704 = 64 * 11)."""
    for freq_shape in [(1,), (2,), (5,), (33,), (65,), (257,), (1025,), (2049,), (8193,), (14, 8), (64, 33)]:
        shape = (*freq_shape, hidden_size, 2)
        numel = math.prod(shape)
        step = _sample_step(numel, math.prod(shape[1:]))
        positions = torch.arange(0, numel, step)
        assert len(positions) >= min(numel, CHECKED_SAMPLES)
        channels = (positions % (2 * hidden_size)) // 2
        assert torch.equal(channels.unique(), torch.arange(hidden_size)), (freq_shape, step)


@pytest.mark.parametrize("name", sorted(CACHING_MIXERS))
def test_mixers_built_in_inference_mode_run(name):
    """Parameters created in `torch.inference_mode()` (a model loaded there) have no version counter: the cache is
    skipped for them, and the outputs are right on every call."""
    build, reference = CACHING_MIXERS[name]
    x = torch.randn(2, 60, 8)
    with torch.inference_mode():
        mixer = build()
        for _ in range(2):
            torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)
        for parameter in mixer.parameters():
            parameter.mul_(1.5)
        torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CACHING_MIXERS))
def test_moving_or_casting_a_mixer_drops_its_inference_cache(name):
    """The cache would keep the old weights (through its sample views) and the tensors derived from them alive."""
    build, reference = CACHING_MIXERS[name]
    mixer = build()
    x = torch.randn(2, 60, 8)
    with torch.no_grad():
        mixer(x)
        assert mixer._inference_cache
        old_weight = next(mixer.parameters()).data
        mixer.double()
        assert not mixer._inference_cache and next(mixer.parameters()).data_ptr() != old_weight.data_ptr()
        torch.testing.assert_close(mixer(x.double()), reference(x.double(), mixer), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(CACHING_MIXERS))
def test_copies_and_pickles_leave_the_inference_cache_behind(name):
    """A pickle (torch.save of a model, worker processes) or deep copy (EMA) after inference used to carry the cached
    tensors: it is the size it was before the first call, and the copy computes the same outputs."""
    build, reference = CACHING_MIXERS[name]
    mixer = build()
    x = torch.randn(2, 60, 8)
    size = len(pickle.dumps(mixer))
    with torch.no_grad():
        mixer(x)
        assert mixer._inference_cache
        copies = [copy.deepcopy(mixer), pickle.loads(pickle.dumps(mixer))]
        assert len(pickle.dumps(mixer)) == size
        for duplicate in copies:
            assert not duplicate._inference_cache
            torch.testing.assert_close(duplicate(x), reference(x, mixer), atol=1e-5, rtol=1e-5)


def test_copies_leave_the_short_fourier_matrix_behind():
    mixer = FourierMixer((64,))
    with torch.no_grad():
        mixer(torch.randn(1, 5, 8))
    assert mixer._dft_cache is not None
    assert copy.deepcopy(mixer)._dft_cache is None and pickle.loads(pickle.dumps(mixer))._dft_cache is None


@pytest.mark.parametrize("name", sorted(CACHING_MIXERS))
def test_inference_cache_follows_weights_batch_sizes_and_dtypes(name):
    """Cached filters and block weights are reused while nothing changes, and rebuilt when a weight changes in place
    (also through `.data`, which bypasses the version counter, as an EMA update does) or is loaded, for another batch
    size (AFNO's are repeated per example) and another dtype. 10 tokens take GlobalFilter's short path (its
    time-domain kernel), 60 the full-length one (its channels-first filter)."""
    build, reference = CACHING_MIXERS[name]
    mixer = build()
    with torch.no_grad():
        for batch, length in [(2, 10), (3, 10), (2, 60), (3, 60), (2, 10)]:
            x = torch.randn(batch, length, 8)
            torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)
        cached = {key: entry[-1] for key, entry in mixer._inference_cache.items()}
        mixer(x)
        assert all(mixer._inference_cache[key][-1] is value for key, value in cached.items())
        for parameter in mixer.parameters():
            parameter.mul_(1.5)
        torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)
        for parameter in mixer.parameters():
            parameter.data.lerp_(torch.randn_like(parameter), 0.1)
        torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)
        mixer.load_state_dict({key: torch.randn_like(value) for key, value in mixer.state_dict().items()})
        torch.testing.assert_close(mixer(x), reference(x, mixer), atol=1e-5, rtol=1e-5)
    mixer.double()
    x64 = x.double()
    with torch.no_grad():
        torch.testing.assert_close(mixer(x64), reference(x64, mixer), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name, length", [("global_filter", 10), ("global_filter", 60), ("afno", 60), ("fourier", 10)])
def test_mixer_trains_after_an_inference_mode_call(name, length):
    """A mixer with frozen weights (fine-tuning other layers only), or none (FNet's, whose short path caches a DFT
    matrix), still trains after a call in `torch.inference_mode()`: autograd refuses to save tensors made there for
    a backward pass, so nothing cached there may reach it."""
    build, reference = {
        **CACHING_MIXERS,
        "fourier": (lambda: FourierMixer((64,)), lambda x, mixer: reference_fourier(x, (64,), "backward")),
    }[name]
    mixer = build().requires_grad_(False)
    x = torch.randn(2, length, 8)
    with torch.inference_mode():
        mixer(x)
    assert_same_forward_and_gradients(mixer, lambda t: reference(t, mixer), x.requires_grad_(), [])


@pytest.mark.parametrize("name", ["fourier", "global_filter", "afno"])
def test_mixers_give_the_same_results_batch_by_batch_and_in_chunks(name, monkeypatch):
    mixer = {
        "fourier": lambda: FourierMixer((16,), norm="ortho"),
        "global_filter": lambda: _global_filter(8, (16,)),
        "afno": lambda: AFNOMixer(8, (16,), num_blocks=2),
    }[name]()
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    x = torch.randn(3, 14, 8, requires_grad=True)
    mask = torch.ones(3, 14, dtype=torch.bool)
    mask[1, 9:] = False
    whole = mixer(x, mask)
    monkeypatch.setattr(spectral_layers, "CHUNK_BYTES", 14 * 8 * 4)  # one example per chunk
    assert len(spectral_layers._batch_chunks(x, mask)) == 3
    chunked = mixer(x, mask)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)
    upstream = torch.randn_like(whole)
    leaves = [x, *mixer.parameters()]
    for chunked_grad, whole_grad in zip(
        torch.autograd.grad(chunked, leaves, upstream), torch.autograd.grad(whole, leaves, upstream)
    ):
        torch.testing.assert_close(chunked_grad, whole_grad, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "name, fft_shape, grid",
    [
        ("fourier", (16,), (14,)),
        ("fourier", (64,), (5,)),  # the short path (`short_fourier`)
        ("fourier", (6, 8), (5, 8)),
        ("global_filter", (16,), (14,)),
        ("global_filter", (64,), (5,)),  # the short path (`short_convolution`)
        ("global_filter", (6, 8), (5, 8)),
        ("afno", (16,), (14,)),
        ("afno", (6, 8), (5, 8)),
        ("afno_scattered_modes", (16,), (14,)),
    ],
)
def test_chunks_write_into_one_output_without_autograd(name, fft_shape, grid, dtype, monkeypatch):
    """Without autograd each chunk of a large batch writes its rows of one output tensor (`SpectralMixer.forward`):
    the same values as the whole batch in one chunk, in a contiguous tensor of the input's dtype, for every path."""
    mixer = {
        "fourier": lambda: FourierMixer(fft_shape, norm="ortho"),
        "global_filter": lambda: _global_filter(8, fft_shape),
        "afno": lambda: AFNOMixer(8, fft_shape, num_blocks=2),
        "afno_scattered_modes": lambda: AFNOMixer(8, fft_shape, num_blocks=2, kept_modes=[[0, 2, 5]]),
    }[name]()
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    mixer.to(dtype)
    x = torch.randn(5, *grid, 8, dtype=dtype)
    mask = torch.ones(5, *grid, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        whole = mixer(x, mask)
        monkeypatch.setattr(spectral_layers, "CHUNK_BYTES", 2 * x[0].numel() * 4)  # chunks of 2, 2 and 1 examples
        assert [len(chunk) for chunk, _ in spectral_layers._batch_chunks(x, mask)] == [2, 2, 1]
        chunked = mixer(x, mask)
    assert chunked.dtype == dtype and chunked.is_contiguous()
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)


def test_a_compiled_mixer_pickles_and_copies_as_compiled():
    """`SpectralMixer.__getstate__` keeps nn.Module's own: a compiled module's compiled call is left out of the
    state, so a deep copy runs its own weights (not the original's) and a pickle does not fail on it."""
    mixer = GlobalFilter(8, (12,))
    torch.nn.init.normal_(mixer.complex_weight)
    mixer.compile()
    duplicate = copy.deepcopy(mixer)
    with torch.no_grad():
        duplicate.complex_weight.zero_()
    assert duplicate._compiled_call_impl is None and pickle.loads(pickle.dumps(mixer)) is not None
    with torch.no_grad():
        assert duplicate.forward(torch.randn(1, 5, 8)).abs().max() == 0


def test_inference_cache_sees_a_few_values_edited_in_place():
    """An in-place edit under `torch.no_grad()` bumps the weight's version: the cache recomputes even where the edited
    value is not among the sampled ones it compares."""
    mixer = _global_filter(256, (64,))
    x = torch.randn(1, 64, 256)
    with torch.no_grad():
        mixer(x)
        mixer.complex_weight[5, 7, 1] += 1.0
        cached = mixer(x)
    mixer._inference_cache.clear()
    with torch.no_grad():
        torch.testing.assert_close(cached, mixer(x), atol=0, rtol=0)


def test_short_inputs_at_another_fft_length_use_that_length():
    """The short-input paths (a DFT matrix for the Fourier mixer, a time-domain kernel for the global filter) follow
    a call's `fft_shape`: the Fourier mixer's equals one built at that length, the filter's the filter resized to it."""
    x = torch.randn(1, 4, 8)
    fourier = FourierMixer((64,))
    fourier(x)  # caches the matrix of the built length
    torch.testing.assert_close(fourier(x, fft_shape=(128,)), FourierMixer((128,))(x), atol=1e-5, rtol=1e-5)
    mixer = _global_filter(8, (64,))
    spectrum = torch.fft.rfft(_pad_to(x, (128,)), dim=1) * mixer.complex_filter(torch.float32, (128,))
    expected = torch.fft.irfft(spectrum, n=128, dim=1)[:, :4]
    torch.testing.assert_close(mixer(x, fft_shape=(128,)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 8), (1, 5, 8)])
def test_filter_gradient_does_not_depend_on_the_input_needing_one(shape):
    """The filter's gradient is the same whether or not the input requires a gradient (separate recorded paths)."""
    mixer = _global_filter(8, (16,))
    x = torch.randn(*shape)
    mixer(x).square().sum().backward()
    alone = mixer.complex_weight.grad.clone()
    mixer.zero_grad()
    mixer(x.requires_grad_()).square().sum().backward()
    torch.testing.assert_close(mixer.complex_weight.grad, alone, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("fft_length", [6, 10])
def test_vectorized_jacobian_of_the_filter_equals_the_loop(fft_length):
    """`jacobian(vectorize=True)` batches the backward (outside the eager CPU path): the transposes between tokens and
    channels-first spectra must hold there too, also where frequencies and channels are the same number."""
    mixer = _global_filter(4, (fft_length,))
    x = torch.randn(1, fft_length, 4)
    weight = mixer.complex_weight.detach().clone()

    def outputs(w):
        return torch.func.functional_call(mixer, {"complex_weight": w}, (x,))

    loop = torch.autograd.functional.jacobian(outputs, weight, vectorize=False)
    torch.testing.assert_close(torch.autograd.functional.jacobian(outputs, weight, vectorize=True), loop,
                               atol=1e-6, rtol=1e-6)


def test_inference_cache_sees_the_high_frequencies_edited_through_data():
    """The compared values are spread over the whole filter: zeroing its upper half of frequencies through `.data`
    (no version bump) changes some of them."""
    mixer = _global_filter(256, (64,))
    x = torch.randn(1, 64, 256)
    with torch.no_grad():
        mixer(x)
        mixer.complex_weight.data[16:] = 0
        cached = mixer(x)
    mixer._inference_cache.clear()
    with torch.no_grad():
        torch.testing.assert_close(cached, mixer(x), atol=0, rtol=0)


@pytest.mark.parametrize("build", [lambda: AFNOMixer(1, (8,), num_blocks=1, init_std=0.3),
                                   lambda: _global_filter(1, (8,))], ids=["afno", "gfnet"])
def test_one_channel_mixers_train(build):
    """With one channel the staggered inverse transform's output would be a view that the residual is added to in
    place; forward and gradients must equal those of the functional (non-eager) path."""
    mixer = build()
    x = torch.randn(2, 8, 1, requires_grad=True)
    out = mixer(x)
    out.square().sum().backward()

    def loss(inputs):
        return torch.func.functional_call(mixer, dict(mixer.named_parameters()), (inputs,)).square().sum()

    with torch.no_grad():
        torch.testing.assert_close(out, mixer(x.detach()), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(x.grad, torch.func.grad(loss)(x.detach()), atol=1e-5, rtol=1e-5)
