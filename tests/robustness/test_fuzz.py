"""The whole command line on a data set where good and bad files are mixed, in this process and in real ones.

- One folder of good chunks (links to ../shared), bad chunks (truncated, a NaN record, over 218 policy entries,
  a FIFO, a gzip bomb) and the chunks `data from-pgn` writes from a PGN file holding a good and a bad game:
  inspect, stats, games, evaluate and train each read the good ones and name each bad one.
- The same in a real `python -m lc0distill` process, where no test harness catches the logging: every stderr
  line is the command's own (`lc0distill: error|warning: ...`, or a progress line).
- Memory, measured in a process of its own (max RSS): gzip bombs, a 2048x12 net of zeros, a 1024x20 net
  without its tensors (.pb.gz and .pt), huge sparse files and devices are refused without the memory they
  describe, and nothing hangs.

The other fuzz suites of this folder go through each format in depth (test_chunks_fuzz, test_weights_fuzz,
test_pt_fuzz, test_config_fuzz); PGN is fuzzed in tests/chunks/test_pgn_hardening.py.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lc0distill.chunks.reader import read_chunk
from lc0distill.cli import main
from lc0distill.lc0 import proto
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model, net_state, save_model
from tests.conftest import PROJECT_ROOT, SHARED
from tests.robustness.support import (
    PREFIXES, WARNING, assert_clean_stderr, gz, gzip_bomb, make_fifo, payload, reported, run_cli, set_field,
    set_policy, strict_json, symlink, tar_bytes,
)

FMT1 = "v6-fmt1-maia1900"
GOOD_GAME = '[White "good"]\n[Black "x"]\n[Result "1-0"]\n\n1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4. Qxf7# 1-0\n'
BAD_GAME = '[White "bad"]\n[Black "y"]\n[Result "0-1"]\n\n1. e4 e5 2. Ke3 Kxe7 0-1\n'
GOOD_GAME_UCI = "e2e4 e7e5 f1c4 b8c6 d1h5 g8f6 h5f7".split()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, lc0_data) -> dict:
    """A folder of good chunks, bad chunks and a from-pgn conversion; what each is."""
    root = tmp_path_factory.mktemp("mixed")
    folder = root / "data"
    folder.mkdir()
    good = [symlink(folder / f"good_{i}.gz", source)
            for i, source in enumerate(sorted((lc0_data / FMT1).glob("game_*.gz"))[:4])]
    source = payload(lc0_data / FMT1 / "game_000006.gz")
    bad = {}
    (folder / "cut.gz").write_bytes(gzip.compress(source)[:5000])
    bad["cut.gz"] = "truncated"
    (folder / "nan.gz").write_bytes(gz(set_field(source, 7, "best_q", np.nan)))
    bad["nan.gz"] = "record 7: field best_q"
    crowded = np.full(1858, 1 / 300, np.float32)
    crowded[300:] = -1
    (folder / "crowded.gz").write_bytes(gz(set_policy(source, 3, crowded)))
    bad["crowded.gz"] = "record 3: field probabilities"
    make_fifo(folder / "fifo.gz")
    bad["fifo.gz"] = "not a regular file"
    (folder / "bomb.gz").write_bytes(gzip_bomb(200 << 20, source[:8]))
    bad["bomb.gz"] = "inflates to more than"
    (folder / "archive.tar").write_bytes(tar_bytes({"training.1.gz": gzip.compress(source)[:3000]}))
    bad["archive.tar:training.1.gz"] = "truncated"
    pgn = root / "games.pgn"
    pgn.write_text(GOOD_GAME + "\n" + BAD_GAME)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "from-pgn", str(pgn), "--out", str(folder / "from-pgn")])
    return {"folder": folder, "good": good, "bad": {str(folder / name): why for name, why in bad.items()},
            "partial": [folder / "nan.gz", folder / "crowded.gz"],  # read, with one bad record each
            "pgn": pgn, "pgn_out": folder / "from-pgn", "conversion": (code, out.getvalue(), err.getvalue())}


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("net") / "tiny.pt"
    save_model(SEResNet(NetConfig(filters=8, blocks=1)).eval(), path)
    return path


def test_a_pgn_file_with_a_bad_game_converts_the_good_one(mixed):
    code, out, err = mixed["conversion"]
    assert code == 0 and "Traceback" not in err
    assert "1 games" in out and "illegal move: 1" in out, out
    assert any("Ke3" in line and str(mixed["pgn"]) in line for line in err.splitlines()), err


def test_good_and_bad_files_together_through_every_data_command(capsys, mixed, tiny_net):
    converted = sorted(mixed["pgn_out"].glob("game_*.gz"))
    assert len(converted) == 1
    everything = [*mixed["good"], *converted, *mixed["partial"]]

    inspect = run_cli(capsys, ["data", "inspect", mixed["folder"]])
    assert inspect.code == 2
    assert_clean_stderr(inspect, names=[mixed["folder"]])
    for path in everything:
        assert f"{path}: V6" in inspect.out, path
    for name, why in mixed["bad"].items():
        assert any(why in line for line in reported(inspect, name)), (name, inspect.err)

    stats = run_cli(capsys, ["data", "stats", "--json", mixed["folder"]])
    assert stats.code == 2
    report = strict_json(stats.out)
    readable = sum(len(read_chunk(str(p)).records) for p in everything)
    assert report["positions"] == readable and report["bad_records"] == 2
    assert {bad["path"] for bad in report["bad_files"]} == set(mixed["bad"]) - {str(p) for p in mixed["partial"]}

    games = run_cli(capsys, ["data", "games", "--json", mixed["folder"]])
    entries = {entry["path"]: entry for entry in strict_json(games.out)}
    assert entries[str(converted[0])]["moves"] == GOOD_GAME_UCI and entries[str(converted[0])]["result"] == "1-0"
    assert {str(p) for p in mixed["good"]} <= set(entries)

    evaluate = run_cli(capsys, ["evaluate", tiny_net, "--data", mixed["folder"], "--json"])
    assert evaluate.code == 0, evaluate.err
    assert_clean_stderr(evaluate, names=[mixed["folder"]])
    metrics = strict_json(evaluate.out)["nets"][str(tiny_net)]
    assert metrics["positions"] == readable - 2  # every readable record but the two bad ones
    unreadable = set(mixed["bad"]) - {str(p) for p in mixed["partial"]}
    for name in unreadable:
        assert any(line.startswith(WARNING) for line in reported(evaluate, name)), (name, evaluate.err)


def test_training_on_the_mixed_folder_uses_the_good_files(tmp_path, capsys, mixed):
    run_dir = tmp_path / "run"
    run = run_cli(capsys, ["train", f"data.paths=[{mixed['folder']}]", "data.workers=0", "net.size=8x1",
                           "train.steps=3", "data.sample_rate=1", "data.batch_size=32", "data.shuffle_buffer=64",
                           "data.test_ratio=0.3", "train.eval_positions=64", "export.lc0=false",
                           f"train.run_dir={run_dir}"])
    assert run.code == 0, run.err
    assert_clean_stderr(run, names=[mixed["folder"]])
    assert f"warning: skipped: {mixed['folder'] / 'fifo.gz'}" in run.out
    net = load_model(run_dir / "final.pt")
    assert all(torch.isfinite(t).all() for t in net.state_dict().values() if t.is_floating_point())


def test_from_pgn_reports_skipped_games_as_warnings(tmp_path, capsys, mixed):
    run = run_cli(capsys, ["data", "from-pgn", mixed["pgn"], "--out", tmp_path / "out"])
    assert run.err and all(line.startswith(PREFIXES) for line in run.err.splitlines()), run.err


# ---------------------------------------------------------------------------------------------- real processes

# Runs lc0distill commands in a fresh Python: no test harness configures logging there (as in the shell), and its
# max RSS is its own. Prints, per command, the exit code, stderr and the peak RSS so far (MiB).
_REAL_PROCESS = textwrap.dedent("""
    import contextlib, io, json, resource, sys
    from lc0distill.cli import main

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    warm_up, commands = json.loads(sys.stdin.read())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(warm_up)  # the imports and a real net's memory: the baseline
    results = {"baseline": peak_mib(), "runs": []}
    for argv in commands:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        results["runs"].append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(),
                                "peak": peak_mib()})
    print(json.dumps(results))
""")


def _hostile_files(folder: Path) -> list[list[str]]:
    """Commands on hostile files of a few KB or MB that describe gigabytes, or that never end."""
    bomb = folder / "bomb.gz"
    bomb.write_bytes(gzip_bomb(3 << 30, (6).to_bytes(4, "little") + (1).to_bytes(4, "little")))
    with open(folder / "training.big", "wb") as handle:  # sparse: no disk
        handle.truncate(2 << 30)
    (folder / "bomb.tar").write_bytes(tar_bytes({"training.1.gz": bomb.read_bytes()}))
    symlink(folder / "zero.gz", "/dev/zero")
    make_fifo(folder / "fifo.gz")

    maia = proto.Net()
    maia.ParseFromString(gzip.decompress((SHARED / "nets" / "maia-1100.pb.gz").read_bytes()))
    maia.weights.input.weights.params = bytes(112 * 9 * 1024 * 2)  # 1024 filters, 20 blocks without tensors
    del maia.weights.residual[:]
    for _ in range(20):
        maia.weights.residual.add()
    (folder / "1024x20.pb.gz").write_bytes(gzip.compress(maia.SerializeToString(), 1))
    header = proto.Net(magic=0x1C0).SerializeToString()  # then 1.8 GB of zeros: a 2048x12 net's parameters
    (folder / "zeros.pb.gz").write_bytes(gzip_bomb(1800 << 20, header))
    torch.manual_seed(0)
    state = net_state(SEResNet(NetConfig(filters=8, blocks=1)))
    torch.save({**state, "net_config": {**state["net_config"], "filters": 1024, "blocks": 20}}, folder / "1024x20.pt")
    with open(folder / "huge.yaml", "wb") as handle:
        handle.truncate(2 << 30)
    make_fifo(folder / "fifo.yaml")
    data = [str(folder / name) for name in ("bomb.gz", "training.big", "bomb.tar", "zero.gz", "fifo.gz")]
    return [["data", "inspect", *data], ["data", "stats", "--json", *data], ["data", "games", *data],
            ["net", "info", str(folder / "1024x20.pb.gz")], ["net", "info", str(folder / "zeros.pb.gz")],
            ["net", "eval", str(folder / "1024x20.pt"), "--fen", "8/8/8/8/8/8/8/K6k w - - 0 1"],
            ["train", "--config", str(folder / "huge.yaml")], ["train", "--config", str(folder / "fifo.yaml")]]


@pytest.fixture(scope="module")
def real_process(tmp_path_factory, mixed, tiny_net) -> dict:
    if not (SHARED / "nets" / "maia-1100.pb.gz").exists():
        pytest.skip("reference net maia-1100.pb.gz is absent (../shared holds lc0's own files; see README)")
    hostile = _hostile_files(tmp_path_factory.mktemp("hostile"))
    evaluate = ["evaluate", str(tiny_net), "--data", str(mixed["folder"]), "--json"]
    finished = subprocess.run([sys.executable, "-c", _REAL_PROCESS], input=json.dumps([["net", "info", str(tiny_net)],
                                                                                        [evaluate, *hostile]]),
                              capture_output=True, text=True, timeout=240, cwd=PROJECT_ROOT)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(finished.stdout)
    return {"baseline": results["baseline"], "evaluate": results["runs"][0], "hostile": results["runs"][1:]}


@pytest.mark.slow
def test_a_real_process_writes_only_its_own_lines_on_stderr(mixed, real_process):
    """Without a test harness logging has no handler: the loader's warnings must still read as the command's."""
    run = real_process["evaluate"]
    assert run["code"] == 0, run["err"]
    strict_json(run["out"])
    lines = run["err"].splitlines()
    assert any(str(mixed["folder"] / "bomb.gz") in line for line in lines), "the skipped files are named"
    for line in lines:
        if str(mixed["folder"]) in line:
            assert line.startswith(PREFIXES), line
        assert "Traceback" not in line and "Warning:" not in line, line


@pytest.mark.slow
def test_hostile_files_take_bounded_memory_and_never_hang(real_process):
    for run in real_process["hostile"]:
        assert run["code"] == 2, run
        lines = run["err"].splitlines()
        assert lines and all(line.startswith(PREFIXES) for line in lines), run
    peak, baseline = max(run["peak"] for run in real_process["hostile"]), real_process["baseline"]
    assert peak - baseline < 300, f"{peak - baseline:.0f} MiB above the baseline of {baseline:.0f} MiB"
