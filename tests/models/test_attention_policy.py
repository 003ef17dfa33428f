"""The attention policy head: lc0's map of its 4288 logits, and the logit of a move as the head defines it
(engine agreement is tests/engine: test_lc0_reads_our_nets and test_leela2onnx run attention variants)."""

from __future__ import annotations

import chess
import numpy as np
import torch

from lc0distill.chess.policy_index import (ATTENTION_POLICY_GATHER, ATTENTION_POLICY_MAP, MOVE_TO_INDEX,
                                           legal_move_indices)
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet


def test_the_map_has_every_move_once_and_lc0s_layout():
    used = ATTENTION_POLICY_MAP[ATTENTION_POLICY_MAP >= 0]
    assert len(used) == len(set(used.tolist())) == 1858
    assert ATTENTION_POLICY_MAP[chess.E2 * 64 + chess.E4] == MOVE_TO_INDEX["e2e4"]
    assert ATTENTION_POLICY_MAP[chess.E2 * 64 + chess.E2] == -1  # no null move
    assert ATTENTION_POLICY_MAP[chess.B7 * 64 + chess.B8] == MOVE_TO_INDEX["b7b8"]  # the knight promotion
    # promotions: 4096 + from_file * 24 + to_file * 3 + piece (q, r, b); only to the file beside or ahead
    assert ATTENTION_POLICY_MAP[4096 + 1 * 24 + 2 * 3 + 1] == MOVE_TO_INDEX["b7c8r"]
    assert ATTENTION_POLICY_MAP[4096 + 0 * 24 + 7 * 3 + 0] == -1
    assert (ATTENTION_POLICY_MAP[4096:] >= 0).sum() == 22 * 3


def test_a_logit_is_q_dot_k_scaled_and_a_promotion_adds_its_offsets():
    torch.manual_seed(3)
    net = SEResNet(NetConfig(filters=8, blocks=1, policy="attention", policy_embedding=10, policy_d_model=6)).eval()
    head = net.policy
    body = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        logits = head(body)[0]
        tokens = torch.selu(head.embedding(body.flatten(2).transpose(1, 2)))[0]  # (64, 10)
        q, k = head.wq(tokens), head.wk(tokens)
        scale = 1 / np.sqrt(6)
        e2e4 = float(q[chess.E2] @ k[chess.E4]) * scale
        assert abs(float(logits[MOVE_TO_INDEX["e2e4"]]) - e2e4) < 1e-5
        offsets = head.ppo(k[56:64])  # (8 to-files, 4): q r b n, unscaled (as the lc0 engine has them)
        b7c8r = float(q[chess.B7] @ k[chess.C8]) * scale + float(offsets[2, 1] + offsets[2, 3])
        assert abs(float(logits[MOVE_TO_INDEX["b7c8r"]]) - b7c8r) < 1e-5


def test_every_legal_move_of_a_promotion_position_has_a_logit():
    board = chess.Board("8/1P4k1/8/8/8/8/5Kp1/8 w - - 0 60")
    legal = legal_move_indices(board)
    assert set(legal) <= set(range(1858)) and len(set(ATTENTION_POLICY_GATHER[list(legal)])) == len(legal)
