"""Several processes (``torchrun --nproc_per_node=N -m voxuda_cli train ...``): DDP helpers.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op and the
run is a plain single process. CPU processes talk over gloo, CUDA processes over nccl (one GPU
per process: cuda:LOCAL_RANK). Rank 0 writes every file and shows progress.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from voxuda_cli.errors import VoxudaInputError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the launch (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
        )

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """One GPU per process: a CUDA run uses cuda:LOCAL_RANK."""
        if self.is_distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (nccl for CUDA, gloo for CPU)."""
        if not self.is_distributed or torch.distributed.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)

    def stop(self) -> None:
        if self.is_distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.is_distributed:
            torch.distributed.barrier()

    def agree(self, error: BaseException | None) -> None:
        """Raise on every process if any process failed, so none waits forever in a collective.

        The first failing rank's input error is re-raised everywhere (the same one-line message).
        """
        if not self.is_distributed:
            if error is not None:
                raise error
            return
        messages: list[Any] = [None] * self.world_size
        mine = None if error is None else (isinstance(error, VoxudaInputError), str(error))
        torch.distributed.all_gather_object(messages, mine)
        if error is not None:
            raise error
        for entry in messages:
            if entry is not None:
                is_input_error, text = entry
                raise VoxudaInputError(text) if is_input_error else RuntimeError(f"another process failed: {text}")

    def sum(self, values: Mapping[str, float], device: torch.device) -> dict[str, float]:
        """Add up per-process figures (epoch loss sums, counts) across processes."""
        if not self.is_distributed:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if it is True on any (so that all stop at the same step)."""
        if not self.is_distributed:
            return flag
        return self.sum({"flag": float(flag)}, device)["flag"] > 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around ``model`` (SyncBatchNorm first on CUDA); the model itself otherwise.

        SyncBatchNorm makes the batch statistics those of the global batch, as in one process; torch
        has it for CUDA only, so CPU processes normalise over their own share of the batch.
        """
        if not self.is_distributed:
            return model
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
        return nn.parallel.DistributedDataParallel(model)
