"""lc0distill .pt files (torch.save dicts): malicious pickles and wrong contents, wherever the program opens one.

A pickle whose __reduce__ would create a marker file is written as a net file, inside a net's dict, as a
teacher, and as the checkpoint.pt of a run folder that `train` resumes from; the marker must never appear.
Files with the wrong contents (a list, no net_config, absurd or mistyped sizes, tensors of the wrong shape,
values that are not tensors, damaged checkpoint sections) are one line naming the file, exit code 2.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lc0distill.checkpoint import LATEST, load_checkpoint
from lc0distill.cli import main
from lc0distill.errors import Lc0DistillError
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import model_from_state, net_state
from tests.robustness.support import STARTPOS, assert_user_error, run_cli, strict_json

FMT1 = "v6-fmt1-maia1900"
TINY = ["data.workers=0", "net.size=8x1", "data.sample_rate=1", "data.batch_size=32", "data.shuffle_buffer=128",
        "train.eval_positions=64", "export.lc0=false", "train.checkpoint_every=2"]


class CreatesAFile:
    """Unpickling this runs open(marker, "w"): the marker file appears if a load ever executes a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def tiny_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return net_state(SEResNet(NetConfig(filters=8, blocks=1)).eval())


def save(path: Path, obj, legacy: bool = False) -> Path:
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def data(lc0_data) -> Path:
    return lc0_data / FMT1


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, data) -> dict:
    """A real checkpoint of a 2-step run (the sections every resume restores)."""
    from lc0distill.cli import main

    run_dir = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", f"data.paths=[{data}]", *TINY, "train.steps=2", f"train.run_dir={run_dir}"]) == 0
    return load_checkpoint(run_dir / LATEST)


def _commands(path: Path, data: Path, tmp_path: Path) -> list[list]:
    return [["net", "info", path], ["net", "eval", path, "--fen", STARTPOS],
            ["evaluate", path, "--data", data / "game_000004.gz"],
            ["export", path, "--to", "onnx", "--out", tmp_path / "out.onnx"]]


# ---------------------------------------------------------------------------------------------- pickles


def _malicious(marker: Path, good: dict) -> dict[str, tuple[object, bool]]:
    evil = CreatesAFile(marker)
    return {
        "whole_file": (evil, False),
        "beside_the_net": ({**good, "notes": evil}, False),
        "as_a_tensor": ({**good, "model": {**good["model"], "input.conv.weight": evil}}, False),
        "in_net_config": ({**good, "net_config": {**good["net_config"], "filters": evil}}, False),
        "legacy_format": ({**good, "notes": evil}, True),
    }


@pytest.mark.parametrize("variant", ["whole_file", "beside_the_net", "as_a_tensor", "in_net_config", "legacy_format"])
def test_a_malicious_pickle_never_runs_in_any_net_command(tmp_path, capsys, data, variant):
    marker = tmp_path / "MARKER"
    obj, legacy = _malicious(marker, tiny_state())[variant]
    path = save(tmp_path / "net.pt", obj, legacy)
    raw = tmp_path / "raw-pickle.pt"  # not even a torch file: the bytes of pickle.dumps
    raw.write_bytes(pickle.dumps(CreatesAFile(marker)))
    for file in (path, raw):
        for argv in _commands(file, data, tmp_path):
            assert_user_error(run_cli(capsys, argv), file)
            assert not marker.exists(), (variant, argv)


@pytest.mark.parametrize("variant", ["whole_file", "in_the_optimizer", "in_the_rng", "legacy_format"])
def test_a_malicious_checkpoint_in_the_run_folder_never_runs_on_resume(tmp_path, capsys, data, good_checkpoint,
                                                                       variant):
    marker = tmp_path / "MARKER"
    evil = CreatesAFile(marker)
    obj = {"whole_file": evil, "in_the_optimizer": {**good_checkpoint, "optimizer": {"state": {0: evil}}},
           "in_the_rng": {**good_checkpoint, "rng": {**good_checkpoint["rng"], "python": evil}},
           "legacy_format": {**good_checkpoint, "notes": evil}}[variant]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save(run_dir / LATEST, obj, legacy=variant == "legacy_format")
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}"])
    assert_user_error(run, run_dir / LATEST)
    assert not marker.exists()


def test_a_malicious_teacher_never_runs(tmp_path, capsys, data):
    marker = tmp_path / "MARKER"
    teacher = save(tmp_path / "teacher.pt", {**tiny_state(), "notes": CreatesAFile(marker)})
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=2",
                           f"train.run_dir={tmp_path / 'run'}", f"teacher.nets=[{teacher}]"])
    assert_user_error(run, teacher)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- contents


def _with(state: dict, **changes) -> dict:
    return {**state, **changes}


def _model_with(state: dict, key: str, value) -> dict:
    return {**state, "model": {**state["model"], key: value}}


def _config_with(state: dict, **changes) -> dict:
    return {**state, "net_config": {**state["net_config"], **changes}}


WRONG_CONTENTS = {
    "a_list": (lambda s: [1, 2, 3], "not an lc0distill net"),
    "a_tensor": (lambda s: torch.zeros(3), "not an lc0distill net"),
    "no_net_config": (lambda s: {"model": s["model"]}, "not an lc0distill net"),
    "no_model": (lambda s: {"net_config": s["net_config"]}, "not an lc0distill net"),
    "net_config_a_string": (lambda s: _with(s, net_config="64x6"), "net_config"),
    "filters_a_billion": (lambda s: _config_with(s, filters=10**9), "filters"),
    "filters_a_word": (lambda s: _config_with(s, filters="many"), "filters"),
    "filters_nan": (lambda s: _config_with(s, filters=float("nan")), "filters"),
    "blocks_negative": (lambda s: _config_with(s, blocks=-1), "blocks"),
    "unknown_input_format": (lambda s: _config_with(s, input_format=99), "input_format"),
    "unknown_key": (lambda s: _config_with(s, attention=True), "attention"),
    "a_1024x20_config_for_8x1_weights": (lambda s: _config_with(s, filters=1024, blocks=20), "1024x20"),
    "a_tensor_of_the_wrong_shape": (lambda s: _model_with(s, "input.conv.weight", torch.zeros(3)), "input.conv.weight"),
    "a_tensor_missing": (lambda s: {**s, "model": {k: v for k, v in s["model"].items() if k != "value.fc2.bias"}},
                         "value.fc2.bias"),
    "an_unexpected_tensor": (lambda s: _model_with(s, "extra.weight", torch.zeros(1)), "extra.weight"),
    "a_number_for_a_tensor": (lambda s: _model_with(s, "input.conv.weight", 1.5), "not a dict of tensors"),
    "a_complex_tensor": (lambda s: _model_with(s, "value.fc2.bias", torch.zeros(3, dtype=torch.complex64)),
                         "not a dict of tensors"),
    "keys_that_are_numbers": (lambda s: _with(s, model={1: torch.zeros(1)}), "not a dict of tensors"),
    "model_a_list": (lambda s: _with(s, model=[torch.zeros(1)]), "not a dict of tensors"),
}


@pytest.mark.parametrize("case", list(WRONG_CONTENTS))
def test_wrong_contents_are_one_line_naming_the_file(tmp_path, capsys, data, case):
    make, fragment = WRONG_CONTENTS[case]
    path = save(tmp_path / "net.pt", make(tiny_state()))
    everywhere = ("a_list", "filters_nan", "a_tensor_of_the_wrong_shape", "a_1024x20_config_for_8x1_weights")
    commands = _commands(path, data, tmp_path) if case in everywhere else [["net", "info", path]]
    for argv in commands:
        assert_user_error(run_cli(capsys, argv), path, fragment)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("case", ["a_list", "a_tensor_of_the_wrong_shape", "a_1024x20_config_for_8x1_weights"])
def test_wrong_contents_as_a_teacher(tmp_path, capsys, data, case):
    make, fragment = WRONG_CONTENTS[case]
    teacher = save(tmp_path / "teacher.pt", make(tiny_state()))
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=2",
                           f"train.run_dir={tmp_path / 'run'}", f"teacher.nets=[{teacher}]"])
    assert_user_error(run, teacher, fragment)


def _without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


DAMAGED_CHECKPOINTS = {
    "a_list": (lambda c: [c], "not an lc0distill training checkpoint"),
    "no_format": (lambda c: _without(c, "format"), "not an lc0distill training checkpoint"),
    "a_newer_version": (lambda c: _with(c, version=99), "newer"),
    "a_version_that_is_a_word": (lambda c: _with(c, version="two"), "version"),
    "no_optimizer": (lambda c: _without(c, "optimizer"), "optimizer"),
    "no_rng": (lambda c: _without(c, "rng"), "rng"),
    "no_step": (lambda c: _without(c, "step"), "step"),
    "step_a_word": (lambda c: _with(c, step="x"), "step"),
    "batches_negative": (lambda c: _with(c, batches_consumed=-5), "batches_consumed"),
    "config_a_string": (lambda c: _with(c, config="x"), "config"),
    "model_the_wrong_shape": (lambda c: _model_with(c, "input.conv.weight", torch.zeros(3)), "input.conv.weight"),
    "model_empty": (lambda c: _with(c, model={}), "Missing key"),
    "net_config_of_another_net": (lambda c: _config_with(c, filters=16), "16x1"),
    "optimizer_garbage": (lambda c: _with(c, optimizer={"state": 5}), "optimizer"),
    "optimizer_of_another_net": (lambda c: _with(c, optimizer={"state": {}, "param_groups": [{"params": [0, 1]}]}),
                                 "optimizer"),
    "rng_garbage": (lambda c: _with(c, rng={"python": 1}), "rng"),
    "rng_numpy_cut": (lambda c: _with(c, rng={**c["rng"], "numpy": ("MT19937", c["rng"]["numpy"][1][:10], 0, 0, 0.0)}),
                      "rng"),
    "guard_garbage": (lambda c: _with(c, guard=3), "guard"),
    "guard_recent_words": (lambda c: _with(c, guard={"skipped": 0, "recent": ["a"]}), "guard.recent"),
    "data_stream_garbage": (lambda c: _with(c, data_stream={"bogus": 1}), "data_stream"),
    "swa_of_another_net": (lambda c: _with(c, swa={"model": {"x": torch.zeros(1)}, "count": 1}), "swa"),
    "snapshot_without_count": (lambda c: _with(c, snapshot={"model": c["model"]}), "snapshot.taken_at"),
}


@pytest.mark.parametrize("case", list(DAMAGED_CHECKPOINTS))
def test_a_damaged_checkpoint_is_one_error_naming_it_and_the_key(tmp_path, good_checkpoint, case):
    make, fragment = DAMAGED_CHECKPOINTS[case]
    checkpoint = save(tmp_path / LATEST, make(good_checkpoint))
    with pytest.raises(Lc0DistillError) as raised:
        load_checkpoint(checkpoint)
    message = str(raised.value)
    assert message.startswith(f"{checkpoint}: ") and "\n" not in message and fragment in message, message


@pytest.mark.parametrize("case", ["no_optimizer", "model_the_wrong_shape", "rng_numpy_cut", "guard_recent_words"])
def test_resuming_from_a_damaged_checkpoint_is_one_line_and_leaves_it(tmp_path, capsys, data, good_checkpoint, case):
    make, fragment = DAMAGED_CHECKPOINTS[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint = save(run_dir / LATEST, make(good_checkpoint))
    before = checkpoint.read_bytes()
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}"])
    assert_user_error(run, checkpoint, fragment)
    assert checkpoint.read_bytes() == before  # left as it was


def test_the_good_checkpoint_still_resumes(tmp_path, capsys, data, good_checkpoint):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save(run_dir / LATEST, good_checkpoint)
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}"])
    assert run.code == 0, run.err
    assert strict_json(run.out.strip().splitlines()[-1])["steps"] == 4


@pytest.mark.parametrize("change,fragment", [("net.size=16x1", "net.filters 8 in the checkpoint, 16 now"),
                                             ("train.optimizer=adamw", "train.optimizer 'sgd' in the checkpoint")])
def test_resuming_with_another_net_or_optimizer_is_one_line(tmp_path, capsys, data, good_checkpoint, change, fragment):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint = save(run_dir / LATEST, good_checkpoint)
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}", change])
    assert_user_error(run, checkpoint, "cannot resume", fragment)


# ---------------------------------------------------------------------------------------------- generated


_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 2000), st.sampled_from([10**9, 2**63]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.lists(st.integers(0, 3), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_config_keys = st.sampled_from(list(NetConfig.model_fields) + ["se_ratio", "size", "bogus"])
_tensor_keys = st.sampled_from(list(tiny_state()["model"]) + ["bogus"])
_tensors = st.one_of(st.builds(torch.zeros, st.integers(0, 4)), st.builds(lambda: torch.zeros(8, 112, 3, 3)),
                     st.builds(lambda: torch.zeros(1, dtype=torch.float16)), _values)


@settings(max_examples=40)
@given(config_edits=st.dictionaries(_config_keys, _values, max_size=3),
       config_drops=st.lists(_config_keys, max_size=2),
       tensor_edits=st.dictionaries(_tensor_keys, _tensors, max_size=2),
       tensor_drops=st.lists(_tensor_keys, max_size=1))
def test_generated_net_dicts_load_or_fail_with_one_line_naming_the_file(config_edits, config_drops, tensor_edits,
                                                                        tensor_drops):
    state = tiny_state()
    config = {k: v for k, v in {**state["net_config"], **config_edits}.items() if k not in config_drops}
    model = {k: v for k, v in {**state["model"], **tensor_edits}.items() if k not in tensor_drops}
    buffer = io.BytesIO()
    torch.save({**state, "net_config": config, "model": model}, buffer)  # as the file holds it
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    try:
        net = model_from_state(loaded, "generated.pt")
    except Lc0DistillError as error:
        assert str(error).startswith("generated.pt: ") and "\n" not in str(error), str(error)
    else:  # only a config the weights fill loads
        assert net.state_dict().keys() == model.keys()


# ---------------------------------------------------------------------------------------------- left to fix


def _nan_net(path: Path) -> Path:
    state = tiny_state()
    return save(path, _model_with(state, "value.fc2.weight", torch.full_like(state["model"]["value.fc2.weight"],
                                                                               float("nan"))))


def test_net_eval_refuses_a_net_with_nan_weights(tmp_path, capsys):
    path = _nan_net(tmp_path / "nan.pt")
    run = run_cli(capsys, ["net", "eval", path, "--fen", STARTPOS, "--json"])
    assert_user_error(run, path, "non-finite")


def test_evaluate_refuses_a_net_with_nan_weights(tmp_path, capsys, data):
    path = _nan_net(tmp_path / "nan.pt")
    run = run_cli(capsys, ["evaluate", path, "--data", data / "game_000004.gz", "--json"])
    assert_user_error(run, path, "non-finite")


def _flip_a_byte_of(path: Path, member_suffix: str) -> str:
    """Flip one byte inside the stored data of the first zip member whose name ends with `member_suffix`; the
    member's CRC no longer matches (the file is otherwise a valid zip that torch.load reads without a word)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix) and i.file_size > 8)
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    at = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    raw[at] ^= 0x40
    path.write_bytes(bytes(raw))
    return info.filename


def test_a_zip_member_failing_its_crc_is_refused_by_every_command(tmp_path, capsys, data):
    """torch.load reads a .pt whose tensor bytes were damaged without a word (the zip CRCs are not checked)."""
    path = save(tmp_path / "net.pt", tiny_state())
    member = _flip_a_byte_of(path, "/data/0")
    with torch.serialization.safe_globals([]):
        torch.load(path, weights_only=True)  # what we guard against: torch itself takes it
    for argv in [*_commands(path, data, tmp_path), ["net", "eval", path, "--fen", STARTPOS, "--json"]]:
        assert_user_error(run_cli(capsys, argv), path, "fails its CRC check", member)
    assert not (tmp_path / "out.onnx").exists()


def test_a_damaged_checkpoint_zip_is_one_line_on_resume_and_is_left_alone(tmp_path, capsys, data):
    run_dir = tmp_path / "run"
    assert main(["train", f"data.paths=[{data}]", *TINY, "train.steps=2", f"train.run_dir={run_dir}"]) == 0
    _flip_a_byte_of(run_dir / LATEST, "/data/0")
    before = (run_dir / LATEST).read_bytes()
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}"])
    assert_user_error(run, run_dir / LATEST, "fails its CRC check")
    assert (run_dir / LATEST).read_bytes() == before


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_net_of_non_finite_weights_is_refused_by_every_command(tmp_path, capsys, data, value):
    state = tiny_state()
    path = save(tmp_path / "net.pt", _with(state, model={k: torch.full_like(v, value) if v.is_floating_point()
                                                         else v for k, v in state["model"].items()}))
    for argv in _commands(path, data, tmp_path):
        assert_user_error(run_cli(capsys, argv), path, "non-finite")
    teacher = ["train", f"data.paths=[{data}]", *TINY, "train.steps=2", f"train.run_dir={tmp_path / 'run'}",
               f"teacher.nets=[{path}]"]
    assert_user_error(run_cli(capsys, teacher), path, "non-finite")


def test_an_onnx_net_of_non_finite_weights_is_refused_by_every_command(tmp_path, capsys, data):
    from lc0distill.export.onnx_graph import build_onnx

    net = SEResNet(NetConfig(filters=8, blocks=1)).eval()
    with torch.no_grad():
        net.policy.policy.bias.fill_(float("nan"))
    model = build_onnx(net)
    model.metadata_props.add(key="lc0distill.input_format", value="1")
    path = tmp_path / "nan.onnx"
    path.write_bytes(model.SerializeToString())
    teacher = ["train", f"data.paths=[{data}]", *TINY, "train.steps=2", f"train.run_dir={tmp_path / 'run'}",
               f"teacher.nets=[{path}]"]
    for argv in [["net", "info", path], ["net", "eval", path, "--fen", STARTPOS],
                 ["evaluate", path, "--data", data / "game_000004.gz"], teacher]:
        assert_user_error(run_cli(capsys, argv), path, "holds non-finite values")


def test_resuming_with_an_optimizer_of_other_groups_is_one_line(tmp_path, capsys, data, good_checkpoint):
    groups = good_checkpoint["optimizer"]["param_groups"]
    merged = [{**groups[0], "params": [p for g in groups for p in g["params"]]}]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint = save(run_dir / LATEST, _with(good_checkpoint, optimizer={"state": {}, "param_groups": merged}))
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *TINY, "train.steps=4", f"train.run_dir={run_dir}"])
    assert_user_error(run, checkpoint, "optimizer")
