"""`data play` and `data label`: chunks that read back as legal games with the right results, whose targets
are the net's (or teacher's) own outputs; with lc0, chunks lc0 itself wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lc0distill.chunks.reader import read_chunk
from lc0distill.cli import main
from lc0distill.distill.teachers import NetTeacher
from lc0distill.engine.locate import EngineNotFound, find_engine
from lc0distill.nets import load_inference_net
from tests.conftest import LC0_DATA, SHARED, copy_games

MAIA = SHARED / "nets" / "maia-1900.pb.gz"


@pytest.fixture(autouse=True)
def _nets():
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent")


def _run(capsys, *argv) -> tuple[int, dict | list | None, str]:
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith(("{", "[")) else None), err


def _games(capsys, folder) -> list[dict]:
    code, games, err = _run(capsys, "data", "games", folder, "--json")
    assert code == 0, err
    return games


def _replay(game: dict):
    import chess

    board = chess.Board()
    for uci in game["moves"]:
        move = chess.Move.from_uci(uci)
        assert move in board.legal_moves, (game["path"], uci)
        board.push(move)
    return board


def test_data_play_writes_legal_games_labelled_by_the_net(capsys, tmp_path):
    out = tmp_path / "played"
    code, summary, err = _run(capsys, "data", "play", "--net", MAIA, "--games", 6, "--out", out, "--random-plies", 2,
                              "--concurrency", 4, "--json")
    assert code == 0, err
    chunks = sorted(out.glob("game_*.gz"))
    assert len(chunks) == 6 and summary["games"] == 6
    games = _games(capsys, out)
    assert len(games) == 6
    results = {"1-0": 0, "0-1": 0, "1/2-1/2": 0}
    for game in games:
        board = _replay(game)
        outcome = board.outcome(claim_draw=True)
        if game["result"] != "1/2-1/2" or outcome is not None:  # a max-plies draw has no outcome
            assert outcome is not None and outcome.result() == game["result"], game["path"]
        results[game["result"]] += 1
    assert results == summary["results"] and sum(len(g["moves"]) for g in games) == summary["positions"]
    # the targets are the net's own outputs on each record's planes
    from lc0distill.chunks.batch import make_batch
    from lc0distill.chunks.packed import pack_records

    records = read_chunk(str(chunks[0])).records
    batch = make_batch(pack_records(records))
    teacher = NetTeacher([load_inference_net(MAIA)])(batch.planes)
    policy = teacher.policy_logits.masked_fill(~batch.legal, float("-inf")).softmax(1)
    assert (policy - torch.where(batch.legal, batch.policy, 0.0)).abs().max() < 1e-4
    wdl = teacher.wdl.numpy()
    assert np.abs(records["orig_q"] - (wdl[:, 0] - wdl[:, 2])).max() < 1e-4
    assert np.abs(records["best_d"] - wdl[:, 1]).max() < 1e-4


def test_data_play_with_played_targets_writes_the_games_hard_labels(capsys, tmp_path):
    """--targets played: the same games (same seed), each record's policy the played move one-hot and its q the
    result z, as a game record (CCRL) gives them: nothing of the net's outputs."""
    folders = {}
    for targets in ("net", "played"):
        folders[targets] = tmp_path / targets
        code, _, err = _run(capsys, "data", "play", "--net", MAIA, "--games", 2, "--out", folders[targets],
                            "--seed", 3, "--max-plies", 40, "--targets", targets)
        assert code == 0, err
    for net_path, played_path in zip(*(sorted(folders[t].glob("game_*.gz")) for t in ("net", "played"))):
        net, played = read_chunk(str(net_path)).records, read_chunk(str(played_path)).records
        assert (net["planes"] == played["planes"]).all() and (net["played_idx"] == played["played_idx"]).all()
        probabilities = played["probabilities"]
        rows = np.arange(len(played))
        assert (probabilities[rows, played["played_idx"]] == 1.0).all()
        assert np.isclose(probabilities.clip(min=0).sum(axis=1), 1.0).all()
        assert ((probabilities >= 0) == (net["probabilities"] >= 0)).all()  # the same legal moves
        assert (played["best_q"] == played["result_q"]).all() and (played["best_d"] == played["result_d"]).all()


def test_data_play_is_reproducible_by_seed_whatever_the_batching(capsys, tmp_path):
    folders = []
    for concurrency in (1, 3):
        folder = tmp_path / f"c{concurrency}"
        assert _run(capsys, "data", "play", "--net", MAIA, "--games", 3, "--out", folder, "--seed", 7,
                    "--max-plies", 30, "--concurrency", concurrency, "--runtime", "pytorch")[0] == 0
        folders.append(folder)
    moves = [sorted(tuple(g["moves"]) for g in _games(capsys, folder)) for folder in folders]
    assert moves[0] == moves[1] and len(moves[0]) == 3


def test_data_label_keeps_planes_and_z_and_takes_the_teachers_policy(capsys, tmp_path):
    data = copy_games(LC0_DATA / "v5-maia1100", tmp_path / "in", 3)
    out = tmp_path / "labelled"
    code, summary, err = _run(capsys, "data", "label", data, "--teacher", MAIA, "--out", out, "--json")
    assert code == 0 and summary["chunks"] == 3, err
    before = [read_chunk(str(p)).records for p in sorted(data.glob("game_*.gz"))]
    after = [read_chunk(str(p)).records for p in sorted(out.glob("game_*.gz"))]
    for old, new in zip(before, after):
        assert (new["version"] == 6).all() and (new["planes"] == old["planes"]).all()
        assert (new["result_q"] == old["result_q"]).all() and (new["plies_left"] == old["plies_left"]).all()
        assert ((new["probabilities"] >= 0) == (old["probabilities"] >= 0)).all()  # the same legal moves
    # V5 names no played move: the labelled V6 chunks get it from the rebuilt game, the same game
    assert [g["moves"] for g in _games(capsys, data)] == [g["moves"] for g in _games(capsys, out)]


def test_data_label_reads_pgn_games(capsys, tmp_path):
    pgn = tmp_path / "games.pgn"
    pgn.write_text('[Event "x"]\n[Result "1-0"]\n\n1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0\n\n'
                   '[Event "y"]\n[Result "*"]\n\n1. d4 *\n')
    out = tmp_path / "labelled"
    code, summary, err = _run(capsys, "data", "label", pgn, "--teacher", MAIA, "--out", out, "--json")
    assert code == 2 and summary["chunks"] == 1 and summary["skipped"] == 1 and "game 2" in err
    games = _games(capsys, out)
    assert games[0]["moves"] == ["e2e4", "e7e5", "d1h5", "b8c6", "f1c4", "g8f6", "h5f7"] and games[0]["result"] == "1-0"


@pytest.mark.engine
def test_data_play_with_lc0_writes_lc0s_own_chunks(capsys, tmp_path):
    try:
        find_engine()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    out = tmp_path / "lc0"
    code, summary, err = _run(capsys, "data", "play", "--net", MAIA, "--games", 2, "--out", out, "--engine", "lc0",
                              "--visits", 8, "--json")
    assert code == 0 and summary["games"] == 2, err
    games = _games(capsys, out)
    assert len(games) == 2
    for game in games:
        _replay(game)
    records = read_chunk(str(sorted(out.glob("game_*.gz"))[0])).records
    assert (records["version"] == 6).all() and (records["visits"] > 0).all()  # searched: lc0's own records


def test_a_killed_lc0_selfplay_keeps_its_finished_games_and_resume_plays_the_rest(capsys, tmp_path):
    """Each game's chunk is moved into --out as lc0 finishes it: a kill keeps them whole, and --resume plays
    only the games still missing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    try:
        find_engine()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    out = tmp_path / "lc0"
    argv = ["data", "play", "--net", str(MAIA), "--games", "4", "--out", str(out), "--engine", "lc0", "--visits", "2"]
    process = subprocess.Popen([sys.executable, "-m", "lc0distill", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("game_*.gz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)  # the command and its lc0
    process.wait()
    kept = sorted(out.glob("game_*.gz"))
    assert 1 <= len(kept) < 4
    assert all(len(read_chunk(str(chunk)).records) > 0 for chunk in kept)  # whole chunks only
    code, summary, err = _run(capsys, *argv, "--resume", "--json")
    assert code == 0, err
    assert summary["already_there"] == len(kept) and summary["games"] == 4 - len(kept)
    assert sum(summary["results"].values()) == summary["games"]
    games = _games(capsys, out)
    assert len(games) == 4
    for game in games:
        _replay(game)
    code, summary, err = _run(capsys, *argv, "--resume", "--json")  # all there: nothing to play
    assert code == 0 and summary["games"] == 0 and summary["already_there"] == 4, err


def test_resume_counts_the_games_there_and_plays_other_ones(capsys, tmp_path):
    folder = tmp_path / "games"
    base = ["data", "play", "--net", MAIA, "--out", folder, "--max-plies", 20, "--runtime", "pytorch"]
    assert _run(capsys, *base, "--games", 2)[0] == 0
    code, summary, err = _run(capsys, *base, "--games", 3, "--resume", "--json")
    assert code == 0 and summary["games"] == 1 and summary["already_there"] == 2, err
    moves = [tuple(g["moves"]) for g in _games(capsys, folder)]
    assert len(moves) == 3 and moves[2] not in moves[:2]  # another seed: not a replay of game 1
