"""FSDP2 on CPU: a model sharded block by block over 2 processes (gloo) trains as one process accumulating the
gradients of both halves of the batch, and its gathered state dict loads into an unsharded model (the tied decoder
included). Trainer and accelerate do not run FSDP on CPU; torch's `fully_shard` does."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fsdp_training import FAMILIES, STEPS, build, half_loss, training_batch

pytestmark = pytest.mark.slow


def test_fsdp2_training_equals_one_process_accumulating_both_halves(tmp_path):
    script = Path(__file__).with_name("fsdp_training.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ,
                            "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    batch = training_batch()
    for family in FAMILIES:
        model = build(family)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(STEPS):
            for half in range(2):
                half_loss(model, batch, half, 2).backward()
            optimizer.step()
            optimizer.zero_grad()
        sharded = torch.load(tmp_path / f"{family}.pt")
        assert sharded.keys() == model.state_dict().keys()
        for name, value in model.state_dict().items():
            torch.testing.assert_close(sharded[name], value, atol=1e-6, rtol=0, msg=name)
        reloaded = build(family)
        reloaded.load_state_dict(sharded)
        assert reloaded.lm_head.decoder.weight is reloaded.get_input_embeddings().weight
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        with torch.no_grad():
            torch.testing.assert_close(reloaded.eval()(**inputs).logits, model.eval()(**inputs).logits)
