"""Bad run configs, hand-picked and generated: every one is a single line naming the file (or "command line" for
overrides) and the key, exit code 2, no traceback, before any work; FIFOs and huge files are refused unread."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lc0distill.config import RunConfig, load_config
from lc0distill.errors import Lc0DistillError
from tests.robustness.support import assert_user_error, make_fifo, run_cli, time_limit

FMT1 = "v6-fmt1-maia1900"
QUICK = ["data.workers=0", "net.size=8x1", "train.steps=2", "data.sample_rate=1", "data.batch_size=32",
         "data.shuffle_buffer=64", "train.eval_positions=64", "export.lc0=false"]


@pytest.fixture(scope="module")
def data(lc0_data) -> Path:
    return lc0_data / FMT1


def _recipe(data: Path, extra: str = "") -> str:
    return f"data:\n  paths: [{data}]\n  workers: 0\n{extra}"


# (file contents, or None for "the override alone"; overrides; fragments of the error line)
BAD_FILES = {
    "bytes_that_are_not_utf8": (lambda d: _recipe(d).encode() + b"net:\n  size: \xff\xfe64x6\n", [],
                                ["not a text file in UTF-8", "byte"]),
    "a_yaml_syntax_error": (lambda d: _recipe(d) + "train: [steps: 3\n", [], ["not valid YAML", "line"]),
    "a_tab_indent": (lambda d: _recipe(d) + "train:\n\tsteps: 3\n", [], ["not valid YAML"]),
    "a_list_at_the_top": (lambda d: "- data\n- net\n", [], ["a config is a mapping of sections"]),
    "a_python_tag": (lambda d: _recipe(d) + "train: !!python/object/apply:os.system [echo]\n", [], ["not valid YAML"]),
    "steps_a_word": (lambda d: _recipe(d) + "train:\n  steps: many\n", [], ["train.steps"]),
    "steps_negative": (lambda d: _recipe(d) + "train:\n  steps: -3\n", [], ["train.steps"]),
    "lr_nan": (lambda d: _recipe(d) + "train:\n  lr:\n    lr: .nan\n", [], ["train.lr.lr", "finite"]),
    "q_ratio_inf": (lambda d: _recipe(d) + "loss:\n  q_ratio: .inf\n", [], ["loss.q_ratio", "finite"]),
    "temperature_minus_inf": (lambda d: _recipe(d) + "loss:\n  temperature:\n    start: -.inf\n", [],
                              ["loss.temperature.start"]),
    "net_size_128": (lambda d: _recipe(d) + "net:\n  size: 128\n", [], ["net.size", "FILTERSxBLOCKS"]),
    "net_size_4096x4096": (lambda d: _recipe(d) + "net:\n  size: 4096x4096\n", [], ["net.filters", "net.blocks"]),
    "an_unknown_key": (lambda d: _recipe(d) + "train:\n  stpes: 3\n", [], ["train.stpes", "Extra inputs"]),
    "an_unknown_section": (lambda d: _recipe(d) + "trainer:\n  steps: 3\n", [], ["trainer"]),
    "a_section_that_is_a_number": (lambda d: _recipe(d) + "export: 5\n", [], ["export"]),
    "a_date_that_does_not_exist": (lambda d: _recipe(d) + "train:\n  seed: 2001-02-30\n", [],
                                   ["not valid YAML", "day"]),
    "an_int_tag_on_a_word": (lambda d: _recipe(d) + "train:\n  steps: !!int many\n", [], ["not valid YAML"]),
    "nested_600_deep": (lambda d: _recipe(d) + "net: " + "[" * 600 + "]" * 600 + "\n", [], ["not valid YAML"]),
    "nested_400_deep": (lambda d: _recipe(d) + "net: " + "[" * 400 + "]" * 400 + "\n", [], ["levels deep"]),
    "no_data_section": (lambda d: "train:\n  steps: 3\n", [], ["data", "required"]),
    "teacher_weights_without_nets": (lambda d: _recipe(d) + "teacher:\n  weights: [1, 2]\n", [], ["teacher.weights"]),
    "a_billion_laughs": (lambda d: _recipe(d) + "refs:\n" + "".join(
        f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n" for i in range(9))
        + "teacher:\n  nets: *a8\n", [], ["teacher.nets"]),
}
BAD_OVERRIDES = {
    "device_bogus": (["train.device=bogus"], ["command line", "train.device"]),
    "steps_an_unclosed_list": (["train.steps=[1"], ["train.steps=[1", "not valid YAML"]),
    "steps_a_list": (["train.steps=[1]"], ["train.steps"]),
    "lr_nan": (["train.lr.lr=.nan"], ["train.lr.lr", "finite"]),
    "net_size_128": (["net.size=128"], ["net.size", "FILTERSxBLOCKS"]),
    "net_size_words": (["net.size=big"], ["net.size"]),
    "not_key_value": (["train.steps"], ["KEY=VALUE"]),
    "a_date_that_does_not_exist": (["train.seed=2001-02-30"], ["train.seed=2001-02-30", "not valid YAML"]),
    "nested_600_deep": (["net=" + "[" * 600 + "]" * 600], ["not valid YAML"]),
    "nested_100_deep": (["net=" + "[" * 100 + "]" * 100], ["override net", "levels deep"]),
    "into_a_value": (["train.steps.x=1"], ["train.steps.x", "not a section"]),
    "an_unknown_key": (["train.stpes=3"], ["train.stpes"]),
    "paths_empty": (["data.paths=[]"], ["data.paths"]),
    "paths_numbers": (["data.paths=[1, 2]"], ["data.paths"]),
    "a_data_path_that_names_nothing": (["data.paths=[/no/such/chunks]"], ["/no/such/chunks"]),
    "workers_above_the_chunk_count": (["data.workers=9", "data.paths=[{v4}]"], ["data.workers"]),
    "a_q_source_v5_records_lack": (["data.q_source=played", "loss.q_ratio=0.5", "data.paths=[{v5}]"],
                                   ["data.q_source=played", "V6+"]),
    "a_student_of_another_input_format": (["net.input_format=3"], ["net.input_format", "format 1"]),
    "teacher_that_names_nothing": (["teacher.nets=[/no/such/teacher.pb.gz]"], ["/no/such/teacher.pb.gz"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_recipe_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, data, case):
    make, overrides, fragments = BAD_FILES[case]
    text = make(data)
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    run = run_cli(capsys, ["train", "--config", path, f"train.run_dir={tmp_path / 'run'}", *overrides], timeout=30)
    assert_user_error(run, path, *fragments)
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_a_bad_override_is_one_line_naming_the_key(tmp_path, capsys, data, lc0_data, case):
    overrides, fragments = BAD_OVERRIDES[case]
    overrides = [o.format(v4=lc0_data / "v4-maia1100", v5=lc0_data / "v5-maia1100") for o in overrides]
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *QUICK, f"train.run_dir={tmp_path / 'run'}", *overrides],
                  timeout=30)
    assert_user_error(run, fragments[0], *fragments[1:])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_configs_that_are_not_files_are_refused_unread(tmp_path, capsys):
    fifo = make_fifo(tmp_path / "recipe.yaml")
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as handle:  # sparse: no disk
        handle.truncate(1 << 30)
    for path, fragment in ((fifo, "not a regular file"), (tmp_path, "not a regular file"), (huge, "bytes"),
                           (tmp_path / "missing.yaml", "cannot read")):
        run = run_cli(capsys, ["train", "--config", path], timeout=20)
        assert_user_error(run, path, fragment)


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, capsys, data):
    taken = tmp_path / "run"
    taken.write_text("not a folder")
    run = run_cli(capsys, ["train", f"data.paths=[{data}]", *QUICK, f"train.run_dir={taken}"])
    assert_user_error(run, taken)


# ---------------------------------------------------------------------------------------------- generated

_SECTIONS = {name: list(field.annotation.model_fields) if hasattr(field.annotation, "model_fields") else []
             for name, field in RunConfig.model_fields.items()}
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                     st.text(max_size=12),
                     st.sampled_from(["64x6", "8x1", "128", "auto", "cpu", "bogus", "sgd", ".nan"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                              max_size=3), max_leaves=6)


@st.composite
def _trees(draw):
    tree = {}
    for section in draw(st.lists(st.sampled_from([*_SECTIONS, "bogus"]), max_size=4, unique=True)):
        keys = _SECTIONS.get(section) or ["x"]
        tree[section] = draw(st.one_of(_values, st.dictionaries(st.sampled_from([*keys, "size", "junk"]), _values,
                                                                max_size=4)))
    return tree


def _check(path, call) -> RunConfig | None:
    """The contract: a RunConfig, or one Lc0DistillError line naming where the config came from."""
    try:
        with time_limit(10, f"load_config({path})"):
            return call()
    except Lc0DistillError as error:
        message = str(error)
        assert "\n" not in message and message.startswith((f"{path}: ", "command line: ", "override ")), message
        return None


_settings = settings(max_examples=60)


@_settings
@given(tree=_trees())
def test_generated_recipes_load_or_fail_with_one_line(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    config = _check(path, lambda: load_config(path))
    if config is not None:
        assert config.data.paths and math.isfinite(config.train.lr.lr)


@_settings
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_generated_bytes_load_or_fail_with_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "recipe.yaml"
    path.write_bytes(data)
    _check(path, lambda: load_config(path))


@_settings
@given(key=st.sampled_from(["train.steps", "train.lr.lr", "net.size", "net", "data.paths", "loss.q_ratio", "train",
                            "teacher.nets", "x.y.z", "train.device", "loss.temperature.start"]),
       value=st.text(max_size=20))
def test_generated_overrides_load_or_fail_with_one_line(key, value):
    _check("command line", lambda: load_config(None, ["data.paths=[x]", f"{key}={value}"]))


def test_a_key_that_is_a_line_break_is_named_escaped_on_one_line(tmp_path):
    """The example the fuzz test found on a fresh machine: a key under data: that is a newline gave two lines."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"data": {"\n": 0, "tab\there": 1}}))
    with pytest.raises(Lc0DistillError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and "\t" not in message
    assert "data.\\n: Extra inputs are not permitted" in message and "data.tab\\there" in message
