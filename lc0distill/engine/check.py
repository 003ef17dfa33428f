"""Does lc0 read our file as we do? The same positions through lc0 (its encoder and backend) and PyTorch.

Compared per position: lc0's 112 input planes with our encoder's, lc0's legal moves with python-chess's, the
policy over the legal moves (probabilities, and the logits), WDL, Q and moves-left. PyTorch is the net as
lc0distill reads the file (`load_inference_net`), so both sides hold the same float32 weights and only the
arithmetic differs (1e-4 is plenty); comparing lc0 with the net a file was written from instead adds the
file's quantisation (LINEAR16), which `compare` also measures when given that net.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import chess
import numpy as np
import torch

from lc0distill.chess.encoding import EncodedPosition
from lc0distill.chess.policy_index import legal_move_indices
from lc0distill.engine.evaluation import (
    DEFAULT_BACKEND,
    Lc0NetInfo,
    Lc0Output,
    lc0_outputs,
    lc0_policy_indices,
    softmax_policy,
)
from lc0distill.engine.positions import DEFAULT_POSITIONS, engine_check_boards
from lc0distill.errors import Lc0DistillError
from lc0distill.models.build import TORCH_NETS
from lc0distill.models.inference import board_planes
from lc0distill.models.net import SEResNet
from lc0distill.nets import NetFileKind, load_inference_net, net_file_kind

DEFAULT_TOLERANCE = 1e-4


@dataclass
class _Worst:
    value: float = 0.0
    fen: str | None = None

    def update(self, value: float, board: chess.Board) -> None:
        if not value <= self.value:  # NaN counts as worst
            self.value, self.fen = value, board.fen()


def _largest(values) -> float:
    """max(), but NaN when any value is NaN (Python's max keeps NaN only when it comes first)."""
    found = list(values)
    return math.nan if any(math.isnan(v) for v in found) else max(found)


@dataclass(frozen=True)
class EngineCheck:
    """Largest |lc0 - PyTorch| differences over the positions, and where each is largest."""

    net: str
    input_format: int
    positions: int  # compared
    left_out: int  # positions lc0 cannot encode (see evaluation.LC0_CANNOT_ENCODE)
    policy: float  # probabilities over the legal moves
    policy_logits: float  # logits of the legal moves
    wdl: float | None
    q: float
    mlh: float | None  # plies
    mlh_relative: float | None  # plies / max(1, |plies|)
    planes_differ: int  # positions whose 112 input planes differ
    legal_moves_differ: int  # positions where lc0's legal moves are not python-chess's
    tolerance: float
    worst: dict[str, str | None] = field(default_factory=dict)  # FEN of the position of each largest difference
    engine: dict = field(default_factory=dict)

    @property
    def worst_difference(self) -> float:
        return _largest(v for v in (self.policy, self.wdl, self.q, self.mlh_relative) if v is not None)

    @property
    def ok(self) -> bool:
        """Every difference within the tolerance (NaN is not), on at least one position compared."""
        return (self.positions > 0 and self.worst_difference <= self.tolerance and not self.planes_differ
                and not self.legal_moves_differ)

    def to_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def compare(boards: list[chess.Board], info: Lc0NetInfo, outputs: list[Lc0Output | None], net: SEResNet,
            tolerance: float = DEFAULT_TOLERANCE, path: str | None = None,
            encoding: tuple[torch.Tensor, list[EncodedPosition]] | None = None) -> EngineCheck:
    """lc0's outputs (lc0_outputs) against `net` on the same boards. `encoding`: board_planes(boards, format),
    when the caller has it already (encoding positions with history is the slow part)."""
    if net.config.input_format != info.input_format:
        raise Lc0DistillError(f"{path or info.path}: lc0 reads input format {info.input_format}, lc0distill "
                              f"{net.config.input_format}")
    planes, encoded = encoding if encoding is not None else board_planes(boards, info.input_format)
    kept = [i for i, output in enumerate(outputs) if output is not None]
    worst = {name: _Worst() for name in ("policy", "policy_logits", "wdl", "q", "mlh", "mlh_relative")}
    planes_differ = legal_differ = 0
    net = net.float().cpu().eval()
    for start in range(0, len(kept), 256):
        rows = kept[start:start + 256]
        with torch.no_grad():
            out = net(planes[rows])
        for row, i in enumerate(rows):
            board, lc0, ours = boards[i], outputs[i], encoded[i]
            if not np.array_equal(lc0.planes, planes[i].numpy()):
                planes_differ += 1
            legal = legal_move_indices(board, ours.transform)
            our_indices = {move.uci(): index for index, move in legal.items()}
            lc0_indices = lc0_policy_indices(board, lc0, ours.transform)
            if set(lc0_indices) != set(our_indices):
                legal_differ += 1
            logits = out.policy_logits[row].double().numpy()
            common = [m for m in our_indices if m in lc0_indices]
            if common:
                theirs = softmax_policy(lc0.logits, {m: lc0_indices[m] for m in common})
                mine = softmax_policy(logits, {m: our_indices[m] for m in common})
                worst["policy"].update(_largest(abs(theirs[m] - mine[m]) for m in common), board)
                worst["policy_logits"].update(_largest(abs(float(lc0.logits[lc0_indices[m]]) - float(logits[our_indices[m]]))
                                                       for m in common), board)
            if out.wdl_logits is not None:
                wdl = torch.softmax(out.wdl_logits[row].double(), 0).tolist()
                worst["wdl"].update(_largest(abs(a - b) for a, b in zip(lc0.wdl(), wdl)), board)
                worst["q"].update(abs(lc0.q - (wdl[0] - wdl[2])), board)
            else:
                worst["q"].update(abs(lc0.q - float(out.value[row])), board)
            if out.moves_left is not None:
                ours_m = float(out.moves_left[row])
                worst["mlh"].update(abs(lc0.m - ours_m), board)
                worst["mlh_relative"].update(abs(lc0.m - ours_m) / max(1.0, abs(ours_m)), board)
    has_wdl, has_mlh = net.config.value.value == "wdl", net.config.moves_left
    if has_wdl != info.wdl or has_mlh != info.moves_left:
        raise Lc0DistillError(f"{path or info.path}: lc0 sees value {'WDL' if info.wdl else 'scalar'} and "
                              f"{'a' if info.moves_left else 'no'} moves-left head, lc0distill "
                              f"{'WDL' if has_wdl else 'scalar'} and {'a' if has_mlh else 'no'} moves-left head")
    return EngineCheck(
        net=path or info.path, input_format=info.input_format, positions=len(kept),
        left_out=len(boards) - len(kept), policy=worst["policy"].value, policy_logits=worst["policy_logits"].value,
        wdl=worst["wdl"].value if has_wdl else None, q=worst["q"].value,
        mlh=worst["mlh"].value if has_mlh else None, mlh_relative=worst["mlh_relative"].value if has_mlh else None,
        planes_differ=planes_differ, legal_moves_differ=legal_differ, tolerance=tolerance,
        worst={name: w.fen for name, w in worst.items() if w.fen is not None}, engine=info.engine_json())


def pytorch_outputs(net: SEResNet, boards: list[chess.Board],
                    encoding: tuple[torch.Tensor, list[EncodedPosition]] | None = None) -> list[Lc0Output]:
    """`net`'s outputs in lc0's form (as lc0_outputs gives them), so that `compare` measures two PyTorch nets
    against each other: e.g. a net against its own LINEAR16 file, the quantisation alone."""
    planes, encoded = encoding if encoding is not None else board_planes(boards, net.config.input_format)
    net = net.float().cpu().eval()
    outputs = []
    for start in range(0, len(boards), 256):
        with torch.no_grad():
            out = net(planes[start:start + 256])
        for row, i in enumerate(range(start, min(start + 256, len(boards)))):
            legal = legal_move_indices(boards[i], 0)
            if out.wdl_logits is not None:
                w, d, l = torch.softmax(out.wdl_logits[row].double(), 0).tolist()
                q = w - l
            else:
                q, d = float(out.value[row]), 0.0
            m = float(out.moves_left[row]) if out.moves_left is not None else 0.0
            outputs.append(Lc0Output(logits=out.policy_logits[row].numpy().copy(), q=q, d=d, m=m,
                                     moves=tuple(move.uci() for move in legal.values()), indices=tuple(legal),
                                     planes=planes[i].numpy()))
    return outputs


def lc0_net_path(path: str) -> str:
    """`path` if it is an lc0 .pb.gz (lc0 loads nothing else), else a one-line error saying what to do."""
    kind = net_file_kind(path)
    if kind != NetFileKind.LC0:
        raise Lc0DistillError(f"{path}: lc0 loads lc0 network files (.pb.gz); this is {kind.value}: export it "
                              f"first (lc0distill export {path} --to lc0 --out NET.pb.gz)")
    return str(path)


def check_net(path: str, positions: int = DEFAULT_POSITIONS, tolerance: float = DEFAULT_TOLERANCE,
              backend: str = DEFAULT_BACKEND, boards: list[chess.Board] | None = None) -> EngineCheck:
    """Evaluate the .pb.gz in lc0 and in PyTorch on `positions` built-in positions (or `boards`)."""
    path = lc0_net_path(path)
    boards = boards if boards is not None else engine_check_boards(positions)
    info, outputs = lc0_outputs(path, boards, backend)  # first: a net lc0 refuses is lc0's word
    net = load_inference_net(path)
    if not isinstance(net, TORCH_NETS):
        raise Lc0DistillError(f"{path}: an ONNX net; lc0distill compares lc0 with its own reading of lc0 weights")
    return compare(boards, info, outputs, net, tolerance, path)
