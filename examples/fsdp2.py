"""PSDASGD under FSDP2 (``fully_shard``) on CPU processes:

    torchrun --nproc_per_node 2 examples/fsdp2.py

Each rank trains on its half of every batch of scikit-learn's digits; the parameters are
DTensors sharded over the ranks, which PSDASGD detects: it steps the local shards and
reduces its statistics over the mesh, so every rank takes the step of the whole batch.
"""

import os
import sys

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch.distributed.fsdp import fully_shard

from paramscale import torch_impl

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
for layer in (model[0], model[2], model):
    fully_shard(layer)
opt = torch_impl.PSDASGD(model.parameters())
generator = torch.Generator().manual_seed(0)  # the same batches on every rank
for _ in range(300):
    idx = torch.randint(0, len(y), (64,), generator=generator)[rank::world]
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).float().mean().item()
stats = opt.stats()  # a collective: every rank calls it
if rank == 0:
    step = opt.param_groups[0]["effective_lr"]
    print(f"accuracy {accuracy:.3f}, d {stats['d']:.3g}, step {step:.2g}")
dist.barrier()  # every rank done
# torch 2.13's gloo teardown aborts now and then ("terminate called without an active
# exception") after a run like this one: leave without it, the work is done
sys.stdout.flush()
os._exit(0)
