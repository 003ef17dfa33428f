"""Evaluate python-chess positions (with their move history) with a net, as the lc0 engine does.

Positions are encoded in the net's input format (history planes from the board's move stack, lc0's
FEN_ONLY fill), expanded with the engine's rule50 convention, and evaluated in batches. The policy is a
softmax over the legal moves only (lc0's convention); WDL is the softmax of the value logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import chess
import numpy as np
import torch

from lc0distill.chess.encoding import EncodedPosition, GameHistory, encode_board
from lc0distill.chess.expand import PackedPlanes, expand_planes
from lc0distill.chess.policy_index import legal_move_indices
from lc0distill.models.net import NetOutput, SEResNet


@dataclass(frozen=True)
class Evaluation:
    policy: dict[str, float]  # UCI move (castling as e1g1) -> probability, most likely first
    wdl: tuple[float, float, float] | None  # win, draw, loss for the side to move
    q: float  # W - L (or the scalar value)
    moves_left: float | None  # plies, when the net has a moves-left head

    def to_json(self) -> dict:
        return {"policy": self.policy, "wdl": list(self.wdl) if self.wdl else None, "q": self.q,
                "mlh": self.moves_left}


def packed_planes(encoded: Sequence[EncodedPosition]) -> PackedPlanes:
    return PackedPlanes(
        planes=np.stack([e.stored_planes for e in encoded]),
        castling=np.array([[e.castling_us_ooo, e.castling_us_oo, e.castling_them_ooo, e.castling_them_oo]
                           for e in encoded], dtype=np.uint8),
        side_to_move_or_enpassant=np.array([e.side_to_move_or_enpassant for e in encoded], dtype=np.uint8),
        rule50_count=np.array([e.rule50_count for e in encoded], dtype=np.uint8),
        invariance_info=np.array([e.invariance_info for e in encoded], dtype=np.uint8),
        input_format=np.array([e.input_format for e in encoded], dtype=np.uint32),
    )


def board_planes(boards: Sequence[chess.Board], input_format: int) -> tuple[torch.Tensor, list[EncodedPosition]]:
    """((B, 112, 8, 8) planes as the lc0 engine feeds them, the encodings) of boards with history."""
    encoded = [encode_board(board, input_format) for board in boards]
    return torch.from_numpy(expand_planes(packed_planes(encoded))), encoded


def _evaluation(board: chess.Board, encoded: EncodedPosition, out: NetOutput, row: int) -> Evaluation:
    legal = legal_move_indices(board, encoded.transform)
    logits = out.policy_logits[row].double()
    if legal:
        indices = torch.tensor(list(legal), dtype=torch.long)
        probs = torch.softmax(logits[indices], dim=0).tolist()
        policy = dict(sorted(((legal[i].uci(), p) for i, p in zip(legal, probs)), key=lambda kv: -kv[1]))
    else:
        policy = {}
    wdl = None
    if out.wdl_logits is not None:
        w, d, l = torch.softmax(out.wdl_logits[row].double(), dim=0).tolist()
        wdl, q = (w, d, l), w - l
    else:
        q = float(out.value[row])
    moves_left = float(out.moves_left[row]) if out.moves_left is not None else None
    return Evaluation(policy, wdl, q, moves_left)


@torch.no_grad()
def evaluate_boards(net: SEResNet | Callable[[torch.Tensor], NetOutput], boards: Sequence[chess.Board],
                    batch_size: int = 256) -> list[Evaluation]:
    """Evaluations of `boards` (each with its move stack as history), in order. `net` is an SEResNet or any
    callable with the same call and a `config.input_format` (an ONNX net in onnxruntime)."""
    return evaluate_histories(net, [GameHistory.from_board(board) for board in boards], batch_size)


@torch.no_grad()
def evaluate_histories(net: SEResNet | Callable[[torch.Tensor], NetOutput], histories: Sequence[GameHistory],
                       batch_size: int = 256) -> list[Evaluation]:
    """Evaluations of the last positions of game histories kept move by move (a match encodes each position
    once instead of replaying the whole game for every move)."""
    net.eval()
    parameters = getattr(net, "parameters", None)
    device = next(parameters()).device if parameters else torch.device("cpu")
    results: list[Evaluation] = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        encoded = [history.encode(net.config.input_format) for history in chunk]
        planes = torch.from_numpy(expand_planes(packed_planes(encoded)))
        out = net(planes.to(device))
        out = NetOutput(*(t.float().cpu() if t is not None else None for t in
                          (out.policy_logits, out.wdl_logits, out.value, out.moves_left)))
        results += [_evaluation(h.board, e, out, i) for i, (h, e) in enumerate(zip(chunk, encoded))]
    return results
