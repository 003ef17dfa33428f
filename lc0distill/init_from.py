"""Start a run from an existing net's weights (`net.init_from`): an lc0 `.pb.gz`, an lc0distill `.pt` net or a
training checkpoint. The optimizer, schedules and step count start fresh; only weights (and batch-norm
statistics) are taken.

Same architecture: every tensor is copied, so the student is the net. Another architecture is an error that
names each difference, unless `net.init_from_partial`: then every tensor whose name and shape match is
copied and the others keep their fresh initialisation (growing a net, changing a head). The input format must
match either way: the input planes would mean something else. A recipe whose net section gives only
init_from trains init_from's own architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.nets import NetFileKind, load_net, net_file_kind


@dataclass
class InitReport:
    source: str
    exact: bool  # every tensor copied: the student is the source net
    copied: list[str] = field(default_factory=list)  # state_dict names
    fresh: list[str] = field(default_factory=list)  # names kept at their fresh initialisation, with why

    def summary(self) -> str:
        if self.exact:
            return f"net.init_from {self.source}: every tensor copied ({len(self.copied)}): the same net"
        return (f"net.init_from {self.source} (partial): {len(self.copied)} tensors copied, {len(self.fresh)} "
                f"initialised fresh: {', '.join(_grouped(self.fresh))}")


def _grouped(fresh: list[str]) -> list[str]:
    """Tensors missing from init_from named by their module (residual.6.conv1, not its five tensors); shape
    mismatches stay per tensor, with both shapes."""
    lines: list[str] = []
    for entry in fresh:
        name, reason = entry.split(" (", 1)
        line = f"{name.rsplit('.', 1)[0]} (not in init_from)" if reason == "not in init_from)" else entry
        if line not in lines:
            lines.append(line)
    return lines


def config_differences(source: NetConfig, student: NetConfig) -> list[str]:
    """'filters 64 (init_from) vs 128 (net)'-style lines for every field that differs."""
    ours, theirs = student.model_dump(), source.model_dump()
    return [f"{key} {theirs[key]!r} (init_from) vs {ours[key]!r} (net)" for key in ours if ours[key] != theirs[key]]


def with_init_architecture(config):
    """A RunConfig whose recipe gives net.init_from and no other net key: its net becomes init_from's own."""
    if "net" in config.model_fields_set or not config.net_init.init_from:
        return config
    return config.model_copy(update={"net": _source_net(config.net_init.init_from).config})


def _source_net(path: str) -> SEResNet:
    if net_file_kind(path) == NetFileKind.ONNX:
        raise Lc0DistillError(f"net.init_from {path}: an ONNX model has no trainable weights here: give the "
                              ".pb.gz or .pt it came from")
    return load_net(path)


def initialise_from(student: SEResNet, path: str, partial: bool) -> InitReport:
    """Copy `path`'s weights into `student` (in place) as the module docstring says."""
    source = _source_net(path)
    differences = config_differences(source.config, student.config)
    if source.config.input_format != student.config.input_format:
        raise Lc0DistillError(f"net.init_from {path}: input format {source.config.input_format}, the student's "
                              f"net.input_format is {student.config.input_format}: set net.input_format: "
                              f"{source.config.input_format}")
    theirs = source.state_dict()
    if not differences:
        student.load_state_dict(theirs)
        return InitReport(path, exact=True, copied=list(theirs))
    if not partial:
        raise Lc0DistillError(f"net.init_from {path}: the net differs from the student: {'; '.join(differences)}. "
                              "Make net match it, or set net.init_from_partial: true to copy the layers whose "
                              "shapes match and initialise the others fresh")
    return _copy_matching(student, theirs, path)


def _copy_matching(student: SEResNet, theirs: dict[str, torch.Tensor], path: str) -> InitReport:
    report = InitReport(path, exact=False)
    ours = student.state_dict()
    with torch.no_grad():
        for name, tensor in ours.items():
            other = theirs.get(name)
            if other is None:
                report.fresh.append(f"{name} (not in init_from)")
            elif other.shape != tensor.shape:
                shape = lambda t: "x".join(map(str, t.shape)) or "scalar"  # noqa: E731
                report.fresh.append(f"{name} ({shape(other)} in init_from, {shape(tensor)} here)")
            else:
                tensor.copy_(other)
                report.copied.append(name)
    if not report.copied:
        raise Lc0DistillError(f"net.init_from {path}: no tensor of it fits the student (names or shapes all "
                              "differ): nothing to start from")
    return report
