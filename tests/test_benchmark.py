"""`scripts/benchmark.py` end to end at a tiny size: every text and image model runs in both modes, the records,
tables and plots are written, and the ratios are consistent with the times. A smoke test of the script, not a timing
test."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
sys.path.insert(0, str(SCRIPT.parent))

import benchmark  # noqa: E402  (scripts/ is not a package)

TINY = [
    "--hidden-size", "32", "--num-layers", "2", "--intermediate-size", "64", "--num-heads", "2", "--vocab-size", "100",
    "--short-length", "8", "--long-length", "64", "--threads", "1",
]
OURS = ["identity", "gfnet", "afno", "fnet_hybrid_fourier", "fnet_hybrid"]
MODELS = {"text": OURS + ["bert_sdpa", "hf_fnet"], "image": OURS + ["vit_sdpa"]}
ATTENTION = {"text": "bert_sdpa", "image": "vit_sdpa"}


@pytest.mark.slow
def test_benchmark_runs_every_model_and_writes_its_records(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--hidden-size", "32", "--num-layers", "2", "--intermediate-size", "64",
        "--num-heads", "2", "--vocab-size", "100", "--lengths", "32", "64", "--image-sizes", "32", "64",
        "--patch-size", "8", "--batch-sizes", "1", "2",
        "--modes", "inference", "training", "--repeats", "1", "--short-length", "8", "--long-length", "64",
        "--threads", "1", "--output-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # the profiler's own start/stop log lines and allocator warnings are kept off stderr
    assert "USDT" not in result.stderr and "profiler_start" not in result.stderr
    assert "before the profiling started" not in result.stderr

    records = json.loads((tmp_path / "benchmark_cpu_float32.json").read_text())
    for plot in ("benchmark_cpu_float32.png", "benchmark_cpu_float32_images.png"):
        assert (tmp_path / plot).stat().st_size > 0
    # (input, tokens): images of 32 and 64 pixels are 4 x 4 and 8 x 8 patches of 8 pixels
    inputs = [("text", 32), ("text", 64), ("image", 16), ("image", 64)]
    assert len(records) == 2 * 2 * sum(len(MODELS[kind]) for kind, _ in inputs)
    for mode in ("inference", "training"):
        for batch in (1, 2):
            for kind, length in inputs:
                setting = (kind, mode, batch, length)
                by_model = {
                    r["model"]: r for r in records if (r["input"], r["mode"], r["batch_size"], r["length"]) == setting
                }
                assert sorted(by_model) == sorted(MODELS[kind])
                assert all(r["status"] == "ok" and r["ms"] > 0 and r["peak_mib"] >= 0 for r in by_model.values())
                identity, attention = by_model["identity"]["ms"], by_model[ATTENTION[kind]]["ms"]
                for record in by_model.values():
                    assert record["x_identity"] == pytest.approx(record["ms"] / identity)
                    assert record["x_attention"] == pytest.approx(record["ms"] / attention)
                    assert record["tokens_per_s"] == pytest.approx(batch * length / record["ms"] * 1000)
                    if kind == "image":
                        assert record["image_size"] == {16: 32, 64: 64}[length]
                        assert record["images_per_s"] == pytest.approx(batch / record["ms"] * 1000)

    assert "| mode | batch | tokens | model |" in result.stdout
    assert "| mode | batch | image (tokens) | model |" in result.stdout
    assert "| training | 2 | 64 px (64) | vit_sdpa |" in result.stdout
    assert "Fourier mixer against transformers' FNet Fourier layer" in result.stdout
    assert "| tokens | ours ms | transformers ms | speed-up | with the residual add: ours ms |" in result.stdout
    assert "Short inputs" in result.stdout


@pytest.mark.slow
def test_processes_report_the_median_of_fresh_processes(tmp_path):
    command = [
        sys.executable, str(SCRIPT), *TINY, "--lengths", "32", "--image-sizes", "--batch-sizes", "1", "--modes",
        "inference", "--models", "identity", "gfnet", "bert_sdpa", "--repeats", "1", "--processes", "2",
        "--malloc", "keep-freed", "--output-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "malloc keep-freed" in result.stdout
    assert "median of 2 processes" in result.stdout
    assert "Process 2 of 2:" in result.stderr
    records = json.loads((tmp_path / "benchmark_cpu_float32.json").read_text())
    assert [record["model"] for record in records] == ["identity", "gfnet", "bert_sdpa"]
    for record in records:
        assert record["processes"] == 2 and len(record["ms_runs"]) == 2
        assert record["ms"] == pytest.approx(sum(record["ms_runs"]) / 2)
        for key in ("x_identity", "x_attention"):
            assert len(record[f"{key}_runs"]) == 2
            assert record[key] == pytest.approx(sum(record[f"{key}_runs"]) / 2)
        row = f"| inference | 1 | 32 | {record['model']} | {record['ms']:.1f} |"
        assert row in result.stdout
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["benchmark_cpu_float32.json", "benchmark_cpu_float32.png"]  # the processes' own files are gone


REFAULTS = """
import ctypes, ctypes.util, resource, sys
sys.path.insert(0, {scripts!r})
import benchmark
if {keep}:
    benchmark.keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.memset.restype, libc.memset.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 24 * 2**20  # under the 32 MiB threshold
libc.free(libc.memset(libc.malloc(size), 1, size))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc.memset(libc.malloc(size), 1, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_a_freed_block_without_page_faults():
    # 24 MiB is 6144 pages of 4 KiB: glibc's default unmaps the first block on free (its mmap threshold starts at 128
    # KiB) and the second one is faulted in afresh; after keep_freed_memory it is the first one's memory again
    faults = {}
    for keep in (False, True):
        code = REFAULTS.format(scripts=str(SCRIPT.parent), keep=keep)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        faults[keep] = int(result.stdout.split()[-1])
    assert faults[False] > 3000 and faults[True] < 300, faults


def _record(model, status="ok", ms=None, **ratios):
    record = dict(input="text", mode="inference", batch_size=2, length=100, model=model, status=status)
    if status == "ok":
        record.update(ms=ms, peak_mib=1.0, tokens_per_s=2 * 100 / ms * 1e3, **ratios)
    return record


def test_aggregate_runs_takes_medians_over_the_processes_where_a_model_ran():
    runs = [
        [_record("identity", ms=10.0, x_identity=1.0), _record("gfnet", ms=12.0, x_identity=1.2)],
        [_record("identity", ms=20.0, x_identity=1.0), _record("gfnet", status="skipped: out of memory")],
        [_record("identity", ms=11.0, x_identity=1.0), _record("gfnet", ms=14.0, x_identity=1.4)],
    ]
    identity, gfnet = benchmark.aggregate_runs(runs)
    assert identity["ms"] == 11.0 and identity["ms_runs"] == [10.0, 20.0, 11.0] and identity["processes"] == 3
    assert identity["tokens_per_s"] == pytest.approx(2 * 100 / 11.0 * 1e3)
    assert gfnet["status"] == "ok" and gfnet["ms"] == 13.0 and gfnet["processes"] == 3 and len(gfnet["ms_runs"]) == 2
    assert gfnet["x_identity"] == pytest.approx(1.3) and "x_attention" not in gfnet
    assert benchmark.ratio_cell(identity, "x_identity") == "1.00"
    assert benchmark.ratio_cell(gfnet, "x_identity") == "1.30 (1.20–1.40, 2 of 3 processes)"
    assert benchmark.ratio_cell(gfnet, "x_attention") == ""
    skipped_everywhere = benchmark.aggregate_runs([[_record("bert_sdpa", status="skipped: out of memory")]] * 2)[0]
    assert skipped_everywhere["status"] == "skipped: out of memory" and "ms" not in skipped_everywhere


def test_heads_need_not_divide_the_width_of_models_without_attention(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--models", "gfnet", "identity", "--hidden-size", "30"])
    assert benchmark.parse_args().hidden_size == 30


def test_quick_fills_in_only_what_is_not_given(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--quick", "--lengths", "128", "--image-sizes"])
    args = benchmark.parse_args()
    assert args.lengths == [128] and args.image_sizes == [] and args.batch_sizes == [1] and args.repeats == 3
    monkeypatch.setattr(sys, "argv", ["benchmark.py"])
    assert benchmark.parse_args().batch_sizes == [1, 8]


def test_a_run_of_images_only_compares_no_short_text_inputs(monkeypatch):
    """Without --lengths no text is measured, the short-input figure included (it built models for 4096 tokens)."""
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--models", "gfnet", "--lengths", "--image-sizes", "32"])
    assert benchmark.short_input_families(benchmark.parse_args()) == []
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--models", "gfnet", "afno", "--lengths", "64"])
    assert benchmark.short_input_families(benchmark.parse_args()) == ["gfnet", "afno"]


def tiny_args(monkeypatch, *arguments):
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *TINY, "--repeats", "1", *arguments])
    return benchmark.parse_args()


def test_only_attention_models_are_predicted_to_grow_quadratically(monkeypatch):
    """The pure Fourier layout was taken for an attention model (its name starts with fnet_hybrid's) and skipped
    where its linear growth fitted the time limit."""
    args = tiny_args(monkeypatch, "--max-seconds", "3", "--modes", "inference")
    previous = {"fnet_hybrid_fourier": (32, 1.0), "fnet_hybrid": (32, 1.0)}  # x 2^1.2 = 2.3 s, x 2^2 = 4 s
    records = benchmark.benchmark_setting(args, list(previous), "inference", 1, 64, previous, {})
    assert [record["status"] for record in records] == ["ok", "skipped: predicted 4 s > 3 s"]
    # below a second the label kept no digit: "predicted 0 s > 0 s"
    args.max_seconds = 0.003
    previous = {name: (32, 0.001) for name in previous}
    records = benchmark.benchmark_setting(args, list(previous), "inference", 1, 64, previous, {})
    assert [record["status"] for record in records] == ["ok", "skipped: predicted 0.004 s > 0.003 s"]


def test_records_are_written_before_the_extra_sections_and_images_get_no_text_ones(monkeypatch, tmp_path, capsys):
    """An error in the Fourier-layer comparison (out of memory at a length the sweep skipped) lost every record, and a
    run of image models compared Fourier layers at the default text lengths."""
    def fails(args, lengths):
        raise MemoryError("out of memory")

    monkeypatch.setattr(benchmark, "fourier_layer_comparison", fails)
    # main() sets the thread count: the tests after this one would compute with --threads 1
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *TINY, "--repeats", "1", "--modes", "inference",
                                      "--models", "identity", "--lengths", "16", "--image-sizes",
                                      "--output-dir", str(tmp_path)])
    with pytest.raises(MemoryError):
        benchmark.main()
    assert json.loads((tmp_path / "benchmark_cpu_float32.json").read_text())[0]["model"] == "identity"
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *TINY, "--repeats", "1", "--modes", "inference",
                                      "--models", "vit_sdpa", "--lengths", "16", "--image-sizes", "16",
                                      "--patch-size", "8", "--output-dir", str(tmp_path)])
    benchmark.main()
    assert "Fourier mixer against" not in capsys.readouterr().out


def test_a_failed_cpu_allocation_counts_as_out_of_memory():
    with pytest.raises(RuntimeError) as error:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: refused at once
    assert benchmark.is_out_of_memory(error.value)


def test_a_compiled_variant_that_compiles_nothing_is_not_reported_as_compiled(monkeypatch):
    """Past torch.compile's recompile limit the "+inductor" models ran eagerly under that label."""
    args = tiny_args(monkeypatch, "--modes", "inference")
    monkeypatch.setattr(torch, "compile", lambda model: model)  # compiles nothing, as past the limit
    records = benchmark.benchmark_setting(args, ["gfnet", "gfnet+inductor"], "inference", 1, 32, {}, {})
    assert [record["status"] for record in records] == [
        "ok", "failed: torch.compile fell back to eager (no graph compiled)"
    ]


def test_short_inputs_equal_the_full_length_computation(monkeypatch):
    args = tiny_args(monkeypatch, "--lengths", "64")
    table, difference = benchmark.short_input_comparison(args)
    assert difference <= benchmark.SHORT_INPUT_TOLERANCE
    assert "max abs difference from the 64-point computation" in table
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["gfnet", "afno", "fnet_hybrid"]


@pytest.mark.parametrize("arguments,message", [
    (["--repeats", "0"], r"--repeats takes positive integers, got 0"),
    (["--lengths", "64", "-5"], r"--lengths takes positive integers, got \[64, -5\]"),
    (["--patch-size", "0"], r"--patch-size takes positive integers"),
    (["--max-seconds", "0"], r"--max-seconds must be positive"),
    (["--models", "vit_sdpa", "--lengths", "64", "--image-sizes"], r"Nothing to measure: --models vit_sdpa with"),
    (["--image-sizes", "224", "100"], r"--image-sizes \[100\] are not multiples of --patch-size 16"),
    (["--image-sizes", "8"], r"--image-sizes \[8\] are not multiples of --patch-size 16"),
    (["--short-length", "128", "--long-length", "64"], r"--short-length 128 must not exceed --long-length 64"),
    (["--device", "no_such_device"], r"--device no_such_device is not usable here"),
    (["--models", "hf_fnet", "--dtype", "bfloat16"], r"hf_fnet with --dtype bfloat16: transformers' FNet has no"),
    (["--vocab-size", "5"], r"--vocab-size must exceed 5 \(input ids are drawn above the special tokens\), got 5"),
    (["--hidden-size", "30", "--num-heads", "4", "--models", "gfnet", "bert_sdpa"],
     r"--num-heads 4 must divide --hidden-size 30 for the attention models \(bert_sdpa\)"),
    (["--device", "meta"], r"--device meta holds no data to time"),
    # the text model left is hf_fnet, dropped for bfloat16: the run measured nothing and wrote empty results
    (["--models", "hf_fnet", "vit_sdpa", "--lengths", "32", "--image-sizes", "--dtype", "bfloat16"],
     r"Nothing to measure: --models vit_sdpa with --lengths \[32\]"),
])
def test_bad_arguments_stop_before_any_model_is_built(monkeypatch, capsys, arguments, message):
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *arguments])
    with pytest.raises(SystemExit):
        benchmark.parse_args()
    assert re.search(message, capsys.readouterr().err)


def test_each_round_starts_at_the_next_model():
    """No model always runs first in its round (after another model's step, with other caches) or last."""
    names = ["a", "b", "c"]
    assert [benchmark.rotated(names, index) for index in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]
    assert benchmark.rotated([], 2) == []


def test_memory_exponent_is_the_fitted_slope_over_lengths_of_at_least_1024():
    def record(model, length, peak_mib, mode="training", status="ok"):
        return dict(input="text", mode=mode, status=status, batch_size=1, model=model, length=length, peak_mib=peak_mib)

    records = [record("gfnet", 512, 1e4)]  # below 1024 tokens: left out of the fit
    records += [record("gfnet", n, 0.01 * n**1.5) for n in (1024, 2048, 4096)]
    records += [record("bert_sdpa", n, 3e-6 * n**2) for n in (1024, 2048)]
    records += [record("afno", 1024, 1.0), record("afno", 2048, 2.0, mode="inference"),
                record("afno", 4096, 4.0, status="skipped: out of memory")]  # one training point: no fit
    exponents = benchmark.memory_exponents(records)
    assert exponents.keys() == {("text", "gfnet", 1), ("text", "bert_sdpa", 1)}
    assert exponents[("text", "gfnet", 1)] == pytest.approx(1.5)
    assert exponents[("text", "bert_sdpa", 1)] == pytest.approx(2.0)


def test_the_table_keeps_two_digits_of_a_small_peak():
    """A tiny run's peak of a few KiB is not shown as 0 MiB."""
    small, large = _record("identity", ms=1.0), _record("gfnet", ms=2.0)
    small["peak_mib"], large["peak_mib"] = 0.0042, 123.4
    rows = benchmark.markdown_table([small, large], "text").splitlines()[2:]
    assert "| 0.0042 |" in rows[0] and "| 123 |" in rows[1]


def test_a_short_input_that_differs_from_the_full_length_computation_fails_the_run(monkeypatch, tmp_path):
    monkeypatch.setattr(benchmark, "short_input_comparison", lambda args: ("| table |", 1e-3))
    monkeypatch.setattr(benchmark, "fourier_layer_comparison", lambda args, lengths: "")
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *TINY, "--repeats", "1", "--modes", "inference", "--models",
                                      "gfnet", "--lengths", "16", "--image-sizes", "--output-dir", str(tmp_path)])
    message = r"A short input's outputs differ from the full-length computation by 1\.0e-03"
    with pytest.raises(SystemExit, match=message):
        benchmark.main()


def test_models_without_attention_are_predicted_to_grow_as_length_to_the_1_2(monkeypatch):
    """Spectral models are predicted to take (length ratio)^1.2 times longer (n log n and memory traffic), not
    linearly: 2 s at 32 tokens is 4.6 s at 64, over a 4 s limit."""
    args = tiny_args(monkeypatch, "--max-seconds", "4", "--modes", "inference")
    records = benchmark.benchmark_setting(args, ["gfnet"], "inference", 1, 64, {"gfnet": (32, 2.0)}, {})
    assert [record["status"] for record in records] == ["skipped: predicted 4.59 s > 4 s"]
