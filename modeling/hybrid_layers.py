"""Hybrid token mixers: ways to combine already-built mixers into one (the strategies of spectrans' hybrid blocks).

Each takes a list of its child mixers plus plain keyword arguments, and has the mixer interface
`forward(x, mask=None, output_attentions=False, attn_implementation="sdpa", fft_shape=None) -> (out, attention)` on
channels-last `x: (B, *grid, D)` with `mask: (B, *grid)` bool (True on real tokens). Every child sees the mask, so
padding invariance carries over; the spectral children run at the FFT grid of the call (`fft_shape`, None: the
built one). `attention` is the attention-weight tensor of the attention child, if any (layouts allow each mixer
name at most once per entry), else None.

- `AdaptiveMixer`: a gate computed from the masked mean of the input picks or blends the children.
- `MultiscaleMixer`: children in parallel, fused by `add`, `concat` + projection, or a learned `weighted` sum.
- `CascadeMixer`: children in sequence, each on the normalised running sum of the previous ones.

The alternating strategy needs no module: it is a layout with a different entry per layer.
"""

import torch
from torch import nn

from .spectral_layers import _transformed, build_norm, can_read_values, check_mixer_input, masked_mean, real_tokens


def run_mixer(mixer, x, mask, output_attentions=False, attn_implementation="sdpa", fft_shape=None):
    """Call any mixer with the common interface: returns (out, attention weights or None). `fft_shape` is the FFT
    grid of this call for the spectral mixers (None: the one they were built for); attention needs none.

    The call follows the mixer's class attributes `takes_fft_shape` and `returns_attention_weights` (by default those
    of a spectral mixer: True, False), not its type: a wrapped mixer (PEFT's `modules_to_save`, a `torch.compile`d
    module) forwards attribute lookups to the mixer but is not an instance of its class."""
    options = dict(fft_shape=fft_shape) if getattr(mixer, "takes_fft_shape", True) else {}
    if getattr(mixer, "returns_attention_weights", False):
        return mixer(x, mask, output_attentions=output_attentions, attn_implementation=attn_implementation, **options)
    return mixer(x, mask, **options), None


class HybridMixer(nn.Module):
    """Base of the composite mixers: holds the children of width `hidden_size`; `checked_input` refuses what they
    cannot take before the gate, norms or projections of the composite fail on it; `_run_children` runs them side
    by side on the same input (a cascade runs them in sequence instead)."""

    takes_fft_shape = True  # see `run_mixer`
    returns_attention_weights = True

    def __init__(self, mixers, hidden_size):
        super().__init__()
        self.mixers = nn.ModuleList(mixers)
        self.hidden_size = hidden_size
        if len(self.mixers) < 2:
            raise ValueError(f"{type(self).__name__} combines at least two mixers, got {len(self.mixers)}.")

    def checked_input(self, x, mask):
        """x with its padded positions zeroed, once checked: a child may pass its input through to its output there
        (AFNO adds it back), and a NaN there would reach the gradients of the gate, norms or fusion weights."""
        check_mixer_input(self, x, mask, self.hidden_size)
        return real_tokens(x, mask)

    def _run_children(self, x, mask, output_attentions, attn_implementation, fft_shape):
        outputs, attention = [], None
        for mixer in self.mixers:
            out, weights = run_mixer(mixer, x, mask, output_attentions, attn_implementation, fft_shape)
            outputs.append(out)
            attention = weights if weights is not None else attention
        return outputs, attention


class AdaptiveMixer(HybridMixer):
    """Input-dependent choice between mixers (spectrans `AdaptiveBlock`).

    A linear gate on the masked mean of the input gives per-example probabilities `p: (B, K)` over the K
    children. `gate="soft"` returns `sum_k p_k * mixer_k(x)`. `gate="hard"` uses the one-hot argmax of `p` in the
    forward pass, so each example's output is exactly its chosen mixer's output, and the straight-through estimator
    (`onehot + p - p.detach()`) in the backward pass, so the gate still trains.

    In eval mode without autograd (inference), without `output_attentions`, outside torch.compile and `torch.func`
    transforms and without forward-mode tangents on the gate's input or weights, a hard gate runs each child on the
    examples that chose it only, instead of every child on the whole batch: the same outputs for a fraction of the
    work (finding each child's rows reads the choices back, a synchronisation on GPU).

    After every forward, `last_gate_probs` (B, K) and `last_choices` (B,) (argmax index into `mixers`) hold the gate's
    decisions, detached, for inspection (of eager forwards: a compiled one, or one inside a `torch.func` transform,
    whose tensors would escape it, does not write them).
    """

    def __init__(self, mixers, hidden_size, gate="soft"):
        super().__init__(mixers, hidden_size)
        if gate not in ("soft", "hard"):
            raise ValueError(f"AdaptiveMixer gate must be 'soft' or 'hard', got {gate!r}.")
        self.gate_type = gate
        self.gate = nn.Linear(hidden_size, len(self.mixers))
        self.last_gate_probs = None
        self.last_choices = None

    def forward(self, x, mask=None, output_attentions=False, attn_implementation="sdpa", fft_shape=None):
        x = self.checked_input(x, mask)
        logits = self.gate(masked_mean(x, mask))
        probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)  # (B, K), >= float32
        choices = probs.argmax(dim=-1)  # (B,)
        weights = probs
        if self.gate_type == "hard":
            # one_hot checks its indices' range, a data-dependent branch that vmap cannot take
            one_hot = (choices[:, None] == torch.arange(len(self.mixers), device=choices.device)).to(probs.dtype)
            weights = one_hot + (probs - probs.detach())
        # a compiled checkpointed layer may not write module attributes; a vmapped tensor must not outlive its vmap
        if not torch.compiler.is_compiling() and not _transformed(probs):
            self.last_gate_probs, self.last_choices = probs.detach(), choices.detach()
        # Training mode keeps the full path even without autograd: reentrant checkpointing runs its first forward
        # without gradients and must draw the same dropout masks as its recomputation.
        sparse = self.gate_type == "hard" and not (self.training or torch.is_grad_enabled() or output_attentions)
        # The rows of each child depend on the data. Not with forward-mode tangents on the gate's input or weights:
        # the tangent of the straight-through weights (the gate's derivative) would be left out.
        if sparse and can_read_values() and not _transformed(probs):
            return self._run_chosen(x, mask, choices, attn_implementation, fft_shape), None
        outputs, attention = self._run_children(x, mask, output_attentions, attn_implementation, fft_shape)
        stacked = torch.stack(outputs, dim=-1)  # (B, *grid, D, K)
        weights = weights.view(x.shape[0], *([1] * (x.ndim - 1)), len(self.mixers)).to(x.dtype)
        return (stacked * weights).sum(dim=-1), attention

    def _run_chosen(self, x, mask, choices, attn_implementation, fft_shape):
        """(B, *grid, D): each example's output from its chosen child, each child run on its examples only."""
        out = torch.empty_like(x)
        for index, mixer in enumerate(self.mixers):
            rows = (choices == index).nonzero().squeeze(1)  # (B_k,)
            if rows.numel() == 0:
                continue
            rows_mask = None if mask is None else mask[rows]
            # cast: under autocast an attention child returns the autocast dtype
            out[rows] = run_mixer(mixer, x[rows], rows_mask, False, attn_implementation, fft_shape)[0].to(x.dtype)
        return out

    def extra_repr(self):
        return f"gate={self.gate_type!r}"


class MultiscaleMixer(HybridMixer):
    """Mixers in parallel on the same input (spectrans `MultiscaleBlock`), fused by

    - `add`: the sum of the outputs;
    - `concat`: a linear projection of the concatenated outputs (K * D -> D);
    - `weighted`: `sum_k softmax(w)_k * out_k` with learned logits `fusion_logits: (K,)`, uniform at init.
    """

    def __init__(self, mixers, hidden_size, fusion="add"):
        super().__init__(mixers, hidden_size)
        if fusion not in ("add", "concat", "weighted"):
            raise ValueError(f"MultiscaleMixer fusion must be 'add', 'concat' or 'weighted', got {fusion!r}.")
        self.fusion = fusion
        self.projection = nn.Linear(len(self.mixers) * hidden_size, hidden_size) if fusion == "concat" else None
        self.fusion_logits = nn.Parameter(torch.zeros(len(self.mixers))) if fusion == "weighted" else None

    def forward(self, x, mask=None, output_attentions=False, attn_implementation="sdpa", fft_shape=None):
        x = self.checked_input(x, mask)
        outputs, attention = self._run_children(x, mask, output_attentions, attn_implementation, fft_shape)
        if self.fusion == "add":
            return torch.stack(outputs).sum(dim=0), attention
        if self.fusion == "concat":
            return self.projection(torch.cat(outputs, dim=-1)), attention
        logits = self.fusion_logits
        weights = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=0).to(x.dtype)  # (K,)
        return (torch.stack(outputs, dim=-1) * weights).sum(dim=-1), attention

    def extra_repr(self):
        return f"fusion={self.fusion!r}"


class CascadeMixer(HybridMixer):
    """Mixers in sequence (spectrans `CascadeBlock`): `h_0 = x`, `h_k = h_{k-1} + mixer_k(norm_k(h_{k-1}))`, output
    `h_K - x` (the block adds its own residual). `share_norm=True` uses one norm (`norm_type`) for every stage,
    otherwise each stage has its own. Since the stages normalise their own inputs, a pre-norm `SpectralBlock` passes `x`
    un-normalised and builds no mixer norm for a cascade."""

    def __init__(self, mixers, hidden_size, share_norm=False, eps=1e-12, norm_type="layer_norm"):
        super().__init__(mixers, hidden_size)
        self.share_norm = share_norm
        num_norms = 1 if share_norm else len(self.mixers)
        self.norms = nn.ModuleList(build_norm(norm_type, hidden_size, eps) for _ in range(num_norms))

    def forward(self, x, mask=None, output_attentions=False, attn_implementation="sdpa", fft_shape=None):
        x = self.checked_input(x, mask)  # the norms see every position
        update, attention = torch.zeros_like(x), None  # update = h_k - x
        for index, mixer in enumerate(self.mixers):
            norm = self.norms[0 if self.share_norm else index]
            out, weights = run_mixer(mixer, norm(x + update), mask, output_attentions, attn_implementation, fft_shape)
            update = update + out
            attention = weights if weights is not None else attention
        return update, attention

    def extra_repr(self):
        return f"share_norm={self.share_norm}"
