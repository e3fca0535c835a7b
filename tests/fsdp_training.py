"""Run by `test_distributed.py` under `torchrun --nproc_per_node 2` on CPU (gloo): FSDP2 shards a masked-LM model
(tied decoder) block by block (`fully_shard` on each `SpectralBlock`, then the root), as the README's FSDP command
wraps `SpectralBlock`, and trains it for `STEPS` SGD steps, each process on its half of `training_batch`. Rank 0
saves the gathered full state dict to `<output_dir>/<family>.pt` for the test to compare. (SGD: AdamW would blow
the rounding noise of gradients that are zero in exact arithmetic, such as an attention key bias's, up to steps of
the learning rate.)"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from conftest import model_class, tiny_config
from fourierformers import SpectralBlock

STEPS = 3
FAMILIES = ["gfnet", "fnet_hybrid"]  # global filters (their inference cache) and attention layers


def training_batch():
    """Eight right-padded sequences of 12 tokens, about 40% of the real ones masked for the loss."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, 99, (8, 12), generator=generator)
    attention_mask = (torch.arange(12) < 12 - torch.arange(8)[:, None] % 4).long()
    labels = input_ids.masked_fill((torch.rand(8, 12, generator=generator) > 0.4) | (attention_mask == 0), -100)
    return dict(input_ids=input_ids * attention_mask, attention_mask=attention_mask, labels=labels)


def build(family):
    torch.manual_seed(0)
    return model_class(family, "ForMaskedLM")(tiny_config(family))


def half_loss(model, batch, half, num_halves):
    """The loss of one half of the batch, over the masked tokens of the whole batch (Trainer's `num_items_in_batch`)."""
    rows = {key: value.chunk(num_halves)[half] for key, value in batch.items()}
    return model(**rows, num_items_in_batch=int((batch["labels"] != -100).sum())).loss


def main(output_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world_size,))
    batch = training_batch()
    for family in FAMILIES:
        model = build(family)
        for module in model.modules():
            if isinstance(module, SpectralBlock):
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(STEPS):
            # FSDP averages the gradients of the processes: each contributes its half's times the number of halves
            (half_loss(model, batch, rank, world_size) * world_size).backward()
            optimizer.step()
            optimizer.zero_grad()
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(state, Path(output_dir) / f"{family}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
