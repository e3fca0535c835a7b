"""`scripts/benchmark.py` end to end at a tiny size: every model runs in both modes, the records, tables and plot are
written, and the ratios are consistent with the times. A smoke test of the script, not a timing test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
MODELS = ["identity", "gfnet", "afno", "fnet_hybrid_fourier", "fnet_hybrid", "bert_sdpa", "hf_fnet"]


@pytest.mark.slow
def test_benchmark_runs_every_model_and_writes_its_records(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--hidden-size", "32", "--num-layers", "2", "--intermediate-size", "64",
        "--num-heads", "2", "--vocab-size", "100", "--lengths", "32", "64", "--batch-sizes", "1", "2",
        "--modes", "inference", "training", "--repeats", "1", "--short-length", "8", "--long-length", "64",
        "--threads", "1", "--output-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # the profiler's own start/stop log lines are kept off stderr
    assert "USDT" not in result.stderr and "profiler_start" not in result.stderr

    records = json.loads((tmp_path / "benchmark_cpu_float32.json").read_text())
    assert (tmp_path / "benchmark_cpu_float32.png").stat().st_size > 0
    settings = {(mode, batch, length) for mode in ("inference", "training") for batch in (1, 2) for length in (32, 64)}
    for setting in settings:
        by_model = {r["model"]: r for r in records if (r["mode"], r["batch_size"], r["length"]) == setting}
        assert sorted(by_model) == sorted(MODELS)
        assert all(r["status"] == "ok" and r["ms"] > 0 and r["peak_mib"] >= 0 for r in by_model.values())
        identity, bert = by_model["identity"]["ms"], by_model["bert_sdpa"]["ms"]
        for record in by_model.values():
            assert record["x_identity"] == pytest.approx(record["ms"] / identity)
            assert record["x_bert_sdpa"] == pytest.approx(record["ms"] / bert)
            assert record["tokens_per_s"] == pytest.approx(setting[1] * setting[2] / record["ms"] * 1000)

    assert "| mode | batch | tokens | model |" in result.stdout
    assert "Fourier mixer against transformers' FNet Fourier layer" in result.stdout
    assert "Short inputs" in result.stdout
