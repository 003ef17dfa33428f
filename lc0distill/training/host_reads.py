"""Counting the calls that make the host wait for the device: what a training step must not do every step.

On a GPU each of these reads a value the device computes, so the host stops until the device's queue has run
up to it (`.item()`, `bool(t)`, `.tolist()`, `.cpu()`, `.numpy()`, a boolean-mask index, `nonzero`, ...). On
the CPU they cost nothing, which is why they creep in unseen; this counter finds them on any device by watching
the torch calls themselves (a TorchFunctionMode), so a CPU test can hold the step to its budget. Tensors that
live on the host by design (the batch's HOST_FIELDS) and what `.cpu()` returned are left out, by identity.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

_READS = {
    torch.Tensor.item: "item", torch.Tensor.__bool__: "bool", torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int", torch.Tensor.__index__: "index", torch.Tensor.tolist: "tolist",
    torch.Tensor.numpy: "numpy", torch.Tensor.cpu: "cpu", torch.nonzero: "nonzero", torch.Tensor.nonzero: "nonzero",
    torch.masked_select: "masked_select", torch.Tensor.masked_select: "masked_select", torch.unique: "unique",
    torch.Tensor.unique: "unique", torch.argwhere: "argwhere",
}


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class HostReads(TorchFunctionMode):
    """with HostReads() as reads: ...; reads.total, reads.counts ({"item": 2, ...}). `exempt`: tensors on the
    host by design, whose reads cost nothing on any device."""

    def __init__(self, exempt: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._host = [t for t in exempt if t is not None]  # held, so that their ids stay theirs
        self._exempt = {id(t) for t in self._host}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        subject = args[0] if args else None
        if not (isinstance(subject, torch.Tensor) and id(subject) in self._exempt):
            name = _READS.get(func)
            if name:
                self.counts[name] += 1
                if name == "cpu":  # what it returns is on the host: reading it waits for nothing
                    result = func(*args, **kwargs)
                    self._host.append(result)
                    self._exempt.add(id(result))
                    return result
            elif func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and _bool_index(args):
                self.counts["boolean index"] += 1
        return func(*args, **kwargs)
