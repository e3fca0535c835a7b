"""Token mixers and small layers of fourierformers, in plain PyTorch with plain keyword arguments.

Every mixer works on channels-last hidden states `x: (B, *grid, D)` (a sequence has grid `(T,)`, an image
`(H, W)`) and an optional boolean `mask: (B, *grid)` that is True on real tokens. Spectral mixers

- zero the padded positions before transforming, so padding never leaks into real tokens;
- transform at a fixed size `fft_shape` (the longest grid the model accepts) and crop back, so the result at a
  real position does not depend on how much padding the batch has; a call may name another FFT grid
  (`forward(x, fft_shape=...)`), which an image larger than the model's `image_size` uses;
- compute their FFTs in float32 and cast back, because half-precision FFTs are inaccurate (and cuFFT only
  supports power-of-two sizes in half precision).
"""

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .patch_embedding import resize_filter


def sinusoidal_position_table(num_positions, dim):
    """The fixed sin/cos position table of "Attention Is All You Need": (num_positions, dim)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def masked_mean(x, mask):
    """(B, *grid, D) -> (B, D): the mean over real tokens (all tokens when `mask` is None)."""
    tokens = x.flatten(1, -2)  # (B, N, D)
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.flatten(1).to(tokens.dtype)[..., None]  # (B, N, 1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1)


def masked_max(x, mask):
    """(B, *grid, D) -> (B, D): the per-channel maximum over real tokens (all tokens when `mask` is None)."""
    tokens = x.flatten(1, -2)  # (B, N, D)
    if mask is not None:
        tokens = tokens.masked_fill(~mask.flatten(1)[..., None], torch.finfo(tokens.dtype).min)
    return tokens.amax(dim=1)


def _fft_input(x, mask):
    """Zero the padded positions of x: (B, *grid, D) (mask: (B, *grid) bool) and upcast to the FFT dtype:
    float32, or float64 for float64 inputs (gradient checks)."""
    if mask is not None:
        x = x.masked_fill(~mask[..., None], 0.0)
    return x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def _grid_axes(x):
    return tuple(range(1, x.ndim - 1))


def _crop(x, grid_shape):
    """Keep the first `grid_shape` entries of each grid axis of (B, *fft_shape, D)."""
    return x[(slice(None), *(slice(0, n) for n in grid_shape))]


def _check_grid(x, fft_shape):
    grid_shape = tuple(x.shape[1:-1])
    if len(grid_shape) != len(fft_shape) or any(n > size for n, size in zip(grid_shape, fft_shape)):
        raise ValueError(f"Mixer input grid {grid_shape} does not fit the FFT size {tuple(fft_shape)}.")
    return grid_shape


def grid_rfftn(x, fft_shape, norm):
    """`rfftn` of channels-last x: (B, *grid, D) over its grid axes at size `fft_shape`: (B, *freq_shape, D).

    On CPU each row is padded by two channels first: pocketfft transforms strided columns several times slower
    when the row stride is a power of two (cache-set conflicts; 3.6x for 4096 x 256 floats), and the copy is cheap.
    """
    hidden_size = x.shape[-1]
    if x.is_cpu:
        x = F.pad(x, (0, 2))
    return torch.fft.rfftn(x, s=fft_shape, dim=_grid_axes(x), norm=norm)[..., :hidden_size]


def grid_irfftn(spectrum, fft_shape, norm):
    """`irfftn` of a channels-last spectrum (B, *freq_shape, D) back to a contiguous (B, *fft_shape, D).

    pocketfft writes its output with the transformed axes innermost, i.e. channels-first in memory; every later
    elementwise op would then walk it transposed, so it is copied to channels-last once. A channels-last input
    is padded by two channels first, as in `grid_rfftn`.
    """
    hidden_size = spectrum.shape[-1]
    if spectrum.is_cpu and spectrum.stride(-1) == 1:  # channels innermost: the transforms walk strided columns
        spectrum = F.pad(spectrum, (0, 2))
    y = torch.fft.irfftn(spectrum, s=fft_shape, dim=_grid_axes(spectrum), norm=norm)
    return y[..., :hidden_size].contiguous()


def fast_fft_size(n):
    """The smallest integer >= n whose only prime factors are 2, 3 and 5 (fast sizes for pocketfft and cuFFT)."""
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


class MLP(nn.Module):
    """Position-wise feed-forward network: fc1 -> activation -> dropout -> fc2."""

    def __init__(self, hidden_size, intermediate_size, activation, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = activation
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x):
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class FourierMixer(nn.Module):
    """FNet mixing: `Re(FFT_grid(FFT_channels(x)))`, no parameters.

    The input is real, so its spectrum is conjugate-symmetric, `X[t, D-k] = conj(X[-t, k])`: only the
    half-spectrum over channels is computed (rfft) and the other half of the real part is read off the
    mirrored grid frequencies, about half the work of a full complex FFT.
    """

    def __init__(self, fft_shape, norm="backward"):
        super().__init__()
        self.fft_shape = tuple(fft_shape)
        self.norm = norm

    def forward(self, x, mask=None, fft_shape=None):
        """x: (B, *grid, D), mask: (B, *grid) -> (B, *grid, D); `fft_shape` overrides the built FFT grid."""
        fft_shape = self.fft_shape if fft_shape is None else tuple(fft_shape)
        grid_shape = _check_grid(x, fft_shape)
        axes = _grid_axes(x)
        hidden_size = x.shape[-1]
        spectrum = torch.fft.rfft(_fft_input(x, mask), dim=-1, norm=self.norm)  # (B, *grid, D//2+1)
        spectrum = torch.fft.fftn(spectrum, s=fft_shape, dim=axes, norm=self.norm)  # (B, *fft_shape, D//2+1)
        real = spectrum.real
        lower_channels = hidden_size // 2 + 1
        out = real.new_empty(x.shape)  # (B, *grid, D)
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
        return out.to(x.dtype)

    def extra_repr(self):
        return f"fft_shape={self.fft_shape}, norm={self.norm!r}"


class GlobalFilter(nn.Module):
    """GFNet mixing: `irfftn(rfftn(x) * K)` over the grid axes with a learnable complex filter K per frequency and
    channel, stored as a real tensor `complex_weight: (*freq_shape, D, 2)` (real, imaginary), the layout of the
    original GFNet checkpoints. `freq_shape` is `fft_shape` with the last axis halved (rfft): `n // 2 + 1`.

    `activation` maps the stored weights to the filter, K = f(W_r) + i f(W_i): `identity` (original GFNet),
    `sigmoid` or `tanh` (bounded filters). At another FFT grid than the one it was built for, the stored weights
    are first resized to that grid's frequencies by `resize_filter`, as `from_pretrained(image_size=...)` does.
    """

    _no_weight_decay = ("complex_weight",)

    def __init__(self, hidden_size, fft_shape, activation="identity"):
        super().__init__()
        self.fft_shape = tuple(fft_shape)
        self.activation = activation
        freq_shape = (*self.fft_shape[:-1], self.fft_shape[-1] // 2 + 1)
        self.complex_weight = nn.Parameter(torch.empty(*freq_shape, hidden_size, 2))
        self._kernel_cache = None  # (weight version key, kernel) for inference on short inputs

    def complex_filter(self, dtype=torch.float32, fft_shape=None):
        """The filter K as a complex tensor of shape (*freq_shape, D), from real and imaginary parts of `dtype`;
        `freq_shape` is that of `fft_shape` (default: the built grid), resized differentiably when it differs."""
        weight = self.complex_weight
        if fft_shape is not None and tuple(fft_shape) != self.fft_shape:
            weight = resize_filter(weight, fft_shape)
        weight = weight.to(dtype)
        if self.activation == "sigmoid":
            weight = torch.sigmoid(weight)
        elif self.activation == "tanh":
            weight = torch.tanh(weight)
        return torch.view_as_complex(weight.contiguous())

    def forward(self, x, mask=None, fft_shape=None):
        """x: (B, *grid, D), mask: (B, *grid) -> (B, *grid, D); `fft_shape` overrides the built FFT grid."""
        fft_shape = self.fft_shape if fft_shape is None else tuple(fft_shape)
        grid_shape = _check_grid(x, fft_shape)
        real_input = _fft_input(x, mask)
        short_path = fft_shape == self.fft_shape and len(grid_shape) == 1
        if short_path and self.short_fft_size(x.shape[0], grid_shape[0]) is not None:
            return self.short_convolution(real_input, grid_shape[0]).to(x.dtype)
        spectrum = grid_rfftn(real_input, fft_shape, norm="ortho")  # (B, *freq_shape, D), channels-first in memory
        # The filter laid out like the spectrum: a product that walks one operand transposed is several times slower.
        kernel = self.complex_filter(real_input.dtype, fft_shape)
        spectrum = spectrum * kernel.movedim(-1, 0).contiguous().movedim(0, -1)
        y = grid_irfftn(spectrum, fft_shape, norm="ortho")  # (B, *fft_shape, D)
        return _crop(y, grid_shape).to(x.dtype)

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
        """The circular convolution kernel k = irfft(K, L): (L, D) of a 1-D filter.

        In inference (no gradient needed, not compiling) it is cached until the weights change (in-place updates
        bump the parameter's version counter, replacing or moving it changes its storage): for short inputs
        this length-L transform would otherwise cost more than the rest of the mixer.
        """
        weight = self.complex_weight

        def compute():
            return grid_irfftn(self.complex_filter(dtype)[None], self.fft_shape, norm="backward")[0]

        if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return compute()
        key = (weight._version, weight.data_ptr(), weight.device, dtype)
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            self._kernel_cache = (key, compute())
        return self._kernel_cache[1]

    def short_convolution(self, x, length):
        """The filter as a linear convolution for a 1-D input of n = `length` < L tokens, x: (B, n, D) in the FFT dtype.

        `irfft(rfft(x, L) * K, L)` is the circular convolution of x with the kernel k = irfft(K, L) (the "ortho"
        factors cancel). Output t < n reads inputs s < n through taps k[(t - s) mod L], so only the 2n - 1 taps
        k[0 .. n-1] and k[L-n+1 .. L-1] matter: laid out circularly in an FFT of size >= 2n - 1 they give the same
        outputs without wrap-around, at a fraction of the cost of length-L transforms of the whole batch.
        """
        fft_length = self.fft_shape[0]
        size = fast_fft_size(2 * length - 1)
        kernel = self.time_domain_kernel(x.dtype)  # (L, D)
        gap = kernel.new_zeros(size - 2 * length + 1, kernel.shape[-1])
        # (size, D): lags 0 .. n-1 first, lags -(n-1) .. -1 at the end, zeros between
        taps = torch.cat([kernel[:length], gap, kernel[fft_length - length + 1 :]])
        spectrum = grid_rfftn(x, (size,), norm="backward") * torch.fft.rfft(taps, dim=0)  # (B, size // 2 + 1, D)
        return grid_irfftn(spectrum, (size,), norm="backward")[:, :length]

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


def _interleaved_block_affine(weight, bias):
    """A complex block-diagonal affine map as real tensors acting on interleaved (real, imaginary) channels.

    weight: (2, k, i, o), bias: (2, k, o), index 0 the real and 1 the imaginary part. Returns the real weight
    (k, 2i, 2o) and bias (k, 1, 2o) such that `z @ weight + bias` on z: (k, N, 2i) is the complex map.
    """
    real, imag = weight[0], weight[1]  # (k, i, o)
    from_real = torch.stack([real, imag], dim=-1)  # an input's real part feeds (w_r, w_i) of each output
    from_imag = torch.stack([-imag, real], dim=-1)  # its imaginary part feeds (-w_i, w_r)
    num_blocks, inputs, outputs = real.shape
    real_weight = torch.stack([from_real, from_imag], dim=2).reshape(num_blocks, 2 * inputs, 2 * outputs)
    return real_weight, bias.permute(1, 2, 0).reshape(num_blocks, 1, 2 * outputs)


class AFNOMixer(nn.Module):
    """Adaptive Fourier Neural Operator mixing (Guibas et al., 2022).

    `rfftn` over the grid -> keep the chosen modes -> a two-layer complex MLP, block-diagonal over `num_blocks`
    channel blocks and shared by all frequencies (ReLU on real and imaginary parts) -> soft-shrink ->
    `irfftn` -> plus the mixer input. Parameters use the layout of the original checkpoints: `w1: (2, k, d, d*f)`,
    `b1: (2, k, d*f)`, `w2: (2, k, d*f, d)`, `b2: (2, k, d)` with index 0 the real and 1 the imaginary part,
    k = num_blocks, d = D / k, f = hidden_size_factor.

    `kept_modes` lists, for each frequency axis, the indices that are processed (None: all); everything else
    is set to zero. `num_modes` instead keeps the frequencies |f| < num_modes of every axis (`lowest_kept_modes`),
    recomputed for the grid of each call, so a larger FFT grid keeps the same frequencies; fixed `kept_modes`
    stay the same indices at every grid.
    """

    _no_weight_decay = ("b1", "b2")

    def __init__(
        self, hidden_size, fft_shape, num_blocks=8, hidden_size_factor=1, sparsity_threshold=0.01, kept_modes=None,
        num_modes=None,
    ):
        super().__init__()
        if hidden_size % num_blocks:
            raise ValueError(f"AFNO num_blocks ({num_blocks}) must divide hidden_size ({hidden_size}).")
        if kept_modes is not None and num_modes is not None:
            raise ValueError("Give AFNOMixer at most one of `kept_modes` (fixed indices) and `num_modes`.")
        self.fft_shape = tuple(fft_shape)
        self.num_blocks = num_blocks
        self.block_size = hidden_size // num_blocks
        self.sparsity_threshold = sparsity_threshold
        self.num_modes = num_modes
        if num_modes is not None:
            kept_modes = lowest_kept_modes(self.fft_shape, num_modes)
        self.kept_modes = None if kept_modes is None else [None if m is None else list(m) for m in kept_modes]
        inner = self.block_size * hidden_size_factor
        self.w1 = nn.Parameter(torch.empty(2, num_blocks, self.block_size, inner))
        self.b1 = nn.Parameter(torch.empty(2, num_blocks, inner))
        self.w2 = nn.Parameter(torch.empty(2, num_blocks, inner, self.block_size))
        self.b2 = nn.Parameter(torch.empty(2, num_blocks, self.block_size))

    def kept_modes_at(self, fft_shape):
        """The kept indices per frequency axis (None: all) for an FFT over `fft_shape`."""
        if self.num_modes is None or tuple(fft_shape) == self.fft_shape:
            return self.kept_modes
        return lowest_kept_modes(fft_shape, self.num_modes)

    def block_mlp(self, spectrum):
        """(..., D) complex -> (..., D) complex: the block-diagonal complex MLP and soft-shrink.

        Computed in real arithmetic on the interleaved (real, imaginary) layout of `view_as_real`: a complex
        product z·w is the real product [z_r, z_i] @ [[w_r, w_i], [-w_i, w_r]], so each layer is one real batched
        matmul over the blocks, and ReLU / soft-shrink of real and imaginary parts are plain elementwise ops.
        """
        shape = spectrum.shape
        dtype = spectrum.real.dtype
        z = torch.view_as_real(spectrum).reshape(-1, self.num_blocks, 2 * self.block_size).transpose(0, 1)  # (k, N, 2d)
        w1, b1 = _interleaved_block_affine(self.w1.to(dtype), self.b1.to(dtype))
        w2, b2 = _interleaved_block_affine(self.w2.to(dtype), self.b2.to(dtype))
        hidden = F.relu(torch.baddbmm(b1, z, w1))  # (k, N, 2 d f)
        out = F.softshrink(torch.baddbmm(b2, hidden, w2), self.sparsity_threshold)  # (k, N, 2d)
        return torch.view_as_complex(out.transpose(0, 1).reshape(*shape, 2))

    def forward(self, x, mask=None, fft_shape=None):
        """x: (B, *grid, D), mask: (B, *grid) -> (B, *grid, D); `fft_shape` overrides the built FFT grid."""
        fft_shape = self.fft_shape if fft_shape is None else tuple(fft_shape)
        grid_shape = _check_grid(x, fft_shape)
        axes = _grid_axes(x)
        spectrum = grid_rfftn(_fft_input(x, mask), fft_shape, norm="ortho")  # (B, *freq_shape, D)
        kept_modes = self.kept_modes_at(fft_shape) or [None] * len(axes)
        indices = [None if modes is None else torch.tensor(modes, device=x.device) for modes in kept_modes]
        kept = spectrum
        for axis, index in zip(axes, indices):
            if index is not None:
                kept = kept.index_select(axis, index)
        kept = self.block_mlp(kept)
        # Scatter the processed modes back into a zero spectrum, one truncated axis at a time.
        for axis, index in reversed(list(zip(axes, indices))):
            if index is not None:
                full_shape = list(kept.shape)
                full_shape[axis] = spectrum.shape[axis]
                kept = kept.new_zeros(full_shape).index_copy(axis, index, kept)
        y = grid_irfftn(kept, fft_shape, norm="ortho")  # (B, *fft_shape, D)
        return (_crop(y, grid_shape) + x.to(y.dtype)).to(x.dtype)

    def extra_repr(self):
        return (
            f"fft_shape={self.fft_shape}, num_blocks={self.num_blocks}, block_size={self.block_size}, "
            f"sparsity_threshold={self.sparsity_threshold}"
        )


class SelfAttention(nn.Module):
    """Multi-head self-attention over the flattened grid, with padded keys masked out.

    `attn_implementation` follows transformers: `"sdpa"` runs `scaled_dot_product_attention`, `"eager"` the explicit
    softmax. Attention weights (B, heads, N, N) can only come from the eager path, so `output_attentions=True` uses it
    whatever the implementation; otherwise the weights returned are None.
    """

    def __init__(self, hidden_size, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x, mask=None, output_attentions=False, attn_implementation="sdpa"):
        shape = x.shape
        tokens = x.reshape(shape[0], -1, shape[-1])  # (B, N, D)

        def heads(projection):
            return projection(tokens).view(shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

        query, key, value = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)  # (B, h, N, d)
        key_mask = None if mask is None else mask.reshape(shape[0], 1, 1, -1)  # True = attend
        context, weights = multi_head_attention(
            query, key, value, key_mask, self.dropout if self.training else 0.0, output_attentions, attn_implementation
        )
        context = context.transpose(1, 2).reshape(shape)
        return self.out_proj(context), weights


ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def multi_head_attention(query, key, value, key_mask, dropout, output_attentions, attn_implementation):
    """query (B, h, N, d), key / value (B, h, M, d), key_mask (B, 1, 1, M) bool or None -> (context (B, h, N, d),
    weights (B, h, N, M) when `output_attentions` else None)."""
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation must be one of {list(ATTENTION_IMPLEMENTATIONS)}, got {attn_implementation!r}."
        )
    if not output_attentions and attn_implementation == "sdpa":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout), None
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    context = F.dropout(weights, dropout, dropout > 0) @ value
    return context, weights if output_attentions else None
