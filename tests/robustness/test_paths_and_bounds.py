"""Issue 26's regression cases for paths and numbers: a folder that cannot be read, an empty folder, a run folder
that cannot be made, config numbers past what a machine holds or a run finishes, flags out of range. Each is one
line, exit code 2, naming the file or the key; good files beside a bad one are still read.

The tests run as root here, where chmod 000 does not stop a read: an unreadable folder is made by refusing
os.scandir on it (what os.walk and the shard probe call), as the kernel refuses a user without permission.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lc0distill.chunks.config import BATCH_BYTES_PER_POSITION, machine_memory
from lc0distill.chunks.packed import POSITION_DTYPE
from tests.robustness.support import assert_user_error, run_cli

FMT1 = "v6-fmt1-maia1900"
TINY = ["data.workers=0", "net.size=8x1", "data.sample_rate=1", "data.batch_size=32", "data.shuffle_buffer=128",
        "train.eval_positions=64", "export.lc0=false", "train.steps=1"]


@pytest.fixture()
def chunks(lc0_data, tmp_path) -> Path:
    """A folder of three real lc0 chunks and a subfolder of two more."""
    folder = tmp_path / "chunks"
    (folder / "sub").mkdir(parents=True)
    files = sorted((lc0_data / FMT1).glob("*.gz"))
    for source in files[:3]:
        shutil.copy(source, folder / source.name)
    for source in files[3:5]:
        shutil.copy(source, folder / "sub" / source.name)
    return folder


@pytest.fixture()
def unreadable(monkeypatch):
    """unreadable(path): listing that folder fails with EACCES, as for a user without read permission."""
    real = os.scandir

    def refuse(path):
        def scandir(target="."):
            if Path(os.fsdecode(target)).resolve() == Path(path).resolve():
                raise PermissionError(13, "Permission denied", os.fsdecode(target))
            return real(target)
        monkeypatch.setattr(os, "scandir", scandir)
    return refuse


@pytest.mark.parametrize("command", [["data", "inspect"], ["data", "stats"], ["data", "games"]])
def test_an_unreadable_folder_is_one_line_naming_it(chunks, unreadable, capsys, command):
    unreadable(chunks)
    assert_user_error(run_cli(capsys, [*command, chunks]), chunks, "cannot read the folder", "Permission denied")


def test_an_unreadable_folder_to_evaluate_and_train_is_one_line(chunks, unreadable, capsys, tmp_path):
    unreadable(chunks)
    net = tmp_path / "net.pt"
    from lc0distill.models.config import NetConfig
    from lc0distill.models.net import SEResNet
    from lc0distill.models.store import save_model
    save_model(SEResNet(NetConfig(filters=8, blocks=1)), net)
    assert_user_error(run_cli(capsys, ["evaluate", net, "--data", chunks]), chunks, "cannot read the folder")
    train = ["train", f"data.paths=[{chunks}]", *TINY, f"train.run_dir={tmp_path / 'run'}"]
    assert_user_error(run_cli(capsys, train), chunks, "cannot read the folder")


def test_an_unreadable_subfolder_is_named_and_the_rest_is_read(chunks, unreadable, capsys):
    unreadable(chunks / "sub")
    run = run_cli(capsys, ["data", "stats", chunks, "--json"])
    assert run.code == 2  # a file could not be read: said, and the sums are over the others
    line = assert_user_error(run, chunks / "sub", "cannot read the folder")
    assert "Permission denied" in line
    import json
    assert json.loads(run.out)["chunks"] == 3


@pytest.mark.parametrize("command", [["data", "inspect"], ["data", "stats"], ["data", "games"]])
def test_an_empty_folder_is_an_error_not_silence(tmp_path, capsys, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_cli(capsys, [*command, empty]), empty, "no chunks found")


def test_a_run_folder_that_cannot_be_made_is_one_line(lc0_data, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    for run_dir in ("/proc/lc0distill-run", blocked / "run"):
        run = run_cli(capsys, ["train", f"data.paths=[{lc0_data / FMT1}]", *TINY, f"train.run_dir={run_dir}"])
        assert_user_error(run, run_dir, "cannot create the run folder")


def test_a_shuffle_buffer_or_batch_past_the_machine_is_refused_when_the_config_loads(lc0_data, capsys):
    memory = machine_memory()
    assert memory is not None and memory > 1 << 30
    too_many = memory // POSITION_DTYPE.itemsize + 1  # by the formula: 2,232 bytes a buffered position
    for key, value in (("data.shuffle_buffer", too_many), ("data.batch_size", memory // BATCH_BYTES_PER_POSITION)):
        run = run_cli(capsys, ["train", f"data.paths=[{lc0_data / FMT1}]", "data.workers=0", f"{key}={value}"])
        line = assert_user_error(run, "command line", "GB", "this machine has")
        assert f"{value:,}" in line
    fits = memory // 4 // POSITION_DTYPE.itemsize  # a quarter of the machine is accepted
    from lc0distill.config import load_config
    assert load_config(None, [f"data.paths=[{lc0_data / FMT1}]", f"data.shuffle_buffer={fits}"]).data.shuffle_buffer == fits


@pytest.mark.parametrize(("override", "fragment"), [
    ("train.steps=" + "1" + "0" * 30, "train.steps"),
    ("train.steps=1000000001", "less than or equal to 1000000000"),
    ("net.se_ratio=1000", "se_ratio 1000 is above filters"),
])
def test_numbers_no_run_can_use_are_refused(lc0_data, capsys, override, fragment):
    run = run_cli(capsys, ["train", f"data.paths=[{lc0_data / FMT1}]", "data.workers=0", override])
    assert_user_error(run, "command line", fragment)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-0.5", "x"])  # 0 asks for exact agreement: allowed
def test_a_tolerance_out_of_range_is_a_usage_error(tmp_path, capsys, value):
    for argv in (["export", tmp_path / "net.pt", "--to", "onnx", "--out", tmp_path / "o.onnx", "--tolerance", value],
                 ["net", "check", tmp_path / "net.pt", "--tolerance", value]):
        run = run_cli(capsys, argv)
        assert run.code == 2 and "--tolerance" in run.err and "a finite number in [0, inf) is needed" in run.err
