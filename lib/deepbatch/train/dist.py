"""The distributed primitives the training loop needs, behind one small interface.

One training function serves every launcher: ``LocalDist`` (one process),
``HorovodDist`` (``horovod.spark.run``/``horovodrun``, Gloo or NCCL) and
``TorchDist`` (``TorchDistributor``/torchrun, DDP over Gloo or NCCL).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn


class LocalDist:
    rank = 0
    size = 1
    local_rank = 0

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        return model, optimizer

    def allreduce_mean(self, value: float) -> float:
        return value

    def sync_buffers(self, model: nn.Module) -> None:
        pass

    def allreduce_min(self, value: int) -> int:
        return value

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def shutdown(self) -> None:
        pass


class HorovodDist:
    """hvd.init, DistributedOptimizer, and parameter/optimizer broadcast from rank 0."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        hvd = self.hvd
        # Optimiser state first: on a rank whose optimiser has no state yet, horovod initialises it
        # with a zero-gradient step(), which moves the weights under Adam/weight decay. Broadcasting
        # the parameters afterwards leaves every rank with rank 0's weights whatever that step did.
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return model, hvd.DistributedOptimizer(optimizer, named_parameters=trainable)

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's BatchNorm statistics (gradients are averaged, buffers are not)."""
        buffers = {n: b for n, b in model.named_buffers() if b.is_floating_point()}
        if buffers:
            self.hvd.broadcast_parameters(buffers, root_rank=0)

    def allreduce_mean(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor(float(value)), op=self.hvd.Average).item())

    def allreduce_min(self, value: int) -> int:
        return int(self.hvd.allreduce(torch.tensor(int(value)), op=self.hvd.Min).item())

    def broadcast_object(self, obj: Any) -> Any:
        return self.hvd.broadcast_object(obj, root_rank=0)

    def shutdown(self) -> None:
        self.hvd.shutdown()


class TorchDist:
    """torch.distributed + DistributedDataParallel, initialised from torchrun's environment."""

    def __init__(self) -> None:
        import torch.distributed as td

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not td.is_initialized():
            td.init_process_group(backend)
        self.td = td
        self.rank, self.size = td.get_rank(), td.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        from torch.nn.parallel import DistributedDataParallel as DDP

        state = self.broadcast_object(optimizer.state_dict() if self.rank == 0 else None)
        optimizer.load_state_dict(state)
        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DDP(model, device_ids=device_ids), optimizer  # DDP broadcasts rank 0's parameters

    def sync_buffers(self, model: nn.Module) -> None:
        """DDP broadcasts buffers before each forward; after the last one they differ, so sync once more."""
        for b in model.buffers():
            if b.is_floating_point():
                self.td.broadcast(b, src=0)

    def allreduce_mean(self, value: float) -> float:
        t = torch.tensor(float(value))
        self.td.all_reduce(t)
        return float(t.item()) / self.size

    def allreduce_min(self, value: int) -> int:
        t = torch.tensor(int(value))
        self.td.all_reduce(t, op=self.td.ReduceOp.MIN)
        return int(t.item())

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        self.td.broadcast_object_list(box, src=0)
        return box[0]

    def shutdown(self) -> None:
        self.td.destroy_process_group()


def make_dist(backend: str) -> LocalDist | HorovodDist | TorchDist:
    if backend == "horovod":
        return HorovodDist()
    if backend == "torch":
        return TorchDist()
    if backend == "local":
        return LocalDist()
    raise ValueError(f"unknown distributed backend {backend!r}: expected horovod, torch or local")


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model
