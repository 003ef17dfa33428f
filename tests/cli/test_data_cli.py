"""`lc0distill data inspect|games` through the real entry point: JSON shapes and content."""

import json
import subprocess
import sys

import chess.pgn
import io

from lc0distill.cli import main


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_json_shape_and_content(capsys, lc0_data):
    folder = lc0_data / "v6-fmt3-maia1100"
    doc = _json(capsys, ["data", "inspect", str(folder), "--json", "--records", "2"])
    assert set(doc) == {"files"} and len(doc["files"]) == 3
    first = doc["files"][0]
    assert set(first) == {"path", "version", "input_format", "records", "results", "decoded", "bad_records"}
    assert first["bad_records"] == []  # lc0's own records are all fit for training
    assert first["version"] == 6 and first["input_format"] == 3 and first["records"] == 78
    assert first["results"] == {"white": 0, "black": 1, "draw": 0}  # game 0 of this folder: 0-1
    record = first["decoded"][0]
    assert record["fen"] == chess.STARTING_FEN and record["played_move"] == "e2e4"
    assert record["input_format"] == 3 and record["visits"] > 0 and len(record["planes"]) == 104
    assert abs(sum(record["policy"].values()) - 1) < 0.01 and len(record["policy"]) == 20
    assert len(first["decoded"]) == 2 and first["decoded"][1]["fen"].split()[1] == "b"


def test_inspect_counts_results(capsys, lc0_data, lc0_games):
    doc = _json(capsys, ["data", "inspect", str(lc0_data), "--json", "--records", "0"])
    totals = {"white": 0, "black": 0, "draw": 0}
    for entry in doc["files"]:
        for key in totals:
            totals[key] += entry["results"][key]
        assert entry["decoded"] == []
    expected = {"white": 0, "black": 0, "draw": 0}
    for game in lc0_games:
        expected[{"1-0": "white", "0-1": "black", "1/2-1/2": "draw"}[game["result"]]] += 1
    assert totals == expected


def test_games_json_equals_lc0(capsys, lc0_data, lc0_games):
    folder = lc0_data / "v6-fmt5-maia1100"
    games = _json(capsys, ["data", "games", str(folder), "--json"])
    expected = {g["file"]: g for g in lc0_games if g["file"].startswith("v6-fmt5")}
    assert len(games) == len(expected) == 3
    for game in games:
        assert set(game) == {"path", "moves", "result"}
        reference = expected["v6-fmt5-maia1100/" + game["path"].rsplit("/", 1)[1]]
        assert game["moves"] == reference["moves"] and game["result"] == reference["result"]


def test_games_pgn_replays(capsys, lc0_data, lc0_games):
    path = lc0_data / "v6-fmt1-maia1900" / "game_000004.gz"
    assert main(["data", "games", str(path), "--pgn"]) == 0
    game = chess.pgn.read_game(io.StringIO(capsys.readouterr().out))
    reference = next(g for g in lc0_games if g["file"] == "v6-fmt1-maia1900/game_000004.gz")
    assert [m.uci() for m in game.mainline_moves()] == reference["moves"]
    assert game.headers["Result"] == reference["result"]


def test_tar_members_are_named_inside_the_archive(capsys, lc0_data, tmp_path):
    import tarfile

    archive = tmp_path / "training-run1--20200711-2017.tar"
    with tarfile.open(archive, "w") as tar:
        for i, path in enumerate(sorted((lc0_data / "v6-fmt2-maia1100").glob("*.gz"))):
            tar.add(path, arcname=f"training.{i}.gz")
    games = _json(capsys, ["data", "games", str(archive), "--json"])
    assert [g["path"] for g in games] == [f"{archive}:training.{i}.gz" for i in range(3)]


def test_console_script_help_and_user_error():
    """The installed command: --help works, a user mistake is one line without a traceback."""
    help_text = subprocess.run([sys.executable, "-m", "lc0distill", "data", "inspect", "--help"],
                               capture_output=True, text=True)
    assert help_text.returncode == 0 and "--records" in help_text.stdout
    missing = subprocess.run([sys.executable, "-m", "lc0distill", "data", "games", "/no/such/file.gz"],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "/no/such/file.gz" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_bad_archive_in_a_folder_costs_only_itself(capsys, lc0_data, tmp_path):
    good = sorted((lc0_data / "v6-fmt2-maia1100").glob("*.gz"))[0]
    (tmp_path / "a.gz").write_bytes(good.read_bytes())
    (tmp_path / "bad.tar").write_bytes(b"not an archive at all" * 100)
    assert main(["data", "games", str(tmp_path), "--json"]) == 2
    captured = capsys.readouterr()
    assert [g["path"] for g in json.loads(captured.out)] == [str(tmp_path / "a.gz")]
    assert captured.err.count("\n") == 1 and "bad.tar" in captured.err
