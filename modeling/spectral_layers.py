"""Token mixers and small layers of fourierformers, in plain PyTorch with plain keyword arguments.

Every mixer works on channels-last hidden states `x: (B, *grid, D)` (a sequence has grid `(T,)`, an image
`(H, W)`) and an optional boolean `mask: (B, *grid)` that is True on real tokens. Spectral mixers

- zero the padded positions before transforming, so padding never leaks into real tokens;
- transform at a fixed size `fft_shape` (the model's built grid, `max_position_embeddings` for text) and crop back,
  so the result at a real position does not depend on how much padding the batch has; a call may name another FFT grid
  (`forward(x, fft_shape=...)`), which an image larger than the model's `image_size` uses;
- compute their FFTs in float32 and cast back, because half-precision FFTs are inaccurate (and cuFFT only
  supports power-of-two sizes in half precision).
"""

import contextlib
import itertools
import math
import numbers
import operator
from collections.abc import Sequence

import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout

INTERPOLATION_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def sinusoidal_position_table(num_positions, dim):
    """The fixed sin/cos position table of "Attention Is All You Need": (num_positions, dim)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def resize_grid(values, grid_shape, align_corners=False):
    """Interpolate channels-last `values: (*grid, C)` to `(*grid_shape, C)`, each channel independently
    (bicubic in 2-D, linear / trilinear in 1-D / 3-D), differentiably, in float32 (float64 stays float64)."""
    spatial_dims = len(grid_shape)
    if tuple(values.shape[:spatial_dims]) == tuple(grid_shape):
        return values
    planes = values.to(torch.promote_types(values.dtype, torch.float32)).movedim(-1, 0)[None]  # (1, C, *grid)
    resized = F.interpolate(planes, size=tuple(grid_shape), mode=INTERPOLATION_MODES[spatial_dims],
                            align_corners=align_corners)
    return resized[0].movedim(0, -1).to(values.dtype)


def resize_filter(complex_weight, fft_shape):
    """A global filter `complex_weight: (*freq, D, 2)` resized to the frequencies `(*fft_shape[:-1],
    fft_shape[-1] // 2 + 1)` of an rfftn over `fft_shape`: `resize_grid` with `align_corners=True` over the
    unshifted frequency layout, the real and imaginary planes of each channel independently (the original GFNet's
    resize for fine-tuning at 384 px)."""
    freq_shape = (*fft_shape[:-1], fft_shape[-1] // 2 + 1)
    planes = complex_weight.flatten(-2)  # (*freq, 2D): real and imaginary planes side by side
    return resize_grid(planes, freq_shape, align_corners=True).unflatten(-1, complex_weight.shape[-2:])


def real_tokens(tokens, mask):
    """`tokens` (B, *grid, D) with the padded positions (`mask` (B, *grid) False) set to zero: whatever they hold,
    even NaN or infinity, then cannot reach a real token through a weighted sum (where a zero weight would still
    give 0 * NaN = NaN)."""
    return tokens if mask is None else tokens.masked_fill(~mask[..., None], 0.0)


def masked_mean(x, mask):
    """(B, *grid, D) -> (B, D): the mean over real tokens (all tokens when `mask` is None)."""
    tokens = x.flatten(1, -2)  # (B, N, D)
    if mask is None:
        return tokens.mean(dim=1)
    mask = mask.flatten(1)  # (B, N)
    # summed in at least float32, as `mean` does: a float16 sum of thousands of tokens overflows
    dtype = torch.promote_types(tokens.dtype, torch.float32)
    total = real_tokens(tokens, mask).sum(dim=1, dtype=dtype)
    return (total / mask.sum(dim=1, keepdim=True).to(dtype)).to(tokens.dtype)


def masked_max(x, mask):
    """(B, *grid, D) -> (B, D): the per-channel maximum over real tokens (all tokens when `mask` is None)."""
    tokens = x.flatten(1, -2)  # (B, N, D)
    if mask is not None:
        tokens = tokens.masked_fill(~mask.flatten(1)[..., None], torch.finfo(tokens.dtype).min)
    return tokens.amax(dim=1)


def head_size(hidden_size, num_heads):
    """Channels per head, `hidden_size // num_heads`. A width the heads do not divide is refused: splitting it into
    heads with a view would silently regroup values across tokens."""
    if num_heads < 1 or hidden_size % num_heads:
        raise ValueError(
            f"{num_heads} attention heads cannot split a width of {hidden_size}: `num_attention_heads` must be a "
            f"positive divisor of every width that uses attention (here {hidden_size})."
        )
    return hidden_size // num_heads


class AttentionPooling(nn.Module):
    """(B, *grid, D) -> (B, D): a weighted mean of the real tokens with learned, input-dependent weights.

    Each of `num_heads` heads scores every token with a linear map of its hidden state and averages its own
    D / num_heads channels with the softmax of those scores over the real tokens: one learned query per head
    (SigLIP's attention-pooling head without its projections), linear in length. With the small initial weights
    the scores are small, so a new model starts close to mean pooling.
    """

    def __init__(self, hidden_size, num_heads):
        super().__init__()
        self.num_heads = num_heads
        head_size(hidden_size, num_heads)  # refuses a width the heads do not divide
        self.scores = nn.Linear(hidden_size, num_heads)

    def forward(self, x, mask=None):
        tokens = x.flatten(1, -2)  # (B, N, D)
        scores = self.scores(tokens)  # (B, N, H)
        if mask is not None:
            scores = scores.masked_fill(~mask.flatten(1)[..., None], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1)  # (B, N, H), summing to 1 over the real tokens
        heads = real_tokens(tokens, None if mask is None else mask.flatten(1)).unflatten(-1, (self.num_heads, -1))
        return torch.einsum("bnh,bnhc->bhc", weights, heads).flatten(1)


FFT_DTYPES = (torch.float32, torch.float64)
FFT_NORMS = ("backward", "ortho", "forward")  # torch.fft's, the config's `fourier_norm`
FILTER_ACTIVATIONS = ("identity", "sigmoid", "tanh")  # of `GlobalFilter`, the config's `filter_activation`
REAL_DTYPES = {torch.complex64: torch.float32, torch.complex128: torch.float64}  # of the spectra of FFT_DTYPES


def _fft_input(x, mask):
    """Zero the padded positions of x: (B, *grid, D) (mask: (B, *grid) bool) and upcast to the FFT dtype:
    float32, or float64 for float64 inputs (gradient checks)."""
    x = real_tokens(x, mask)
    return x if x.dtype in FFT_DTYPES else x.float()


def _in_dtype(x, dtype):
    """x cast to `dtype`; x itself, without a call into torch, where it has that dtype already (each torch call
    costs microseconds in a model whose caches the large ops have just flushed)."""
    return x if x.dtype == dtype else x.to(dtype)


def _grid_axes(x):
    return tuple(range(1, x.ndim - 1))


def _same_sizes(sizes, other_sizes):
    """Whether two shapes are equal, for skipping a no-op pad or crop; False while `torch.export` traces, where a
    grid size may be symbolic (dynamic shapes) and the comparison would restrict the graph to one side of it."""
    return not torch.compiler.is_exporting() and tuple(sizes) == tuple(other_sizes)


def _crop_axes(x, grid_shape, first_axis):
    """Keep the first `grid_shape` entries of the axes `first_axis`, ... of x."""
    if _same_sizes(x.shape[first_axis : first_axis + len(grid_shape)], grid_shape):
        return x
    if torch.compiler.is_exporting():
        # a gather: the view a slice gives is contiguous or not depending on the (symbolic) sizes
        for axis, n in enumerate(grid_shape, first_axis):
            x = x.index_select(axis, torch.arange(n, device=x.device))
        return x
    return x[(*[slice(None)] * first_axis, *(slice(0, n) for n in grid_shape))]


def _crop(x, grid_shape):
    """Keep the first `grid_shape` entries of each grid axis of (B, *fft_shape, D) (x itself where that is all)."""
    return _crop_axes(x, grid_shape, 1)


def _crop_channels_first(x, grid_shape):
    """Keep the first `grid_shape` entries of each grid axis of (B, D, *fft_shape). A crop that keeps everything
    is skipped (like `_crop`): autograd would still record it, and its backward copies the gradient into zeros."""
    return _crop_axes(x, grid_shape, 2)


def _zero_padded(x, fft_shape, first_axis):
    """x zero-padded at the end of its axes `first_axis`, ... to `fft_shape` (x itself where it fits exactly).
    What `torch.fft.rfftn(x, s=fft_shape)` does, but without its branch on whether each axis is shorter, which
    would tie an exported graph to one side of that comparison."""
    if _same_sizes(x.shape[first_axis : first_axis + len(fft_shape)], fft_shape):
        return x
    trailing_axes = x.ndim - first_axis - len(fft_shape)
    amounts = [0, 0] * trailing_axes
    for n, size in zip(reversed(x.shape[first_axis : first_axis + len(fft_shape)]), reversed(fft_shape)):
        amounts += [0, size - n]
    return F.pad(x, amounts)


def check_mixer_input(layer, x, mask, hidden_size=None):
    """Refuse, naming the expected form, what a token mixer `layer` cannot take: x not a floating-point (B, *grid, D)
    tensor with at least one token (and D = `hidden_size` where the layer has one), or a mask that is not a bool
    (B, *grid) tensor. Shapes and dtypes only: no values are read."""
    name = type(layer).__name__
    width = "hidden_size" if hidden_size is None else f"hidden_size={hidden_size}"
    if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim < 3:
        kind = f"shape {tuple(x.shape)} and dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} takes a floating-point tensor x of shape (batch, *grid, {width}), got {kind}.")
    if hidden_size is not None and x.shape[-1] != hidden_size:
        raise ValueError(f"{name} takes x of shape (batch, *grid, {width}), got {tuple(x.shape)}.")
    if x.numel() == 0:
        raise ValueError(f"{name} needs at least one example and one token, got x of shape {tuple(x.shape)}.")
    if mask is not None and (
        not torch.is_tensor(mask) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:-1])
    ):
        kind = f"{mask.dtype} of shape {tuple(mask.shape)}" if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(
            f"{name} takes a bool mask of shape (batch, *grid) = {tuple(x.shape[:-1])}, True on real tokens, "
            f"got {kind}."
        )


def positive_index(value):
    """`value` as an int where it is a positive integer of any type (Python's, numpy's, a one-element integer
    tensor), not a bool; else None."""
    if isinstance(value, bool):
        return None
    try:
        index = operator.index(value)
    except TypeError:
        return None
    return index if index > 0 else None


def fft_shape_tuple(fft_shape):
    """A mixer's `fft_shape` (an integer for one axis, or a sequence of them, a 1-D array included) as a tuple of
    positive ints."""
    if type(fft_shape) is tuple and fft_shape and all(type(n) is int and n > 0 for n in fft_shape):
        return fft_shape  # the mixers pass their shapes on as such, every forward: 0.4 against 1.3 us per call
    is_sequence = isinstance(fft_shape, Sequence) and not isinstance(fft_shape, (str, bytes))
    is_sequence = is_sequence or getattr(fft_shape, "ndim", None) == 1  # a numpy array or tensor
    shape = tuple(positive_index(n) for n in (fft_shape if is_sequence else (fft_shape,)))
    if not shape or None in shape:
        raise ValueError(
            f"`fft_shape` must be a positive integer or a sequence of them (one per grid axis), got {fft_shape!r}."
        )
    return shape


def _check_grid(x, fft_shape):
    grid_shape = tuple(x.shape[1:-1])
    if len(grid_shape) != len(fft_shape) or any(n > size for n, size in zip(grid_shape, fft_shape)):
        raise ValueError(
            f"Mixer input grid {grid_shape} (x: (batch, *grid, hidden_size) = {tuple(x.shape)}) does not fit the FFT "
            f"size {tuple(fft_shape)}: give {len(fft_shape)} grid axes of at most those sizes."
        )
    return grid_shape


def _staggered_rows(x, grid_shape):
    """An uninitialised (B, *grid_shape, D) tensor like x: (B, *grid, D) whose rows of D channels start an odd
    number of 64-byte cache lines apart (strided over a slightly wider buffer).

    Reading such a tensor down its grid axes, as a transpose or an FFT over the grid does, touches addresses
    that spread over the cache's sets; with the contiguous stride of D = 256 floats (1 KiB, a power of two)
    they all fall into a few sets and evict each other. For 4096 x 256 floats on two threads of the development
    VM, a transposing copy takes 0.35 ms from the staggered layout against 2.4 ms from the contiguous one, and
    an rfft over the tokens 0.6 ms against 2.9 ms.
    """
    floats_per_line = max(1, 64 // x.element_size())
    lines = -(-x.shape[-1] // floats_per_line)
    width = (lines + 1 - lines % 2) * floats_per_line
    shape = (x.shape[0], *grid_shape, x.shape[-1])
    strides = [1, width]
    for size in reversed(shape[1:-1]):
        strides.append(strides[-1] * size)
    return torch.empty_strided(shape, strides[::-1], dtype=x.dtype, device=x.device)


def _staggered_copy(x):
    """x: (B, M, N) -> contiguous (B, N, M), transposed through a staggered copy of x (see `_staggered_rows`)."""
    staggered = _staggered_rows(x, x.shape[1:-1])
    staggered.copy_(x)
    return staggered.transpose(1, 2).contiguous()


class _TokensToChannels(torch.autograd.Function):
    """(B, N, D) -> contiguous (B, D, N) through a staggered copy; the gradient goes back by the plain copy."""

    @staticmethod
    def forward(ctx, tokens):
        return _staggered_copy(tokens)

    @staticmethod
    def backward(ctx, grad):
        # the backward of a graph recorded outside a transform may run inside one (jacobian(vectorize=True))
        return _ChannelsToTokens.apply(grad) if _eager_cpu(grad) else grad.transpose(1, 2).contiguous()


class _ChannelsToTokens(torch.autograd.Function):
    """(B, D, N) -> contiguous (B, N, D) by the plain strided copy, which is fast in this direction (0.5 ms for
    256 x 4096 floats); the gradient goes back through a staggered copy."""

    @staticmethod
    def forward(ctx, channels):
        return channels.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad):
        return _TokensToChannels.apply(grad) if _eager_cpu(grad) else grad.transpose(1, 2).contiguous()


def _in_func_transform():
    """Whether a `torch.func` transform (vmap, grad, jacrev, jvp) is running."""
    return torch._C._functorch.maybe_current_level() is not None


def _transformed(x):
    """Whether a `torch.func` transform is running, x is batched by the vmap of
    `torch.autograd.functional.jacobian(..., vectorize=True)`, or x carries a forward-mode tangent
    (`torch.autograd.forward_ad`). The CPU fast paths fill unbatched buffers in place, reuse cached tensors and run
    autograd Functions with no vmap rule or jvp, so these calls take the plain torch ops instead. Never under
    torch.compile, which cannot trace the question (it breaks the graph) and takes the plain ops anyway."""
    return not torch.compiler.is_compiling() and (
        _in_func_transform()
        or torch._C._functorch.is_legacy_batchedtensor(x)
        or forward_ad.unpack_dual(x).tangent is not None
    )


def _autocast_off(device_type):
    """A context without autocast on `device_type` (a no-op where none is on, and for devices autocast lacks)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def can_read_values():
    """Whether code may read tensor values back to Python (input checks, data-dependent branches): not while
    torch.compile traces (a read splits the graph) nor inside a `torch.func` transform (vmap cannot branch on
    values); such code then skips its checks and takes the branch that is right for every value."""
    return not torch.compiler.is_compiling() and not _in_func_transform()


def _eager_cpu(x):
    """Cache-layout tricks are for eager CPU code only: torch.compile generates its own transposes, and GPU
    memory has no such cache sets (nor are they for the inputs of function transforms, see `_transformed`)."""
    return x.is_cpu and not torch.compiler.is_compiling() and not _transformed(x)


def _records_graph(x):
    """Whether an op on x is recorded for autograd. Where it is not (inference), the CPU transforms skip their
    autograd Functions, whose Python calls cost about 15 us each (1 to 3 percent of a model at 512 tokens)."""
    return torch.is_grad_enabled() and x.requires_grad


def channels_first(x):
    """(B, *grid, D) -> contiguous (B, D, *grid)."""
    if not _eager_cpu(x):
        return x.movedim(-1, 1).contiguous()
    channels = _TokensToChannels.apply(x.flatten(1, -2))  # (B, D, N)
    return channels.unflatten(2, x.shape[1:-1])


_ADJOINT_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _paired_bin_weights(spectrum, fft_length, value):
    """Real weights over the last axis of an rfft spectrum (B, D, *freq_shape) of `fft_length` points (or its
    first bins): `value` on the bins that stand for two frequencies, f and -f (all but 0 and, for even lengths,
    n / 2), 1 on the others."""
    weights = spectrum.new_full((fft_length // 2 + 1,), value, dtype=spectrum.real.dtype)
    weights[0] = 1.0
    if fft_length % 2 == 0:
        weights[-1] = 1.0
    return weights[: spectrum.shape[-1]]


def _staggered_rfftn(x, fft_shape, norm):
    """The forward of `_StaggeredRfftn`, without autograd."""
    grid_shape = tuple(x.shape[1:-1])
    if len(grid_shape) > 1:
        # Grids of images and volumes: MKL's multi-dimensional transform of the strided staggered rows is slower
        # than a transposing copy (from a staggered copy) followed by the transform of contiguous planes
        # (GlobalFilter on 14 x 14 x 256 at batch 1: 323 -> 254 us per call on the development VM).
        channels = _staggered_copy(x.flatten(1, -2)).unflatten(2, grid_shape)  # (B, D, *grid)
        return torch.fft.rfftn(channels, s=fft_shape, dim=tuple(range(2, x.ndim)), norm=norm)
    signal = _staggered_rows(x, fft_shape)  # (B, *fft_shape, D)
    if grid_shape != fft_shape:
        signal.zero_()
    _crop(signal, grid_shape).copy_(x)
    return torch.fft.rfftn(signal, dim=tuple(range(1, x.ndim - 1)), norm=norm).movedim(-1, 1)


class _StaggeredRfftn(torch.autograd.Function):
    """`grid_rfftn` on eager CPU: channels-last x (B, *grid, D) -> channels-first spectrum (B, D, *freq_shape).

    The forward transforms a staggered copy of x (`_staggered_rows`) over its tokens, and torch writes the
    output with the transformed axis innermost: channels-first without a separate transpose. Multi-dimensional grids
    are instead transposed channels-first (through a staggered copy) and transformed as contiguous planes.
    The backward is the transform's adjoint, one c2r FFT (`grid_irfftn`) of G * w with the adjoint
    normalisation and w = 1/2 on the paired bins of the halved axis. torch's own rfft backward would build a
    zero-filled full-length complex gradient and run a c2c FFT over it, along the tokens of the strided input
    (5 ms for 4096 x 256 floats).
    """

    @staticmethod
    def forward(ctx, x, fft_shape, norm):
        ctx.grid_shape, ctx.fft_shape, ctx.norm = tuple(x.shape[1:-1]), fft_shape, norm
        return _staggered_rfftn(x, fft_shape, norm)

    @staticmethod
    def backward(ctx, grad):
        weighted = grad * _paired_bin_weights(grad, ctx.fft_shape[-1], 0.5)
        return grid_irfftn(weighted, ctx.fft_shape, ctx.grid_shape, _ADJOINT_NORM[ctx.norm]), None, None


class _StaggeredIrfftn(torch.autograd.Function):
    """`grid_irfftn` on eager CPU under autograd, the adjoint of `_StaggeredRfftn`: channels-first spectrum (B, D,
    *freq_shape) -> channels-last signal (B, *grid_shape, D).

    The forward is `irfftn` (which pads a spectrum of fewer frequencies than `fft_shape` with zeros at the end of
    each axis) and a transposing copy. The backward is `_StaggeredRfftn` of the gradient with the adjoint
    normalisation, cropped to the spectrum's frequencies and times 2 on the paired bins (each stands for two
    frequencies of the real signal): one r2c FFT that reads the channels-last gradient through a staggered copy,
    where torch's irfftn backward would first transpose it channels-first.
    """

    @staticmethod
    def forward(ctx, spectrum, fft_shape, grid_shape, norm):
        ctx.freq_shape, ctx.fft_shape, ctx.norm = tuple(spectrum.shape[2:]), fft_shape, norm
        signal = torch.fft.irfftn(spectrum, s=fft_shape, dim=tuple(range(2, spectrum.ndim)), norm=norm)
        # a new tensor even where the transpose is trivial (D = 1): the caller may add to it in place
        return _crop_channels_first(signal, grid_shape).movedim(1, -1).clone(memory_format=torch.contiguous_format)

    @staticmethod
    def backward(ctx, grad):
        spectrum = grid_rfftn(grad, ctx.fft_shape, _ADJOINT_NORM[ctx.norm])
        spectrum = _crop_channels_first(spectrum, ctx.freq_shape)
        return spectrum * _paired_bin_weights(spectrum, ctx.fft_shape[-1], 2.0), None, None, None


def grid_rfftn(x, fft_shape, norm):
    """`rfftn` of channels-last x: (B, *grid, D) over its grid axes, zero-padded to `fft_shape`; returns the
    spectrum channels-first, (B, D, *freq_shape) contiguous.

    Channels-first, every transform runs over contiguous rows (torch lays an FFT's output out with the transformed
    axes innermost anyway). Eager CPU code gets there without transposing x first (`_StaggeredRfftn`).
    """
    if _eager_cpu(x):
        if _records_graph(x):
            return _StaggeredRfftn.apply(x, tuple(fft_shape), norm)
        return _staggered_rfftn(x, tuple(fft_shape), norm)
    return torch.fft.rfftn(_zero_padded(channels_first(x), fft_shape, 2), dim=tuple(range(2, x.ndim)), norm=norm)


def grid_irfftn(spectrum, fft_shape, grid_shape, norm, out=None, residual=None):
    """The inverse of `grid_rfftn`: a channels-first spectrum (B, D, *freq_shape) -> the first `grid_shape`
    entries of its size-`fft_shape` real signal, channels-last: (B, *grid_shape, D) contiguous.

    `residual`: a channels-last (B, *grid_shape, D) tensor added to the signal, the sum in the signal's dtype (or
    promoted with the residual's). Without autograd the add reads the channels-first signal directly and writes the
    channels-last sum in one pass, where a transposing copy and then an add would take two.
    `out` (without autograd only): a channels-last tensor to write the result into, cast to its dtype, instead of
    a new one."""
    if out is None and _eager_cpu(spectrum) and _records_graph(spectrum):
        signal = _StaggeredIrfftn.apply(spectrum, tuple(fft_shape), tuple(grid_shape), norm)
        return signal if residual is None else signal.add_(residual)
    signal = torch.fft.irfftn(spectrum, s=fft_shape, dim=tuple(range(2, spectrum.ndim)), norm=norm)
    channels_last = _crop_channels_first(signal, grid_shape).movedim(1, -1)
    if residual is not None:
        # the residual first: the sum takes its (contiguous) layout
        return torch.add(residual, channels_last) if out is None else torch.add(residual, channels_last, out=out)
    if out is not None:
        return out.copy_(channels_last)
    # a copy, not .contiguous(): its contiguity test on a symbolic (exported) grid size would branch on the size
    return channels_last.clone(memory_format=torch.contiguous_format)


CHUNK_BYTES = 2 * 2**20  # FFT input per chunk of the batch in the CPU mixers; see `_batch_chunks`


def _batch_chunks(x, mask):
    """The batch split into chunks of about `CHUNK_BYTES` of input (x's grid and channels, counted at 4 bytes a
    value), as (x, mask) pairs, or None where one chunk holds it all (and always on GPU and under torch.compile).

    On CPU the mixers' transforms and copies are bound by memory traffic: when a chunk's intermediates stay in
    cache they run faster: 1.2 to 1.7 times for 8 x 4096 and 32 x 512 inputs of 256 channels on the development
    VM, the same for 8 x 512 (one chunk of 2 MiB there is as good as any).
    """
    if not x.is_cpu or torch.compiler.is_compiling():
        return None
    examples_per_chunk = max(1, CHUNK_BYTES // (4 * math.prod(x.shape[1:])))
    if examples_per_chunk >= x.shape[0]:
        return None
    masks = [None] * x.shape[0] if mask is None else mask.split(examples_per_chunk)
    return list(zip(x.split(examples_per_chunk), masks))


def _written(result, out):
    """`result`, or `out` holding a copy of it where an output tensor is given (see `SpectralMixer.mix`)."""
    return result if out is None else out.copy_(result)


def fast_fft_size(n):
    """The smallest integer >= n whose only prime factors are 2, 3 and 5 (fast sizes for MKL, pocketfft and cuFFT)."""
    size = n
    while True:
        remainder = size
        for prime in (2, 3, 5):
            while remainder % prime == 0:
                remainder //= prime
        if remainder == 1:
            return size
        size += 1


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per example during training."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self):
        return f"drop_prob={self.drop_prob}"


NORM_CLASSES = {"layer_norm": nn.LayerNorm, "rms_norm": nn.RMSNorm}


def build_norm(norm_type, hidden_size, eps):
    """A learned normalisation over the last axis: `"layer_norm"` (mean and variance, weight and bias) or
    `"rms_norm"` (root mean square only, weight only)."""
    return NORM_CLASSES[norm_type](hidden_size, eps=eps)


class MLP(nn.Module):
    """Position-wise feed-forward network: fc1 -> activation -> dropout -> fc2."""

    def __init__(self, hidden_size, intermediate_size, activation, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = activation
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x):
        return self.fc2(self.dropout(self.act(self.fc1(x))))


CHECKED_SAMPLES = 4096  # `SpectralMixer.derived_from_weights` compares at least this many values of a larger weight


def _sample_step(numel, period):
    """The step between compared values of a weight of `numel` values: the largest coprime to `period` that leaves
    at least `CHECKED_SAMPLES` of them (1, every value, for small weights).

    `period` is the size of one slice along the weight's first axis (2 D values per frequency in GFNet's (F, D, 2)
    filter). With a step coprime to it, the samples fall on min(period, samples) distinct positions of that period,
    so a whole channel (or column) edited at once is always seen while the period is at most `CHECKED_SAMPLES` (D up
    to 2048 in GFNet). A step sharing a factor with it would only ever compare some channels: every 16th value of a
    64-channel filter saw 8 of them."""
    step = max(1, numel // CHECKED_SAMPLES)
    while math.gcd(step, period) != 1:
        step -= 1
    return step


def _value_sample(weight):
    """A view of the values of `weight` spread by `_sample_step`, through which later edits of its memory show (the
    whole of a non-contiguous weight, which parameters hardly ever are)."""
    weight = weight.detach()
    if not weight.is_contiguous():
        return weight
    flat = weight.view(-1)
    return flat[:: _sample_step(flat.numel(), math.prod(weight.shape[1:]))]


class SpectralMixer(nn.Module):
    """The entry shared by the FFT mixers: `forward` resolves the call's FFT grid, checks that the tokens fit in it
    and, on CPU, runs a large batch chunk by chunk (`_batch_chunks`); each mixer implements `mix` on one chunk."""

    hidden_size = None  # the width D of the inputs, for mixers with weights per channel
    takes_fft_shape = True  # the call convention, see `hybrid_layers.run_mixer`
    returns_attention_weights = False
    translation_equivariant = False  # see `spectral_properties`
    adaptive = False

    def __init__(self):
        super().__init__()
        self._inference_cache = {}  # name -> (key, sample views, their values, value) of `derived_from_weights`

    def spectral_properties(self):
        """The mathematical properties of the mixer, under the names of spectrans' `get_spectral_properties`: `unitary`
        and `energy_preserving` (an orthogonal map of its input: never, as the Fourier mixer keeps the real part of a
        spectrum and the others filter or shrink it), `real_output`, `frequency_domain` (it mixes in the Fourier
        domain), `learnable_parameters`, `translation_equivariant` (a circular shift of the tokens over the whole FFT
        grid shifts the output alike), `mode_truncation` (frequencies are dropped) and `adaptive` (how each frequency is
        weighted depends on the input)."""
        return dict(
            unitary=False,
            real_output=True,
            frequency_domain=True,
            energy_preserving=False,
            learnable_parameters=any(True for _ in self.parameters()),
            translation_equivariant=self.translation_equivariant,
            mode_truncation=False,
            adaptive=self.adaptive,
        )

    def derived_from_weights(self, name, weights, key, compute):
        """`compute()`: tensors derived from the parameters `weights` (and from `key`, e.g. a dtype). In CPU inference
        (gradients disabled, not compiling) the last value under `name` is reused until `key` or a weight changes, so
        that inference does not pay for rearranging the weights on every call (a model built for 4096 tokens and
        given 64 takes twice as long without it).

        A weight counts as changed when its version counter, storage or strides change, which every in-place update that
        autograd sees does (optimizers, `load_state_dict`, `torch.nn.init`, edits under `torch.no_grad()`), or when one
        of the values spread over it by `_sample_step` (all of a small weight, about `CHECKED_SAMPLES` of a large one)
        differs from the copy taken before the cached value was computed: edits through `param.data` bypass the version
        counter, and whole-tensor ones (EMA updates, rescaling, re-initialisation) and whole-channel ones are caught by
        the sample. An edit of a few values through `param.data` can be missed: edit the parameter itself under
        `torch.no_grad()`. Comparing every value of a large weight would cost about as much as the rearrangement it
        saves (0.4 ms for 4 MiB of weights on the development VM). A weight holding NaN never compares equal, so its
        value is rebuilt on every call (correct, only slower).

        It is always recomputed with gradients enabled (even for frozen weights: a value cached in
        `torch.inference_mode()` is an inference tensor, which autograd refuses to save for a backward pass), for
        weights created in inference mode (which have no version counter), for weights in shared memory (another
        process's edits do not move this process's version counter), on GPU (where rearranging is cheap and
        reading a comparison back would synchronise), under torch.compile and for the weights of a function transform
        (`torch.func.vmap` over stacked weights, say).
        """
        if torch.is_grad_enabled() or not all(_eager_cpu(weight) for weight in weights):
            return compute()
        # Built in inference mode: no version counter. In shared memory (`share_memory()`, torch.multiprocessing):
        # another process's in-place edits do not move this process's counter.
        if any(weight.is_inference() or weight.untyped_storage().is_shared() for weight in weights):
            return compute()
        key = (key, *((weight._version, weight.data_ptr(), weight.shape, weight.stride(), weight.dtype)
                      for weight in weights))
        cached = self._inference_cache.get(name)
        # The sample views stay valid while the key matches (same memory, shape, strides and dtype): one comparison
        # per weight, no other torch call.
        if cached is not None and cached[0] == key:
            _, views, samples, value = cached
            if all(torch.equal(view, sample) for view, sample in zip(views, samples)):
                return value
        # Sampled before `compute()`: an edit through `.data` while it runs (another thread's) then differs from the
        # sample at the next call, where a sample taken afterwards would pair the new values with the old result.
        views = [_value_sample(weight) for weight in weights]
        samples = [view.clone() for view in views]
        value = compute()
        self._inference_cache[name] = (key, views, samples, value)
        return value

    def __getstate__(self):
        # Pickles and deep copies (torch.save(model), EMA copies, worker processes) leave the cached tensors behind:
        # the next inference call rebuilds them, and they would otherwise travel with every copy of the weights.
        return {**super().__getstate__(), "_inference_cache": {}}

    def _apply(self, fn, recurse=True):
        # `.to()`, `.half()`, `.cuda()`, ...: the cached tensors and sample views would keep the old weights' memory
        # alive (and would be rebuilt anyway), so they go.
        self._inference_cache.clear()
        return super()._apply(fn, recurse)

    def forward(self, x, mask=None, fft_shape=None):
        """x: (B, *grid, D), mask: (B, *grid) -> (B, *grid, D); `fft_shape` overrides the built FFT grid."""
        check_mixer_input(self, x, mask, self.hidden_size)
        fft_shape = self.fft_shape if fft_shape is None else fft_shape_tuple(fft_shape)
        grid_shape = _check_grid(x, fft_shape)
        chunks = _batch_chunks(x, mask)
        if chunks is None:
            return self.mix(x, mask, fft_shape, grid_shape)
        # Without autograd each chunk writes its last copy into its rows of the output, saving the concatenation
        # pass: GlobalFilter at 8 x 4096 x 256 took 17-18 ms per call against 21-23 ms on the development VM. Not
        # inside a function transform or with forward-mode tangents (on x or the weights): their results are
        # batched or dual tensors, which a plain output tensor cannot take.
        if torch.is_grad_enabled() or _transformed(x) or any(_transformed(weight) for weight in self.parameters()):
            return torch.cat([self.mix(x_chunk, mask_chunk, fft_shape, grid_shape) for x_chunk, mask_chunk in chunks])
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        rows = out.split([x_chunk.shape[0] for x_chunk, _ in chunks])
        for (x_chunk, mask_chunk), out_chunk in zip(chunks, rows):
            self.mix(x_chunk, mask_chunk, fft_shape, grid_shape, out=out_chunk)
        return out

    def mix(self, x, mask, fft_shape, grid_shape, out=None):
        """x: (B, *grid, D), mask: (B, *grid) or None -> (B, *grid, D), with the FFT over `fft_shape`; written into
        `out` (contiguous, x's shape and dtype; without autograd only) where it is given."""
        raise NotImplementedError


def _dft_block_matrix(length, fft_length, norm, dtype, device):
    """`FourierMixer.dft_matrix`, uncached."""
    index = torch.arange(length, device=device)
    # t s mod L in integers keeps the angles exact for any L
    angle = (index[:, None] * index[None, :] % fft_length).to(torch.float64) * (2 * math.pi / fft_length)
    scale = {"backward": 1.0, "ortho": fft_length**-0.5, "forward": 1.0 / fft_length}[norm]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.cat([torch.cat([cos, sin], dim=1), torch.cat([cos, -sin], dim=1)]).to(dtype)


FULL_TRANSFORM_MAX_VALUES = 2**22  # GPU inputs up to this size take `FourierMixer.full_transform`


class FourierMixer(SpectralMixer):
    """FNet mixing: `Re(FFT_grid(FFT_channels(x)))`, no parameters.

    The input is real, so its spectrum is conjugate-symmetric, `X[t, D-k] = conj(X[-t, k])`: only the
    half-spectrum over channels is computed (one `rfftn` over grid and channels) and the other half of the real
    part is read off the mirrored grid frequencies, about half the work of a full complex FFT. A 1-D input much
    shorter than the FFT length skips the length-L transform altogether (`short_fourier`). Small inputs on a GPU
    and exported graphs take the full complex transform instead (`full_transform`).
    """

    def __init__(self, fft_shape, norm="backward"):
        super().__init__()
        if norm not in FFT_NORMS:
            raise ValueError(f"FourierMixer `norm` must be one of {list(FFT_NORMS)}, got {norm!r}.")
        self.fft_shape = fft_shape_tuple(fft_shape)
        self.norm = norm
        self._dft_cache = None  # ((length, FFT length, dtype, device), matrix) of `short_fourier`

    def mix(self, x, mask, fft_shape, grid_shape, out=None):
        real_input = _fft_input(x, mask)
        # exported graphs take the full-length path, whose shape does not depend on the length (dynamic shapes)
        short_path = len(grid_shape) == 1 and not torch.compiler.is_exporting()
        if short_path and self.uses_short_fourier(grid_shape[0], fft_shape[0]):
            return _written(_in_dtype(self.short_fourier(real_input, fft_shape[0]), x.dtype), out)
        axes = _grid_axes(x)
        hidden_size = x.shape[-1]
        padded = _zero_padded(real_input, fft_shape, 1)
        # exported graphs: the mirrored copies below slice by the (symbolic) grid size
        if torch.compiler.is_exporting() or (not x.is_cpu and padded.numel() <= FULL_TRANSFORM_MAX_VALUES):
            return _written(_in_dtype(self.full_transform(padded, grid_shape), x.dtype), out)
        # One multi-dimensional transform, halved over channels: (B, *fft_shape, D//2+1), channels innermost.
        spectrum = torch.fft.rfftn(padded, dim=(*axes, -1), norm=self.norm)
        real = spectrum.real
        lower_channels = hidden_size // 2 + 1
        out = real.new_empty(x.shape) if out is None else out  # (B, *grid, D); copies into it cast to its dtype
        out[..., :lower_channels] = _crop(real, grid_shape)
        # Channel D-c at frequency t is channel c at frequency -t (mod size) on every grid axis: row 0 stays,
        # rows 1..n-1 read rows size-1 down to size-n+1. Copy each of the 2^(grid axes) blocks with slices and
        # flips (a gather with an index tensor, or concatenating the mirrored rows first, is slower on CPU).
        upper = real[..., 1 : (hidden_size + 1) // 2]  # channels 1 .. (D-1)//2, mirrored to D-1 .. D//2+1
        for mirrored_axes in itertools.product((False, True), repeat=len(axes)):
            target, source = [slice(None)], [slice(None)]
            for mirrored, n, size in zip(mirrored_axes, grid_shape, fft_shape):
                target.append(slice(1, n) if mirrored else slice(0, 1))
                source.append(slice(size - n + 1, size) if mirrored else slice(0, 1))
            flip_dims = [axis for axis, mirrored in zip(axes, mirrored_axes) if mirrored] + [-1]
            out[(*target, slice(lower_channels, None))] = upper[tuple(source)].flip(flip_dims)
        return _in_dtype(out, x.dtype)

    def full_transform(self, padded, grid_shape):
        """The mixer as one library call: the real part of the complex FFT of the zero-padded input (B, *fft_shape,
        D) over grid and channels, cropped to `grid_shape`, contiguous. Twice the arithmetic of the halved transform
        in `mix`, but one kernel instead of several: on a GPU, inputs of up to `FULL_TRANSFORM_MAX_VALUES` values
        are bound by kernel launches, and on one H200 a call for 1 x 512 x 256 took 0.07 ms against 0.16 ms (and a
        4-layer pure-Fourier model 2.0 against 2.5 ms), while for 8 x 4096 x 256 the halved transform was faster,
        0.15 against 0.19 ms."""
        spectrum = torch.fft.fftn(padded, dim=tuple(range(1, padded.ndim)), norm=self.norm)
        return _crop(spectrum.real, grid_shape).contiguous()

    def __getstate__(self):
        return {**super().__getstate__(), "_dft_cache": None}  # rebuilt on demand, as the inference cache

    def uses_short_fourier(self, length, fft_length=None):
        """Whether `short_fourier` is cheaper than FFTs of length L (default: the built one) for `length` tokens:
        its matrix product costs 8 n^2 flops per channel pair against about 5 L log2 L for the FFT over the
        sequence (the FFT over channels is common to both), and runs several times faster per flop."""
        fft_length = fft_length or self.fft_shape[0]
        return length < fft_length and 8 * length**2 < 4 * 5 * fft_length * math.log2(fft_length)

    def dft_matrix(self, length, fft_length, dtype, device):
        """(2n, 2n): `[[C, S], [C, -S]]` with C[t, s] = cos(2 pi t s / L), S[t, s] = sin(2 pi t s / L) for n =
        `length` and L = `fft_length`, times the grid's normalisation; the last one built is cached."""
        if torch.compiler.is_compiling():  # built in the graph: reading the cache would guard on it (a recompile)
            return _dft_block_matrix(length, fft_length, self.norm, dtype, device)
        key = (length, fft_length, self.norm, dtype, device)
        if self._dft_cache is not None and self._dft_cache[0] == key:
            return self._dft_cache[1]
        # Built outside inference mode: the cached matrix outlives the call, and autograd refuses to save an
        # inference tensor for a backward pass (training on short inputs after an inference_mode call would fail).
        with torch.inference_mode(False):
            matrix = _dft_block_matrix(length, fft_length, self.norm, dtype, device)
        self._dft_cache = (key, matrix)
        return matrix

    def short_fourier(self, x, fft_length):
        """The mixer for a 1-D input of n tokens, x: (B, n, D) in the FFT dtype, without the FFT of length L =
        `fft_length`.

        With G = FFT_channels(x) (half spectrum, H = D // 2 + 1 channels; channel D-c is conj(G[:, c])), output
        t < n is `Re sum_s exp(-2 pi i t s / L) G[s, c]` = `C G_re + S G_im` for c < H and `C G_re - S G_im` at
        channel D-c: one real matrix product of `dft_matrix` (2n, 2n) with the stacked spectrum (B, 2n, H).
        """
        length, hidden_size = x.shape[1], x.shape[2]
        half = hidden_size // 2 + 1
        spectrum = torch.view_as_real(torch.fft.rfft(x, dim=-1, norm=self.norm))  # (B, n, H, 2)
        stacked = spectrum.movedim(-1, 1).reshape(x.shape[0], 2 * length, half)  # real parts over imaginary parts
        matrix = self.dft_matrix(length, fft_length, x.dtype, x.device)
        with _autocast_off(x.device.type):  # the transform runs in the FFT dtype, as the FFTs do under autocast
            product = matrix @ stacked  # (B, 2n, H)
        out = x.new_empty(x.shape)
        out[..., :half] = product[:, :length]
        out[..., half:] = product[:, length:, 1 : (hidden_size + 1) // 2].flip(-1)
        return out

    def extra_repr(self):
        return f"fft_shape={self.fft_shape}, norm={self.norm!r}"


class GlobalFilter(SpectralMixer):
    """GFNet mixing: `irfftn(rfftn(x) * K)` over the grid axes with a learnable complex filter K per frequency and
    channel, stored as a real tensor `complex_weight: (*freq_shape, D, 2)` (real, imaginary), the layout of the
    original GFNet checkpoints. `freq_shape` is `fft_shape` with the last axis halved (rfft): `n // 2 + 1`.

    `activation` maps the stored weights to the filter: `identity` (original GFNet), K = W_r + i W_i; `tanh`,
    K = tanh(W_r) + i tanh(W_i); `sigmoid`, K = sigmoid(W_r) + i (sigmoid(W_i) - 1/2), a real part in (0, 1) and an
    imaginary part in (-1/2, 1/2). The sigmoid filter spans exactly the filters of spectrans' GFNet, whose sigmoid
    acts on both parts of a full-spectrum (not conjugate-symmetric) filter H of which a real output keeps only the
    conjugate-symmetric part, (H[f] + conj(H[-f])) / 2; a sigmoid on both parts of the half spectrum here would
    confine every phase to (0, pi / 2). At another FFT grid than the one it was built for, the stored weights
    are first resized to that grid's frequencies by `resize_filter`, as `from_pretrained(image_size=...)` does.
    """

    _no_weight_decay = ("complex_weight",)

    translation_equivariant = True  # a circular convolution over the FFT grid

    def __init__(self, hidden_size, fft_shape, activation="identity", init_std=0.02):
        """`init_std`: the standard deviation of the normal distribution the weights are drawn from here (GFNet's);
        None leaves them to the caller, as a model's `_init_weights` draws them itself."""
        super().__init__()
        self.fft_shape = fft_shape_tuple(fft_shape)
        self.activation = activation
        self.check_activation()
        freq_shape = (*self.fft_shape[:-1], self.fft_shape[-1] // 2 + 1)
        self.complex_weight = nn.Parameter(torch.empty(*freq_shape, hidden_size, 2))
        if init_std is not None:
            nn.init.normal_(self.complex_weight, std=init_std)

    @property
    def hidden_size(self):
        return self.complex_weight.shape[-2]

    def check_activation(self):
        """At construction and at every filter computation: `activation` is an attribute a user may assign."""
        if self.activation not in FILTER_ACTIVATIONS:
            raise ValueError(
                f"GlobalFilter `activation` must be one of {list(FILTER_ACTIVATIONS)}, got {self.activation!r}."
            )

    def complex_filter(self, dtype=torch.float32, fft_shape=None):
        """The filter K as a complex tensor of shape (*freq_shape, D), from real and imaginary parts of `dtype`;
        `freq_shape` is that of `fft_shape` (default: the built grid), resized differentiably when it differs."""
        self.check_activation()
        weight = self.complex_weight
        fft_shape = self.fft_shape if fft_shape is None else fft_shape_tuple(fft_shape)
        if fft_shape != self.fft_shape:
            weight = resize_filter(weight, fft_shape)
        weight = weight.to(dtype)
        if self.activation == "sigmoid":
            parts = torch.sigmoid(weight)  # (..., 2): real, imaginary (no constant tensor: no host-to-device copy)
            weight = torch.stack((parts[..., 0], parts[..., 1] - 0.5), dim=-1)
        elif self.activation == "tanh":
            weight = torch.tanh(weight)
        return torch.view_as_complex(weight.contiguous())

    def channels_first_filter(self, dtype, fft_shape=None):
        """K laid out like the channels-first spectrum of one example: (1, D, *freq_shape) contiguous, at the
        frequencies of `fft_shape` (default: the built grid).

        The batch axis of one stays: a product with a batch of one then returns the filter's gradient as computed,
        where a broadcast (D, ...) filter gets it summed over a batch axis of size one, and removing the axis by
        indexing would zero-fill and copy it in the backward (one copy of the whole filter per layer and step
        either way)."""
        fft_shape = self.fft_shape if fft_shape is None else fft_shape_tuple(fft_shape)

        def compute():
            kernel = self.complex_filter(dtype, fft_shape)  # (*freq_shape, D)
            # reshape rather than [None]: the ONNX exporter has no unsqueeze for complex tensors
            return channels_first(kernel.reshape(1, *kernel.shape))

        # one entry for the built grid and one for the last other grid (image sizes served): a bounded cache
        name = "channels_first" if fft_shape == self.fft_shape else "channels_first_resized"
        # the activation is an attribute a user may change between calls: part of the key, as the dtype is
        key = (dtype, fft_shape, self.activation)
        return self.derived_from_weights(name, (self.complex_weight,), key, compute)

    def mix(self, x, mask, fft_shape, grid_shape, out=None):
        real_input = _fft_input(x, mask)
        # Compiled and exported graphs take the full-length path, whose shape does not depend on the length: the
        # short path's FFT size tests the (symbolic) length's prime factors, a recompilation for almost every length.
        short_path = fft_shape == self.fft_shape and len(grid_shape) == 1 and not (
            torch.compiler.is_compiling() or torch.compiler.is_exporting()
        )
        short_size = self.short_fft_size(x.shape[0], grid_shape[0]) if short_path else None
        if short_size is not None:
            return _written(_in_dtype(self.short_convolution(real_input, short_size), x.dtype), out)
        # Unnormalised forward transform and a 1 / N inverse: the two 1 / sqrt(N) factors of "ortho" in one.
        spectrum = grid_rfftn(real_input, fft_shape, norm="backward")  # (B, D, *freq_shape)
        kernel = self.channels_first_filter(real_input.dtype, fft_shape)  # (1, D, *freq_shape)
        # in place only in eager mode (the compiler plans its own buffers), where nothing records it, and not into
        # an unbatched spectrum from a vmapped filter
        recorded = torch.is_grad_enabled() and (spectrum.requires_grad or kernel.requires_grad)
        if torch.compiler.is_compiling() or recorded or _transformed(kernel):
            spectrum = spectrum * kernel
        else:
            spectrum = spectrum.mul_(kernel)
        signal = grid_irfftn(spectrum, fft_shape, grid_shape, norm="backward", out=out)  # (B, *grid, D)
        return _in_dtype(signal, x.dtype)

    def short_fft_size(self, batch_size, length):
        """The FFT size of the short-input path for `length` tokens, or None where the full-length FFT is cheaper.

        The short path pays one length-L inverse FFT for the kernel plus 2B + 1 FFTs of the short size; the full
        path pays 2B FFTs of length L (cost of an FFT of N points ~ N log N, per channel).
        """
        fft_length = self.fft_shape[0]
        size = fast_fft_size(2 * length - 1)
        if size >= fft_length:
            return None

        def cost(n):
            return n * math.log2(max(n, 2))

        short_cost = cost(fft_length) + (2 * batch_size + 1) * cost(size)
        return size if short_cost < 2 * batch_size * cost(fft_length) else None

    def time_domain_kernel(self, dtype):
        """The circular convolution kernel k = irfft(K, L) of a 1-D filter, channels-first: (D, L); cached in
        inference (see `derived_from_weights`): for short inputs this length-L transform would otherwise cost more
        than the rest of the mixer."""
        return self.derived_from_weights(
            "time_domain_kernel",
            (self.complex_weight,),
            (dtype, self.fft_shape, self.activation),  # attributes a user may change, as in `channels_first_filter`
            lambda: torch.fft.irfft(self.channels_first_filter(dtype).squeeze(0), n=self.fft_shape[0], dim=-1),
        )

    def short_convolution(self, x, size):
        """The filter as a linear convolution for a 1-D input of n < L tokens, x: (B, n, D) in the FFT dtype, by FFTs
        of `size` >= 2n - 1 points (`short_fft_size`).

        `irfft(rfft(x, L) * K, L)` (norm "backward", as in `mix`) is the circular convolution of x with the kernel
        k = irfft(K, L), which holds the inverse's 1 / L. Output t < n reads inputs s < n through taps
        k[(t - s) mod L], so only the 2n - 1 taps k[0 .. n-1] and k[L-n+1 .. L-1] matter: laid out circularly in an
        FFT of size >= 2n - 1 they give the same outputs without wrap-around, at a fraction of the cost of length-L
        transforms of the whole batch.
        """
        fft_length, length = self.fft_shape[0], x.shape[1]
        kernel = self.time_domain_kernel(x.dtype)  # (D, L)
        gap = kernel.new_zeros(kernel.shape[0], size - 2 * length + 1)
        # (D, size): lags 0 .. n-1 first, lags -(n-1) .. -1 at the end, zeros between
        taps = torch.cat([kernel[:, :length], gap, kernel[:, fft_length - length + 1 :]], dim=1)
        spectrum = grid_rfftn(x, (size,), norm="backward") * torch.fft.rfft(taps, dim=-1)  # (B, D, size // 2 + 1)
        return grid_irfftn(spectrum, (size,), (length,), norm="backward")

    def extra_repr(self):
        return f"fft_shape={self.fft_shape}, activation={self.activation!r}"


def lowest_modes(size, num_modes, half):
    """Indices of the frequencies |f| < num_modes along an FFT axis of `size` points (`half`: an rfft axis)."""
    if half:
        return list(range(min(num_modes, size // 2 + 1)))
    positive = list(range(min(num_modes, (size + 1) // 2)))
    negative = list(range(max(size - num_modes + 1, len(positive)), size))
    return positive + negative


def lowest_kept_modes(fft_shape, num_modes):
    """`lowest_modes` for every frequency axis of an rfftn over `fft_shape` (the last axis is the halved one)."""
    return [lowest_modes(size, num_modes, half=axis == len(fft_shape) - 1) for axis, size in enumerate(fft_shape)]


def _index_list(modes):
    """The indices of one axis of AFNO kept modes as a list: from a list, tuple or range, or a 1-D numpy array or
    tensor (by `tolist`); None for anything else (a string, a number)."""
    if hasattr(modes, "tolist") and getattr(modes, "ndim", None) == 1:
        return modes.tolist()
    return list(modes) if isinstance(modes, (list, tuple, range)) else None


def check_kept_modes(kept_modes, fft_shape):
    """Refuse AFNO kept modes that are not, per frequency axis of an rfftn over `fft_shape`, None or distinct
    indices into that axis: an index out of range would only fail in the forward, and a repeated one is processed
    once but gets its gradient twice (the scatter back writes it once, the gather's backward adds every copy)."""
    freq_shape = (*fft_shape[:-1], fft_shape[-1] // 2 + 1)
    if not isinstance(kept_modes, (list, tuple)) or len(kept_modes) != len(freq_shape):
        raise ValueError(
            f"AFNO kept_modes needs one entry per frequency axis of the FFT over {tuple(fft_shape)} (frequencies "
            f"{freq_shape}), got {kept_modes!r}."
        )
    for axis, (modes, size) in enumerate(zip(kept_modes, freq_shape)):
        if modes is None:
            continue
        indices = _index_list(modes)
        # items are checked before `set` sees them: a nested list is unhashable, and True == 1 would pass as an index
        if not (
            indices is not None and len(indices) > 0
            and all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and 0 <= i < size for i in indices)
            and len(set(indices)) == len(indices)
        ):
            raise ValueError(
                f"AFNO kept_modes[{axis}] must be None or a non-empty list of distinct integer indices in [0, {size}) "
                f"(frequency axis {axis} of the FFT over {tuple(fft_shape)}), got {modes!r}."
            )


def _complex_baddbmm(bias, weight, z):
    """`torch.baddbmm(bias, weight, z)` of complex tensors; in real arithmetic while `torch.export` traces (also for
    `torch.onnx.export`), since ONNX has no complex matrix product and an exported program may be converted to ONNX
    later: (W_r + i W_i)(z_r + i z_i) = W_r z_r - W_i z_i + i (W_r z_i + W_i z_r)."""
    if not torch.compiler.is_exporting():
        return torch.baddbmm(bias, weight, z)
    real = torch.baddbmm(bias.real, weight.real, z.real) - weight.imag @ z.imag
    imag = torch.baddbmm(bias.imag, weight.real, z.imag) + weight.imag @ z.real
    return torch.complex(real, imag)


class AFNOMixer(SpectralMixer):
    """Adaptive Fourier Neural Operator mixing (Guibas et al., 2022).

    `rfftn` over the grid -> keep the chosen modes -> a two-layer complex MLP, block-diagonal over `num_blocks`
    channel blocks and shared by all frequencies (`activation` on real and imaginary parts, ReLU in the paper;
    then `dropout`, the options of spectrans' `AFNOMixing`) -> soft-shrink -> `irfftn` -> plus the mixer input.
    Parameters use the layout of the original checkpoints: `w1: (2, k, d, d*f)`, `b1: (2, k, d*f)`,
    `w2: (2, k, d*f, d)`, `b2: (2, k, d)` with index 0 the real and 1 the imaginary part, k = num_blocks,
    d = D / k, f = hidden_size_factor.

    `kept_modes` lists, for each frequency axis, the indices that are processed (None: all); everything else
    is set to zero. `num_modes` instead keeps the frequencies |f| < num_modes of every axis (`lowest_kept_modes`),
    recomputed for the grid of each call, so a larger FFT grid keeps the same frequencies; fixed `kept_modes`
    stay the same indices at every grid.
    """

    _no_weight_decay = ("b1", "b2")

    adaptive = True  # the block MLP and soft-shrink weight each frequency by its own value

    def __init__(
        self, hidden_size, fft_shape, num_blocks=8, hidden_size_factor=1, sparsity_threshold=0.01, kept_modes=None,
        num_modes=None, activation=None, dropout=0.0, init_std=0.02,
    ):
        """`activation`: a function applied elementwise to the real and imaginary parts of the hidden layer, None
        for ReLU (the paper's, applied in place); `dropout`: its probability on those parts in training; `init_std`:
        the standard deviation of the normal distribution the weights and biases are drawn from here, None to leave
        them to the caller, as a model's `_init_weights` draws them itself."""
        super().__init__()
        blocks, factor, modes = (positive_index(value) for value in (num_blocks, hidden_size_factor, num_modes))
        if blocks is None or hidden_size % blocks:
            raise ValueError(
                f"AFNO num_blocks ({num_blocks!r}) must be a positive divisor of hidden_size ({hidden_size})."
            )
        for name, value, index in (("hidden_size_factor", hidden_size_factor, factor), ("num_modes", num_modes, modes)):
            if index is None and not (name == "num_modes" and value is None):
                raise ValueError(f"AFNO {name} must be a positive integer, got {value!r}.")
        num_blocks, hidden_size_factor, num_modes = blocks, factor, modes
        if isinstance(sparsity_threshold, bool) or not isinstance(sparsity_threshold, numbers.Real) or not (
            0 <= sparsity_threshold < math.inf
        ):
            raise ValueError(f"AFNO sparsity_threshold must be a number >= 0, got {sparsity_threshold!r}.")
        if kept_modes is not None and num_modes is not None:
            raise ValueError("Give AFNOMixer at most one of `kept_modes` (fixed indices) and `num_modes`.")
        self.fft_shape = fft_shape_tuple(fft_shape)
        self.num_blocks = num_blocks
        self.block_size = hidden_size // num_blocks
        self.sparsity_threshold = sparsity_threshold
        self.num_modes = num_modes
        if num_modes is not None:
            kept_modes = lowest_kept_modes(self.fft_shape, num_modes)
        if kept_modes is not None:
            check_kept_modes(kept_modes, self.fft_shape)
        self.kept_modes = None if kept_modes is None else [
            None if modes is None else [int(index) for index in _index_list(modes)] for modes in kept_modes
        ]
        inner = self.block_size * hidden_size_factor
        self.w1 = nn.Parameter(torch.empty(2, num_blocks, self.block_size, inner))
        self.b1 = nn.Parameter(torch.empty(2, num_blocks, inner))
        self.w2 = nn.Parameter(torch.empty(2, num_blocks, inner, self.block_size))
        self.b2 = nn.Parameter(torch.empty(2, num_blocks, self.block_size))
        if init_std is not None:
            for parameter in (self.w1, self.b1, self.w2, self.b2):
                nn.init.normal_(parameter, std=init_std)
        self.activation = activation
        self.dropout = Dropout(dropout)

    @property
    def hidden_size(self):
        return self.num_blocks * self.block_size

    def spectral_properties(self):
        truncated = self.kept_modes is not None and any(modes is not None for modes in self.kept_modes)
        return {**super().spectral_properties(), "mode_truncation": truncated}

    def kept_modes_at(self, fft_shape):
        """The kept indices per frequency axis (None: all) for an FFT over `fft_shape`; fixed indices must fit it."""
        if tuple(fft_shape) == self.fft_shape or self.kept_modes is None:
            return self.kept_modes
        if self.num_modes is not None:
            return lowest_kept_modes(fft_shape, self.num_modes)
        check_kept_modes(self.kept_modes, fft_shape)
        return self.kept_modes

    def complex_block_affine(self, layer, dtype, batch_size):
        """Layer 1 or 2 of the block MLP as tensors for `baddbmm` on channels-first blocks, repeated for each
        example: weight (B k, out, in) and bias (B k, out, 1), complex, from real and imaginary parts of `dtype`.
        Cached in inference (see `derived_from_weights`): at 512 tokens, building them costs as much as a few percent
        of the whole model. Repeats larger than `CHUNK_BYTES` (many short inputs: a chunk of the batch holds many
        examples) are made on each call from one example's cached tensors instead, since cached they would keep B
        copies of the weights alive (a gigabyte for 1024 one-token inputs in a small model)."""
        weight, bias = (self.w1, self.b1) if layer == 1 else (self.w2, self.b2)

        def compute(repeats):
            # laid out and repeated as real (2, B k, ...) tensors: the ONNX exporter has no repeat for complex ones
            parts = weight.to(dtype).transpose(2, 3).repeat(1, repeats, 1, 1)  # (2, B k, out, in)
            bias_parts = bias.to(dtype)[..., None].repeat(1, repeats, 1, 1)  # (2, B k, out, 1)
            return torch.complex(parts[0], parts[1]), torch.complex(bias_parts[0], bias_parts[1])

        # Cached while small: repeated on each call, the tensors are allocated afresh, and where that page-faults
        # the mixer gets slower (12 percent at 8 x 512 tokens, hidden 256).
        if batch_size * weight.numel() * weight.element_size() <= CHUNK_BYTES or torch.compiler.is_exporting():
            name, key = f"layer{layer}", (dtype, batch_size)
            return self.derived_from_weights(name, (weight, bias), key, lambda: compute(batch_size))
        one_example = self.derived_from_weights(f"layer{layer}", (weight, bias), (dtype, 1), lambda: compute(1))
        return tuple(tensor.repeat(batch_size, 1, 1) for tensor in one_example)

    def block_mlp(self, spectrum):
        """(B, D, *modes) complex, channels-first -> (B, D, *modes): the block-diagonal complex MLP and soft-shrink.

        Channel block j of every example is a (d, M) matrix over the M modes, so each layer is one batched complex
        matrix product, `W_j^T @ z_j + b_j`, over the B k blocks; the activation, dropout and soft-shrink act on
        real and imaginary parts through `view_as_real`.
        """
        batch_size = spectrum.shape[0]
        dtype = REAL_DTYPES[spectrum.dtype]
        z = spectrum.reshape(batch_size * self.num_blocks, self.block_size, -1)  # (B k, d, M)
        w1, b1 = self.complex_block_affine(1, dtype, batch_size)
        w2, b2 = self.complex_block_affine(2, dtype, batch_size)
        hidden = torch.view_as_real(_complex_baddbmm(b1, w1, z))  # (B k, d f, M, 2)
        if self.activation is None:
            F.relu(hidden, inplace=True)
        else:
            hidden = self.activation(hidden)
        hidden = torch.view_as_complex(self.dropout(hidden))
        out = F.softshrink(torch.view_as_real(_complex_baddbmm(b2, w2, hidden)), self.sparsity_threshold)
        return torch.view_as_complex(out).reshape(spectrum.shape)

    def mix(self, x, mask, fft_shape, grid_shape, out=None):
        spectrum = grid_rfftn(_fft_input(x, mask), fft_shape, norm="ortho")  # (B, D, *freq_shape)
        # Keep the chosen modes: a leading range of an axis is a slice (irfftn pads the zeros back on its own),
        # any other choice a gather that is scattered back into zeros after the MLP.
        scattered = []
        for axis, modes in enumerate(self.kept_modes_at(fft_shape) or [None] * len(grid_shape), 2):
            if modes is None:
                continue
            # exported graphs gather a leading range too: irfftn's zero-padding of a slice is a complex pad, which
            # the ONNX exporter cannot convert
            if modes == list(range(len(modes))) and not torch.compiler.is_exporting():
                kept = spectrum.narrow(axis, 0, len(modes))
            else:
                index = torch.tensor(modes, device=x.device)
                scattered.append((axis, index, spectrum.shape[axis]))
                # on the real view (..., 2): the ONNX exporter has no index_select or index_copy for complex tensors
                kept = torch.view_as_complex(torch.view_as_real(spectrum).index_select(axis, index))
            spectrum = kept
        kept = self.block_mlp(spectrum)
        for axis, index, size in reversed(scattered):
            parts = torch.view_as_real(kept)  # (B, D, *modes, 2)
            full_shape = list(parts.shape)
            full_shape[axis] = size
            kept = torch.view_as_complex(parts.new_zeros(full_shape).index_copy(axis, index, parts))
        y = grid_irfftn(kept, fft_shape, grid_shape, norm="ortho", out=out, residual=x)  # (B, *grid, D)
        return _in_dtype(y, x.dtype)

    def extra_repr(self):
        return (
            f"fft_shape={self.fft_shape}, num_blocks={self.num_blocks}, block_size={self.block_size}, "
            f"sparsity_threshold={self.sparsity_threshold}"
            + (", activation=relu" if self.activation is None else "")  # a module activation prints as a child
        )


class MultiHeadAttention(nn.Module):
    """Multi-head attention from the tokens of `x: (B, *grid, D)` to those of `context: (B, *grid_c, context_size)`,
    whose channels the key and value projections bring to `hidden_size`; padded context tokens are masked out.

    `attn_implementation` follows transformers: `"sdpa"` runs `scaled_dot_product_attention`, `"eager"` the explicit
    softmax. Attention weights (B, heads, N, M) can only come from the eager path, so `output_attentions=True` uses
    it whatever the implementation; otherwise the weights returned are None.
    """

    def __init__(self, hidden_size, context_size, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_size(hidden_size, num_heads)
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(context_size, hidden_size)
        self.v_proj = nn.Linear(context_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def attend(self, x, context, context_mask, output_attentions, attn_implementation):
        """-> (out (B, *grid, D), weights (B, heads, N, M) or None); `context_mask: (B, *grid_c)` bool, True on
        real tokens, or None."""
        shape, batch_size = x.shape, x.shape[0]

        def heads(projection, tokens):  # (B, *grid, C) -> (B, h, N, d)
            return projection(tokens.reshape(batch_size, -1, tokens.shape[-1])).view(
                batch_size, -1, self.num_heads, self.head_dim
            ).transpose(1, 2)

        # keys and values from the context with its padded positions zeroed: whatever those hold (even NaN) is then
        # finite after the projections, and masking them out of the softmax removes them exactly; in self-attention
        # the queries too, or a NaN query row would reach the projections' gradients through the softmax backward
        keys_and_values = real_tokens(context, context_mask)
        query = heads(self.q_proj, keys_and_values if context is x else x)
        key, value = heads(self.k_proj, keys_and_values), heads(self.v_proj, keys_and_values)
        key_mask = None if context_mask is None else context_mask.reshape(batch_size, 1, 1, -1)  # True = attend
        attended, weights = multi_head_attention(
            query, key, value, key_mask, self.dropout if self.training else 0.0, output_attentions, attn_implementation
        )
        return self.out_proj(attended.transpose(1, 2).reshape(shape)), weights


class SelfAttention(MultiHeadAttention):
    """Multi-head self-attention over the flattened grid, with padded keys masked out and padded positions querying
    as zero tokens (their outputs are padding): the attention mixer."""

    takes_fft_shape = False  # the call convention, see `hybrid_layers.run_mixer`
    returns_attention_weights = True

    def __init__(self, hidden_size, num_heads, dropout=0.0):
        super().__init__(hidden_size, hidden_size, num_heads, dropout)

    def forward(self, x, mask=None, output_attentions=False, attn_implementation="sdpa"):
        check_mixer_input(self, x, mask, self.q_proj.in_features)
        return self.attend(x, x, mask, output_attentions, attn_implementation)


ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def multi_head_attention(query, key, value, key_mask, dropout, output_attentions, attn_implementation):
    """query (B, h, N, d), key / value (B, h, M, d), key_mask (B, 1, 1, M) bool or None -> (context (B, h, N, d),
    weights (B, h, N, M) when `output_attentions` else None). The weights are those the context was computed with:
    after dropout (in training), as transformers' eager attention returns them."""
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation must be one of {list(ATTENTION_IMPLEMENTATIONS)}, got {attn_implementation!r}."
        )
    # Under a function transform or forward-mode AD attention runs as plain matrix products: SDPA's CPU kernel has
    # no forward-mode derivative and no vmap rule. Any of the three may carry the tangent (cross-attention to a
    # condition with one, or one on a key or value weight only).
    if not output_attentions and attn_implementation == "sdpa" and not any(map(_transformed, (query, key, value))):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout), None
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    weights = F.dropout(scores.softmax(dim=-1), dropout, dropout > 0)
    return weights @ value, weights if output_attentions else None
