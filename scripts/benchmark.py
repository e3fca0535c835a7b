"""Speed and memory of the fourierformers mixers against transformers' BERT (SDPA attention) and FNet.

Every model has the same size (hidden, layers, FFN width, vocabulary, heads) and no dropout:

    identity             our block with the mixer switched off (`mixer_layout=["none"] * L`): the lower bound
                         (GFNet's pre-norm block; FNet-hybrid's post-norm block with its embedding projection and
                         pooler costs a few percent more, which its "× identity" includes)
    gfnet, afno          every layer a global filter / an AFNO mixer
    fnet_hybrid_fourier  every layer our Fourier mixer (pure FNet layout)
    fnet_hybrid          Fourier layers, attention in the last two (the family default)
    bert_sdpa            transformers' BertModel with attn_implementation="sdpa"
    hf_fnet              transformers' FNetModel
    vit_sdpa             transformers' ViTModel with attn_implementation="sdpa" (images only)

Text models take token ids; the image sweep (--image-sizes) runs the image models of the same size on
`pixel_values` (patches of --patch-size pixels, 3 channels), ViT-SDPA taking BERT-SDPA's place.

For each mode (inference forward; training forward + backward), batch size and sequence length or image size,
the models run in interleaved rounds in one process (each round runs every model once, starting at a rotating
model) and the median time per batch is reported, with tokens (or images) per second and the peak memory of one
step (the peak of the tensor memory it allocates; on CPU from the profiler's memory events).
A model is skipped at a length or image size (and all larger ones) when it ran out of memory or its predicted
time, extrapolated from the previous one, exceeds --max-seconds. Ratios move by a few percent from one process to
the next (memory layout, page faults): --processes N runs the sweep in N fresh processes, one after the other, and
reports the median time and the median ratio (with the range over the processes) of each model and setting.

Extra sections: the Fourier mixer against transformers' FNet Fourier layer (same outputs), short inputs in
models built for long ones, the fitted exponent of training memory against length, and `torch.compile`
(inductor) variants with --compile.

    python scripts/benchmark.py --quick                 # under 3 minutes on 2 CPU cores
    python scripts/benchmark.py                         # the full sweep: 128 -> 16384 tokens, 224 -> 1024 px
    python scripts/benchmark.py --processes 3           # medians and ranges over 3 fresh processes
    python scripts/benchmark.py --device cuda --dtype bfloat16
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, FNetConfig, FNetModel, ViTConfig, ViTModel

from fourierformers import AFNOConfig, AFNOModel, FNetHybridConfig, FNetHybridModel, GFNetConfig, GFNetModel
from fourierformers.spectral_layers import FourierMixer

MODEL_NAMES = ("identity", "gfnet", "afno", "fnet_hybrid_fourier", "fnet_hybrid", "bert_sdpa", "hf_fnet", "vit_sdpa")
TEXT_ONLY, IMAGE_ONLY = ("bert_sdpa", "hf_fnet"), ("vit_sdpa",)
QUADRATIC_MODELS = ("fnet_hybrid", "bert_sdpa", "vit_sdpa")  # attention: time grows with the square of the length
ATTENTION_REFERENCE = {"text": "bert_sdpa", "image": "vit_sdpa"}  # the "× attention" column of each sweep
SHORT_INPUT_TOLERANCE = 1e-5  # short-input outputs against the full-length computation (float32)


# The sweep of a full run and of --quick, for the options not given on the command line.
FULL_SWEEP = dict(lengths=[128, 256, 512, 1024, 2048, 4096, 8192, 16384], image_sizes=[224, 384, 512, 1024],
                  batch_sizes=[1, 8], repeats=7, max_seconds=20.0)
ATTENTION_MODELS = {"bert_sdpa", "vit_sdpa", "fnet_hybrid"}  # the ones that need --num-heads to divide --hidden-size
FIRST_INPUT_ID = 5  # random input ids start above the special tokens (BERT's [PAD], [UNK], [CLS], [SEP], [MASK])
QUICK_SWEEP = dict(lengths=[512, 1024, 4096], image_sizes=[224, 512], batch_sizes=[1], repeats=3, max_seconds=10.0)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true",
        help="a few lengths and image sizes, batch 1, fewer repetitions (as defaults: options given still apply)",
    )
    parser.add_argument("--lengths", type=int, nargs="*")
    parser.add_argument("--image-sizes", type=int, nargs="*", help="square images, pixels per side")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--modes", nargs="+", default=["inference", "training"], choices=["inference", "training"])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=1024)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--repeats", type=int, help="interleaved rounds per setting")
    parser.add_argument("--max-seconds", type=float, help="skip a model predicted to take longer")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--timer",
        default="wall",
        choices=["wall", "cpu"],
        help="wall clock, or process CPU time (summed over threads): robust to other jobs on a shared machine",
    )
    parser.add_argument(
        "--malloc",
        default="default",
        choices=["default", "keep-freed"],
        help="the C library's allocator as it comes, or (glibc) told to serve blocks of up to 32 MiB from its heap "
        "and keep freed memory mapped, so that steps do not page-fault on their temporaries (see keep_freed_memory)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) variants")
    parser.add_argument("--short-length", type=int, default=64, help="input length of the short-input figure")
    parser.add_argument("--long-length", type=int, default=4096, help="max_position_embeddings it runs in")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run the sweep in this many fresh processes, one after the other, and report the median times and the "
        "median ratios with their ranges: ratios move by a few percent from one process to the next (memory layout, "
        "page faults)",
    )
    parser.add_argument("--records-only", action="store_true", help=argparse.SUPPRESS)  # a --processes child
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent.parent / "docs",
                        help="where plots and records go (default: the repository's docs/)")
    args = parser.parse_args()
    for name, value in (QUICK_SWEEP if args.quick else FULL_SWEEP).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    sizes = ("processes", "repeats", "patch_size", "hidden_size", "num_layers", "intermediate_size", "num_heads",
             "vocab_size", "threads", "short_length", "long_length", "lengths", "batch_sizes", "image_sizes")
    for name in sizes:
        values = getattr(args, name)
        if any(value < 1 for value in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name.replace('_', '-')} takes positive integers, got {values}.")
    if args.max_seconds <= 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}.")
    if args.dtype == "bfloat16" and "hf_fnet" in args.models:
        # transformers' FNet calls torch.fft.fftn on its bfloat16 input, which torch's FFTs do not take (CPU or CUDA)
        args.models = [name for name in args.models if name != "hf_fnet"]
        if not args.models:
            parser.error("--models hf_fnet with --dtype bfloat16: transformers' FNet has no bfloat16 FFT.")
        print("hf_fnet left out: transformers' FNet has no bfloat16 FFT.")
    if args.vocab_size <= FIRST_INPUT_ID:
        parser.error(f"--vocab-size must exceed {FIRST_INPUT_ID} (input ids are drawn above the special tokens), "
                     f"got {args.vocab_size}.")
    if args.hidden_size % args.num_heads and set(args.models) & ATTENTION_MODELS:
        parser.error(f"--num-heads {args.num_heads} must divide --hidden-size {args.hidden_size} for the attention "
                     f"models ({', '.join(sorted(set(args.models) & ATTENTION_MODELS))}).")
    text_models = [name for name in args.models if name not in IMAGE_ONLY]
    image_models = [name for name in args.models if name not in TEXT_ONLY]
    if not (args.lengths and text_models or args.image_sizes and image_models):
        parser.error(
            f"Nothing to measure: --models {' '.join(args.models)} with --lengths {args.lengths} and --image-sizes "
            f"{args.image_sizes}; text models need lengths, image models ({', '.join(IMAGE_ONLY)} and ours) image "
            "sizes."
        )
    if args.short_length > args.long_length:
        parser.error(f"--short-length {args.short_length} must not exceed --long-length {args.long_length}.")
    if image_models:
        bad = [size for size in args.image_sizes if size < args.patch_size or size % args.patch_size]
        if bad:
            parser.error(f"--image-sizes {bad} are not multiples of --patch-size {args.patch_size}: the patches must "
                         "tile the image.")
    try:
        device_type = torch.empty(0, device=args.device).device.type
    except (RuntimeError, AssertionError) as error:
        parser.error(f"--device {args.device} is not usable here ({error}).")
    if device_type == "meta":
        parser.error("--device meta holds no data to time: use cpu or cuda.")
    return args


def build_model(name, args, length=None, image_size=None):
    """The model `name` at the benchmark size: a text model accepting sequences up to `length` tokens, or an image
    model for `image_size` x `image_size` pixels."""
    sizes = dict(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        intermediate_size=args.intermediate_size,
        hidden_dropout_prob=0.0,
    )
    if image_size is None:
        sizes.update(vocab_size=args.vocab_size, max_position_embeddings=length)
    else:
        if name in TEXT_ONLY:
            raise ValueError(f"{name} is a text model; the image models are {image_model_names(MODEL_NAMES)}.")
        sizes.update(image_size=image_size, patch_size=args.patch_size, num_channels=3)
    attention = dict(num_attention_heads=args.num_heads, attention_probs_dropout_prob=0.0)
    if name == "vit_sdpa":
        if image_size is None:
            raise ValueError("vit_sdpa is an image model; give it an image_size.")
        model = ViTModel(ViTConfig(**sizes, **attention, attn_implementation="sdpa"), add_pooling_layer=False)
    elif name == "bert_sdpa":
        model = BertModel(BertConfig(**sizes, **attention, attn_implementation="sdpa"))
    elif name == "hf_fnet":
        model = FNetModel(FNetConfig(**sizes))
    elif name == "identity":
        model = GFNetModel(GFNetConfig(**sizes, mixer_layout=["none"] * args.num_layers))
    elif name == "gfnet":
        model = GFNetModel(GFNetConfig(**sizes))
    elif name == "afno":
        model = AFNOModel(AFNOConfig(**sizes))
    elif name == "fnet_hybrid_fourier":
        model = FNetHybridModel(FNetHybridConfig(**sizes, **attention, mixer_layout=["fourier"] * args.num_layers))
    elif name == "fnet_hybrid":
        model = FNetHybridModel(FNetHybridConfig(**sizes, **attention))
    else:
        raise ValueError(f"Unknown model {name!r}; allowed: {list(MODEL_NAMES)}.")
    return model.to(device=args.device, dtype=getattr(torch, args.dtype))


def image_model_names(names):
    return [name for name in names if name.removesuffix("+inductor") not in TEXT_ONLY]


def text_model_names(names):
    return [name for name in names if name.removesuffix("+inductor") not in IMAGE_ONLY]


def make_step(model, mode, inputs):
    """A closure running one inference forward or one training forward + backward on `inputs` (keyword
    arguments: `input_ids` or `pixel_values`)."""
    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode():
                model(**inputs)

    else:
        model.train()

        def step():
            outputs = model(**inputs)
            outputs.last_hidden_state.float().square().mean().backward()
            model.zero_grad(set_to_none=True)

    return step


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(step, device, timer="wall"):
    clock = CLOCKS[timer]
    synchronize(device)
    start = clock()
    step()
    synchronize(device)
    return clock() - start


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what C++ code writes to stderr (file descriptor 2) to /dev/null for the block: torch's profiler logs
    lines such as `USDT: ... profiler_start` every time it starts and stops, whatever KINETO_LOG_LEVEL says."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_mib(step, device):
    """Memory one step needs on top of what is allocated before it (model, inputs), in MiB: the peak of the
    running sum of its tensor allocations and frees (CUDA: the caching allocator's statistics; CPU: the memory
    events of the profiler, which do not depend on how the C library's allocator reuses memory)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    # silenced throughout: the allocator also warns when the step frees a block allocated before profiling began
    with native_stderr_silenced():
        profiler.start()
        try:
            step()
        finally:
            profiler.stop()
    events = [event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        live += event.nbytes()  # negative for a free
        peak = max(peak, live)
    return peak / 2**20


def is_out_of_memory(error):
    """CUDA's error, Python's, or the CPU allocator's (`DefaultCPUAllocator: can't allocate memory`)."""
    message = str(error).lower()
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or any(
        words in message for words in ("out of memory", "can't allocate memory")
    )


def compiled_graphs():
    """How many graphs torch.compile has compiled in this process."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def benchmark_setting(args, names, mode, batch_size, length, previous, skipped, image_size=None):
    """Time every model of `names` at one (mode, batch size, length) of token ids, or (mode, batch size, image
    size) of images, whose `length` is their number of patches; returns one record per model."""
    records, steps = [], {}
    generator = torch.Generator().manual_seed(0)
    if image_size is None:
        input_ids = torch.randint(FIRST_INPUT_ID, args.vocab_size, (batch_size, length), generator=generator)
        inputs, setting = dict(input_ids=input_ids.to(args.device)), dict(input="text")
    else:
        pixels = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
        inputs = dict(pixel_values=pixels.to(device=args.device, dtype=getattr(torch, args.dtype)))
        setting = dict(input="image", image_size=image_size)
    if any(name.endswith("+inductor") for name in names):
        # Every family's forward is one code object: the models of earlier settings would fill its recompile limit
        # (8), after which torch.compile runs the new models eagerly.
        torch._dynamo.reset()
    for name in names:
        record = dict(**setting, mode=mode, batch_size=batch_size, length=length, model=name)
        records.append(record)
        if name in skipped:
            record["status"] = skipped[name]
            continue
        if name in previous:
            exponent = 2.0 if name.removesuffix("+inductor") in QUADRATIC_MODELS else 1.2
            predicted = previous[name][1] * (length / previous[name][0]) ** exponent
            if predicted > args.max_seconds:
                skipped[name] = record["status"] = f"skipped: predicted {predicted:.3g} s > {args.max_seconds:.3g} s"
                continue
        try:
            model = build_model(name.removesuffix("+inductor"), args, length, image_size)
            if name.endswith("+inductor"):
                model = torch.compile(model)
            step = make_step(model, mode, inputs)
            graphs_before = compiled_graphs()
            timed(step, args.device)  # warm-up (and compilation)
            if name.endswith("+inductor") and compiled_graphs() == graphs_before:
                skipped[name] = record["status"] = "failed: torch.compile fell back to eager (no graph compiled)"
                continue
            record["peak_mib"] = peak_memory_mib(step, args.device)
            steps[name] = step
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            skipped[name] = record["status"] = "skipped: out of memory"
            gc.collect()
    times = {name: [] for name in steps}
    for round_index in range(args.repeats):
        for name in rotated(list(steps), round_index):
            try:
                times[name].append(timed(steps[name], args.device, args.timer))
            except (RuntimeError, MemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                del steps[name], times[name]
                skipped[name] = next(r for r in records if r["model"] == name)["status"] = "skipped: out of memory"
                gc.collect()
    for record in records:
        if record["model"] in times:
            seconds = statistics.median(times[record["model"]])
            record.update(status="ok", ms=seconds * 1e3, tokens_per_s=batch_size * length / seconds)
            if image_size is not None:
                record["images_per_s"] = batch_size / seconds
            previous[record["model"]] = (length, seconds)
    return records


def rotated(names, round_index):
    """`names` starting at the one after `round_index` turns: each round of repetitions starts at another model."""
    start = round_index % len(names) if names else 0
    return names[start:] + names[:start]


RATIO_KEYS = ("x_identity", "x_attention")


def add_ratios(records):
    """× identity and × attention: each model's time over the bound's and over the SDPA attention model's (BERT for
    text, ViT for images) in the same setting."""
    by_setting = {}
    for record in records:
        if record["status"] == "ok":
            setting = (record["input"], record["mode"], record["batch_size"], record["length"])
            by_setting.setdefault(setting, {})[record["model"]] = record
    for (input_kind, *_), models in by_setting.items():
        for record in models.values():
            for reference, key in zip(("identity", ATTENTION_REFERENCE[input_kind]), RATIO_KEYS):
                if reference in models:
                    record[key] = record["ms"] / models[reference]["ms"]


def markdown_table(records, input_kind):
    """The records of one input kind ("text" or "image") as a markdown table."""
    text = input_kind == "text"
    size_column, rate_column, attention = ("tokens", "tokens", "BERT") if text else ("image (tokens)", "images", "ViT")
    lines = [
        f"| mode | batch | {size_column} | model | ms / batch | {rate_column} / s | peak MiB | × identity | "
        f"× {attention}-SDPA |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        if record["input"] != input_kind:
            continue
        size = record["length"] if text else f"{record['image_size']} px ({record['length']})"
        head = f"| {record['mode']} | {record['batch_size']} | {size} | {record['model']} |"
        if record["status"] != "ok":
            lines.append(f"{head} {record['status']} | | | | |")
            continue
        rate = f"{record['tokens_per_s']:,.0f}" if text else f"{record['images_per_s']:,.1f}"
        ratios = [ratio_cell(record, key) for key in RATIO_KEYS]
        peak = record["peak_mib"]
        peak = f"{peak:.0f}" if peak >= 10 else f"{peak:.2g}"  # a tiny run's few KiB are not 0
        lines.append(f"{head} {record['ms']:.1f} | {rate} | {peak} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def ratio_cell(record, key):
    """A ratio for the table: with several processes, their median and range, and how many ran where not all did."""
    if key not in record:
        return ""
    runs, notes = record.get(f"{key}_runs", []), []
    if runs and f"{min(runs):.2f}" != f"{max(runs):.2f}":
        notes.append(f"{min(runs):.2f}–{max(runs):.2f}")
    ran = len(record.get("ms_runs", []))
    if ran < record.get("processes", ran):
        notes.append(f"{ran} of {record['processes']} processes")
    return f"{record[key]:.2f}" + (f" ({', '.join(notes)})" if notes else "")


def memory_exponents(records):
    """Fitted exponent a of peak training memory ~ tokens^a per input kind, model and batch size (>= 1024 tokens)."""
    fits = {}
    for record in records:
        if record["mode"] == "training" and record["status"] == "ok" and record["length"] >= 1024:
            key = (record["input"], record["model"], record["batch_size"])
            fits.setdefault(key, []).append((record["length"], record["peak_mib"]))
    return {
        key: float(np.polyfit(np.log([n for n, _ in points]), np.log([m for _, m in points]), 1)[0])
        for key, points in fits.items()
        if len(points) >= 2 and all(m > 0 for _, m in points)
    }


def fourier_layer_comparison(args, lengths):
    """Our FourierMixer at its full length against transformers' FNet Fourier layer `fftn(x, dim=(1, 2)).real`,
    alone and with the residual add that consumes it in both models: transformers' layer returns a strided view of
    the complex spectrum, whose reading its residual add pays for, where ours returns a contiguous tensor."""
    lines = [
        "| tokens | ours ms | transformers ms | speed-up | with the residual add: ours ms | transformers ms | speed-up "
        "| max abs difference |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for length in lengths:
        x = torch.randn(1, length, args.hidden_size, device=args.device)
        mixer = FourierMixer((length,), norm="backward")
        steps = {
            "ours": lambda: mixer(x),
            "transformers": lambda: torch.fft.fftn(x, dim=(1, 2)).real,
            "ours + residual": lambda: x + mixer(x),
            "transformers + residual": lambda: x + torch.fft.fftn(x, dim=(1, 2)).real,
        }
        times = {name: [] for name in steps}
        with torch.inference_mode():
            difference = (steps["ours"]() - steps["transformers"]()).abs().max().item()
            for round_index in range(2 * args.repeats + 1):
                for name in rotated(list(steps), round_index):
                    times[name].append(timed(steps[name], args.device, args.timer))
        ms = {name: statistics.median(times[name]) * 1e3 for name in steps}
        ours, theirs = ms["ours"], ms["transformers"]
        ours_added, theirs_added = ms["ours + residual"], ms["transformers + residual"]
        lines.append(
            f"| {length} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}× | {ours_added:.2f} | {theirs_added:.2f} | "
            f"{theirs_added / ours_added:.2f}× | {difference:.1e} |"
        )
    return "\n".join(lines)


def short_input_families(args):
    """Our text families to compare on short inputs: none in a run measuring images only (no --lengths)."""
    return [name for name in ("gfnet", "afno", "fnet_hybrid") if name in args.models and args.lengths]


def short_input_comparison(args):
    """A short input in a model built for long inputs against the same model built for the short length, and the
    largest difference of its outputs from the full-length computation: the same input padded to the long length,
    whose FFTs then run at that length (padding does not change the outputs). Returns the table and that largest
    difference over the families."""
    short, long = args.short_length, args.long_length
    lines = [
        f"| family | {short} tokens in a model for {long} (ms) | in a model for {short} (ms) | ratio | "
        f"max abs difference from the {long}-point computation |",
        "|---|---:|---:|---:|---:|",
    ]
    input_ids = torch.randint(FIRST_INPUT_ID, args.vocab_size, (1, short)).to(args.device)
    inputs = dict(input_ids=input_ids)
    padded = dict(input_ids=torch.nn.functional.pad(input_ids, (0, long - short), value=0),
                  attention_mask=(torch.arange(long, device=args.device) < short)[None].long())
    worst = 0.0
    for name in short_input_families(args):
        models = {n: build_model(name, args, n).eval() for n in (long, short)}
        with torch.inference_mode():
            fast = models[long](**inputs).last_hidden_state
            full = models[long](**padded).last_hidden_state[:, :short]
        difference = (fast.float() - full.float()).abs().max().item()
        worst = max(worst, difference)
        steps = {n: make_step(model, "inference", inputs) for n, model in models.items()}
        times = {n: [] for n in steps}
        for step in steps.values():
            timed(step, args.device)
        for round_index in range(2 * args.repeats + 1):
            for n in rotated(list(steps), round_index):
                times[n].append(timed(steps[n], args.device, args.timer))
        long_ms, short_ms = (statistics.median(times[n]) * 1e3 for n in (long, short))
        lines.append(f"| {name} | {long_ms:.2f} | {short_ms:.2f} | {long_ms / short_ms:.2f}× | {difference:.1e} |")
    return "\n".join(lines), worst


def plot(records, path, title):
    """Log-log time and memory against tokens, one row per mode at its smallest batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    modes = sorted({record["mode"] for record in records})
    figure, axes = plt.subplots(len(modes), 2, figsize=(12, 4.5 * len(modes)), squeeze=False)
    for row, mode in enumerate(modes):
        batch_size = min(record["batch_size"] for record in records if record["mode"] == mode)
        measured_lengths = sorted({record["length"] for record in records if record["mode"] == mode})
        for model in dict.fromkeys(record["model"] for record in records):
            points = [
                record
                for record in records
                if record["mode"] == mode
                and record["batch_size"] == batch_size
                and record["model"] == model
                and record["status"] == "ok"
            ]
            if not points:
                continue
            lengths = [record["length"] for record in points]
            axes[row][0].plot(lengths, [record["ms"] for record in points], marker="o", label=model)
            axes[row][1].plot(lengths, [max(record["peak_mib"], 1e-1) for record in points], marker="o", label=model)
        for column, label in enumerate(("time per batch (ms)", "peak memory of one step (MiB)")):
            axis = axes[row][column]
            title_here = f"{title}, {mode}, batch {batch_size}"
            axis.set(xscale="log", yscale="log", xlabel="tokens", ylabel=label, title=title_here)
            axis.set_xticks(measured_lengths, [str(length) for length in measured_lengths])
            axis.xaxis.set_minor_locator(NullLocator())
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


GLIBC_MAX_MMAP_THRESHOLD = 32 * 2**20  # glibc refuses larger values on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory():
    """Tell glibc's allocator, for the rest of this process, to serve blocks of up to 32 MiB from its heap and
    never to return freed heap memory to the system.

    By default glibc raises its mmap threshold to the size of the largest block freed so far, but releases the top of
    the heap once more than twice that is free there. Whether a step's temporaries end up at the top depends on what
    the process allocated before, so some processes page-fault on them at every step and others never do: on the
    development VM `GlobalFilter` on 1 x 4096 x 256 took 2.1 ms per call in some processes and 5.5 ms in others,
    with 110 against 3,100 minor page faults per call (12 MiB faulted in afresh), and 2.0 to 2.4 ms in every process
    after this call. Every model runs under the same policy, so ratios stay comparable.
    """
    library = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(library), "mallopt", None) if library else None
    if mallopt is None or not (
        mallopt(M_MMAP_THRESHOLD, GLIBC_MAX_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    ):
        sys.exit(f"--malloc keep-freed needs glibc's mallopt; the C library here ({library}) refused it.")


def machine_description(args):
    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, {args.dtype}, torch {torch.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads, {args.dtype}, torch {torch.__version__}, malloc {args.malloc}, load average {load:.1f} at start"
    )


def run_sweep(args, names, started):
    """Every setting of the sweep in this process: one record per (mode, batch size, input, model), with ratios."""
    # (input kind, tokens, image size): an image of s x s pixels is (s // patch) ** 2 tokens
    settings = [("text", length, None) for length in sorted(args.lengths)]
    settings += [("image", (size // args.patch_size) ** 2, size) for size in sorted(args.image_sizes)]
    names_of = {"text": text_model_names(names), "image": image_model_names(names)}
    records = []
    for mode in args.modes:
        for batch_size in args.batch_sizes:
            previous, skipped = {"text": {}, "image": {}}, {"text": {}, "image": {}}
            for kind, length, image_size in settings:
                if not names_of[kind]:
                    continue
                records += benchmark_setting(
                    args, names_of[kind], mode, batch_size, length, previous[kind], skipped[kind], image_size
                )
                done = ", ".join(f"{r['model']} {r['ms']:.0f} ms" for r in records[-len(names_of[kind]) :] if "ms" in r)
                where = f"{length} tokens" if image_size is None else f"{image_size} px"
                elapsed = time.perf_counter() - started
                print(f"[{elapsed:.0f} s] {mode}, batch {batch_size}, {where}: {done}", file=sys.stderr, flush=True)
    add_ratios(records)
    return records


def sweep_in_processes(args):
    """The sweep run by `args.processes` fresh processes of this script, one after the other (each with this
    command line), aggregated by `aggregate_runs`."""
    runs = []
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.processes):
            output_dir = Path(directory) / f"process_{index}"
            command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
            command += ["--processes", "1", "--records-only", "--output-dir", str(output_dir)]
            print(f"Process {index + 1} of {args.processes}:", file=sys.stderr, flush=True)
            if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
                sys.exit(f"Benchmark process {index + 1} of {args.processes} failed; its error is above.")
            runs.append(json.loads(next(output_dir.glob("benchmark_*.json")).read_text()))
    return aggregate_runs(runs)


def aggregate_runs(runs):
    """One record per setting and model from the record lists of several processes (same settings, same order): the
    median time, memory and ratios over the processes where the model ran, with each process's value in `ms_runs`,
    `x_identity_runs` and `x_attention_runs` (`processes`: how many there were). Ratios are taken within each
    process, then the median."""
    records = []
    for versions in zip(*runs, strict=True):
        ok = [version for version in versions if version["status"] == "ok"]
        record = dict(ok[0] if ok else versions[0])
        record["processes"] = len(versions)
        if ok:
            record["ms_runs"] = [version["ms"] for version in ok]
            record["ms"] = statistics.median(record["ms_runs"])
            record["peak_mib"] = statistics.median(version["peak_mib"] for version in ok)
            seconds = record["ms"] / 1e3
            record["tokens_per_s"] = record["batch_size"] * record["length"] / seconds
            if "images_per_s" in record:
                record["images_per_s"] = record["batch_size"] / seconds
            for key in RATIO_KEYS:
                record.pop(key, None)
                values = [version[key] for version in ok if key in version]
                if values:
                    record[f"{key}_runs"], record[key] = values, statistics.median(values)
        records.append(record)
    return records


def main():
    args = parse_args()
    if args.malloc == "keep-freed":
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    names = list(args.models)
    if args.compile:
        names += [f"{name}+inductor" for name in ("identity", "gfnet", "afno", "fnet_hybrid_fourier") if name in names]
    started = time.perf_counter()
    suffix = f"{args.device.split(':')[0]}_{args.dtype}" + ("_quick" if args.quick else "")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.records_only:
        records = run_sweep(args, names, started)
        (args.output_dir / f"benchmark_{suffix}.json").write_text(json.dumps(records, indent=1))
        return
    print(f"Machine: {machine_description(args)}")
    processes = f", median of {args.processes} processes (range in brackets)" if args.processes > 1 else ""
    print(
        f"Size: hidden {args.hidden_size}, {args.num_layers} layers, FFN {args.intermediate_size}, "
        f"{args.num_heads} heads, vocabulary {args.vocab_size}; median of {args.repeats} interleaved rounds, "
        f"{args.timer} time{processes}\n"
    )
    records = sweep_in_processes(args) if args.processes > 1 else run_sweep(args, names, started)
    kinds = [kind for kind in ("text", "image") if any(record["input"] == kind for record in records)]
    for kind in kinds:
        if kind == "image":
            print(f"\nImages ({args.patch_size} x {args.patch_size} patches, 3 channels):\n")
        print(markdown_table(records, kind))
    exponents = memory_exponents(records)
    if exponents:
        print("\nTraining memory ~ tokens^a (fit over >= 1024 tokens):")
        for (kind, model, batch_size), exponent in sorted(exponents.items()):
            print(f"- {kind}, {model}, batch {batch_size}: a = {exponent:.2f}")
    elif "training" in args.modes:
        print("\nTraining memory ~ tokens^a: not fitted (it needs two lengths of at least 1024 tokens, or patches).")
    # written before the extra sections, which can still fail (out of memory at a length the sweep skipped)
    written = []
    for kind in kinds:
        path = args.output_dir / f"benchmark_{suffix}{'' if kind == 'text' else '_images'}.png"
        plot([record for record in records if record["input"] == kind], path, kind)
        written.append(str(path))
    (args.output_dir / f"benchmark_{suffix}.json").write_text(json.dumps(records, indent=1))
    print(f"\nWrote {', '.join(written)} and benchmark_{suffix}.json in {time.perf_counter() - started:.0f} s.")
    if args.lengths and any(name not in IMAGE_ONLY for name in args.models):
        print("\nFourier mixer against transformers' FNet Fourier layer (batch 1, hidden "
              f"{args.hidden_size}, inference, float32):\n")
        print(fourier_layer_comparison(args, sorted(args.lengths)))
    short_input_difference = 0.0
    if short_input_families(args):
        table, short_input_difference = short_input_comparison(args)
        print(f"\nShort inputs (batch 1, inference):\n\n{table}")
    if args.dtype == "float32" and short_input_difference > SHORT_INPUT_TOLERANCE:
        sys.exit(f"A short input's outputs differ from the full-length computation by {short_input_difference:.1e} "
                 f"(more than {SHORT_INPUT_TOLERANCE:.0e}).")


if __name__ == "__main__":
    main()
