"""A run's whole configuration: one RunConfig loaded from YAML, with dotted overrides from the command line.

Every section is a frozen pydantic model with unknown keys rejected; each component receives only its own
section (the data layer its DataConfig, the net its NetConfig, ...). Defaults live in these models only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lc0distill.chunks.config import DataConfig
from lc0distill.distill.schedules import (
    KickstartWeightSchedule,
    LrSchedule,
    TeacherWeightSchedule,
    TemperatureSchedule,
)
from lc0distill.errors import Lc0DistillError
from lc0distill.lc0.weights import Encoding
from lc0distill.models.config import ATTENTION_PRESETS, Body, NetConfig, preset_sizes


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TeacherNetConfig(_Section):
    """One teacher.nets entry written as a mapping: the net and, for kickstarting, its own weight schedule."""

    path: str = Field(description="an lc0 .pb.gz net (weights or ONNX), an lc0distill checkpoint or an .onnx model")
    weight: KickstartWeightSchedule | None = Field(
        None, description="this teacher's weight lambda_k(t) (a number is a constant): the loss becomes the data "
                          "loss plus the sum over teachers of lambda_k(t) times each one's distillation loss")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]+$", description="the teacher's name in the logs "
                                                                             "(default: the file's stem)")

    @field_validator("weight", mode="before")
    @classmethod
    def _number_is_constant(cls, weight: Any) -> Any:
        return {"kind": "constant", "weight": weight} if isinstance(weight, (int, float)) and \
            not isinstance(weight, bool) else weight


class TeacherConfig(_Section):
    """Who teaches the student. No nets and no snapshot: the student learns from the data alone.

    Two forms. nets as paths (or entries without `weight`): one teacher, or an ensemble mixed with `weights`,
    whose share of the targets is loss.teacher_weight. nets as entries each with its own `weight` schedule
    (kickstarting, Schmitt et al. 2018): loss = data loss + sum_k lambda_k(t) * distillation loss of teacher k.
    """

    nets: list[str | TeacherNetConfig] = Field(
        default_factory=list, description="lc0 .pb.gz nets (weights or ONNX), lc0distill checkpoints or .onnx "
                                          "models; or entries {path, weight, name} with a weight per teacher")
    weights: list[float] = Field(default_factory=list, description="ensemble weights (default: equal)")
    snapshot_every: int = Field(0, ge=0, description="N > 0: a frozen copy of the student, refreshed every N steps")
    cache: str | None = Field(None, description="a folder made by `lc0distill teacher cache` with these nets: "
                                                "their outputs are read from it instead of computed each step")
    precision: Literal["float32", "bf16", "fp16"] = Field(
        "float32", description="the teacher's arithmetic on CUDA, whatever the student's train.amp (float32: "
                               "autocast off for the teacher)")

    @model_validator(mode="after")
    def _weights_match(self) -> "TeacherConfig":
        if self.cache and not self.nets:
            raise ValueError("teacher.cache needs teacher.nets: the nets the cache was made with (checked by hash)")
        if self.weights and len(self.weights) != len(self.nets):
            raise ValueError(f"teacher.weights has {len(self.weights)} entries for {len(self.nets)} teacher.nets")
        if self.nets and self.snapshot_every:
            raise ValueError("give teacher.nets or teacher.snapshot_every, not both")
        scheduled = [entry.weight is not None for entry in self.entries]
        if any(scheduled):
            if not all(scheduled):
                missing = [entry.path for entry in self.entries if entry.weight is None]
                raise ValueError(f"teacher.nets: give every entry its own weight, or none (no weight: "
                                 f"{', '.join(missing)})")
            if self.weights:
                raise ValueError("teacher.weights mixes an ensemble; with a weight per teacher.nets entry, leave "
                                 "it out (each teacher's weight is its entry's)")
            if self.cache:
                raise ValueError("teacher.cache holds the ensemble's mixed outputs; a weight per teacher needs each "
                                 "teacher's own: leave teacher.cache out (the teachers then run live)")
        given = [entry.name for entry in self.entries if entry.name]
        if len(set(given)) != len(given):
            raise ValueError(f"teacher.nets: two entries have the same name ({', '.join(given)})")
        return self

    @property
    def entries(self) -> list[TeacherNetConfig]:
        return [TeacherNetConfig(path=entry) if isinstance(entry, str) else entry for entry in self.nets]

    @property
    def paths(self) -> list[str]:
        return [entry.path for entry in self.entries]

    @property
    def names(self) -> list[str]:
        """Each teacher's name in logs and loss parts: its entry's name, or its file's stem (.pb.gz, .pt, ...),
        numbered (-2, -3, ...) where two files share a stem."""
        names: list[str] = []
        taken = {entry.name for entry in self.entries if entry.name}
        for entry in self.entries:
            name = entry.name or _stem(entry.path)
            if not entry.name:
                base, count = name, 1
                while name in taken or name in names:
                    count += 1
                    name = f"{base}-{count}"
            names.append(name)
        return names

    @property
    def per_teacher(self) -> bool:
        """True for the kickstarting form: a weight schedule per teacher."""
        return any(entry.weight is not None for entry in self.entries)

    @property
    def enabled(self) -> bool:
        return bool(self.nets) or self.snapshot_every > 0


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".pb.gz", ".onnx", ".pt", ".pb", ".gz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)


class LossConfig(_Section):
    """What the student is trained against, and how the parts are weighted.

    policy = (1 - a) * CE(data policy) + a * distill(teacher policy at temperature T)
    value  = (1 - a v) * value loss(q_ratio * q + (1 - q_ratio) * z) + a v * CE(teacher WDL), v = value_distill
    moves-left = (1 - a m) * Huber(data plies left) + a m * Huber(teacher's moves-left), m = moves_left_distill
    where a is the teacher weight at the step (0 without a teacher); a head the teacher lacks keeps the data's
    full weight. With a weight per teacher (kickstarting: teacher.nets entries with `weight`), the data parts
    keep their full weight and each teacher k adds
        lambda_k(t) * (policy_weight * distill_k + value_distill * value_weight * CE(teacher k's WDL) + ...).
    """

    @model_validator(mode="before")
    @classmethod
    def _old_kl_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"t_squared", "scale_student"} & set(data):
            raise ValueError("loss.t_squared and loss.scale_student are replaced by loss.kl_form: hinton (student "
                             "and teacher at T, the KL times T^2) or lczero (the teacher at T only, no T^2)")
        return data

    policy_weight: float = Field(1.0, ge=0.0)
    value_weight: float = Field(1.0, ge=0.0)
    moves_left_weight: float = Field(1.0, ge=0.0, description="used when the student has a moves-left head")
    q_ratio: float = Field(0.0, ge=0.0, le=1.0, description="value target = q_ratio * q + (1 - q_ratio) * z")
    search_policy_temperature: float = Field(
        1.0, gt=0.0, le=10.0, description="the data's policy target as p^(1/T), renormalised over the moves it "
                                          "gives a share: T < 1 sharpens a search's visits towards the move it "
                                          "chose (1: as recorded)")
    value_loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    mask_illegal: bool = Field(True, description="softmax over legal moves only")
    policy_distill: Literal["kl", "nll", "mse"] = Field("kl", description="kl: KL at temperature T; nll: the "
                                                        "teacher's best move; mse: centred logits")
    kl_form: Literal["hinton", "lczero"] = Field(
        "hinton", description="hinton: KL(teacher_T || student_T) * T^2 (Hinton et al. 2015); lczero: the teacher "
                              "at T only, the student at 1, no T^2 (Cyanogenoid's distill branch; T < 1 is Rusu "
                              "et al.'s sharp teacher)")
    value_distill: float = Field(1.0, ge=0.0, le=1.0, description="the teacher's share of the value target, as a "
                                 "fraction of its weight a: a * value_distill (the data keeps the rest)")
    moves_left_distill: float = Field(0.0, ge=0.0, le=1.0, description="the teacher's share of the moves-left "
                                      "target, as a fraction of its weight a (where both nets have the head)")
    teacher_weight: TeacherWeightSchedule = Field(default_factory=TeacherWeightSchedule)
    temperature: TemperatureSchedule = Field(default_factory=TemperatureSchedule)


# lc0's longest runs train a few million steps: a billion is a typo (or 1e30), not a plan
MAX_STEPS = 1_000_000_000


class TrainConfig(_Section):
    steps: int = Field(1000, gt=0, le=MAX_STEPS, description="optimizer steps")
    batch_norm_momentum: float = Field(0.01, ge=0.0, le=1.0, description="weight of each batch in the running "
                                       "batch-norm statistics (lczero-training's Keras momentum 0.99 is 0.01 here); "
                                       "0 freezes them, so a net fine-tuned at lr 0 stays exactly the net it started "
                                       "from")
    freeze_batch_norm: bool = Field(False, description="batch norm normalises with its running statistics and "
                                    "keeps them (its scales and offsets still train): for a finished net trained "
                                    "further on other data, whose statistics were measured on its own")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd: Nesterov momentum, lc0's default")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    lr: LrSchedule = Field(default_factory=LrSchedule)
    grad_clip: float = Field(10.0, ge=0.0, description="max gradient norm; 0 turns clipping off")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision on CUDA")
    swa_every: int = Field(0, ge=0, description="N > 0: average the weights every N steps (SWA)")
    swa_max_models: int = Field(10, gt=0, description="SWA weights the newest model at least 1/N")
    threads: int = Field(0, ge=0, description="CPU threads of the training process (PyTorch and ONNX teachers); "
                                              "0: the libraries' default, all cores")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the student")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N")
    seed: int = 0
    deterministic: bool = Field(False, description="deterministic kernels only (torch.use_deterministic_algorithms, "
                                "cuDNN's): on a GPU, a run resumed from its checkpoint then equals an unbroken one "
                                "bit for bit; somewhat slower")
    log_every: int = Field(50, gt=0)
    eval_every: int = Field(500, ge=0, description="0: only at the end")
    eval_positions: int = Field(20000, gt=0, description="held-out positions per evaluation")
    keep_best: bool = Field(False, description="keep the net of the evaluation with the lowest held-out policy loss "
                                               "as best.pt in run_dir (its step and metrics in best.json): "
                                               "early stopping on a validation set given as data.test_paths")
    checkpoint_every: int = Field(500, gt=0)
    max_skipped_steps: int = Field(10, ge=0, description="steps with a non-finite loss or gradient are skipped; "
                                                         "more than this many within skip_window batches stop the run")
    skip_window: int = Field(1000, gt=0, description="the window (in batches) max_skipped_steps counts over")
    sync_every: int = Field(50, gt=0, description="read the non-finite guard's flags on the host every N steps "
                            "(and before each log, evaluation and checkpoint): between reads the device never "
                            "waits for the host; 1 reads them every step")

    @model_validator(mode="after")
    def _guard_can_stop(self) -> "TrainConfig":
        if self.max_skipped_steps >= self.skip_window:  # the count could never pass the limit: no guard at all
            raise ValueError(f"max_skipped_steps ({self.max_skipped_steps}) must be below skip_window "
                             f"({self.skip_window})")
        return self
    resume_data: Literal["auto", "replay", "reseed"] = Field(
        "auto", description="on resume, replay: re-read the data stream to the batch reached (exact, but the "
                            "cost grows with the data consumed); reseed: start a new stream at once (nothing "
                            "lost, another order); auto: replay up to 20M records to read, else reseed")
    run_dir: str = Field("runs/run", description="checkpoints, logs, the resolved config and the final net")


class ExportConfig(_Section):
    """What the run writes when it ends, next to its checkpoints."""

    lc0: bool = Field(True, description="write the final net as an lc0 .pb.gz")
    encoding: Encoding = Encoding.LINEAR16


class NetInitConfig(_Section):
    """Where the student's weights come from. Written in recipes inside `net:` (net.init_from,
    net.init_from_partial), kept apart here so that `net` stays the description of the net itself."""

    init_from: str | None = Field(None, description="an lc0 .pb.gz, an lc0distill .pt or checkpoint: start from its "
                                                    "weights (optimizer and schedules fresh)")
    init_from_partial: bool = Field(False, description="copy the layers whose shapes match and initialise the "
                                                       "others fresh, instead of refusing another architecture")


NET_INIT_KEYS = tuple(NetInitConfig.model_fields)


class RunConfig(_Section):
    data: DataConfig
    net: NetConfig = Field(default_factory=NetConfig)
    net_init: NetInitConfig = Field(default_factory=NetInitConfig, description="net.init_from and "
                                    "net.init_from_partial, as recipes write them")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _ensemble_cache_at_t1(self) -> "RunConfig":
        temperature = self.loss.temperature
        tempered = temperature.start != 1.0 or (temperature.kind == "linear" and temperature.end != 1.0)
        if self.teacher.cache and len(self.teacher.nets) > 1 and tempered and self.loss.policy_distill == "kl":
            raise ValueError("teacher.cache holds the ensemble's policy mixed at temperature 1, and an ensemble is "
                             "tempered per teacher (the mean of each net's softmax(logits / T)): keep "
                             "loss.temperature at 1, or leave teacher.cache out (the teachers then run live)")
        return self

    @model_validator(mode="after")
    def _one_teacher_weight_form(self) -> "RunConfig":
        # (the default is accepted: a run's own config.yaml writes every field out)
        if self.teacher.per_teacher and self.loss.teacher_weight != TeacherWeightSchedule():
            raise ValueError("loss.teacher_weight is the single-schedule form; the teacher.nets entries carry a "
                             "weight each: leave loss.teacher_weight out")
        return self

    @model_validator(mode="after")
    def _attention_training_defaults(self) -> "RunConfig":
        """An attention body trains by default as transformers usually are: AdamW with decoupled weight decay
        0.01 at lr 1e-3 after 250 warmup steps (SE-ResNets keep lc0's SGD). Only what the recipe leaves unsaid
        changes."""
        train = self.train
        if self.net.body != Body.ATTENTION or "optimizer" in train.model_fields_set:
            return self
        lr = train.lr
        lr_given = "lr" in train.model_fields_set
        new_lr = lr.model_copy(update={**({} if lr_given and "lr" in lr.model_fields_set else {"lr": 1e-3}),
                                       **({} if lr_given and "warmup_steps" in lr.model_fields_set
                                          else {"warmup_steps": 250})})
        update = {"optimizer": "adamw", "lr": new_lr}
        if "weight_decay" not in train.model_fields_set:
            update["weight_decay"] = 0.01
        object.__setattr__(self, "train", train.model_copy(update=update))
        return self

    @model_validator(mode="before")
    @classmethod
    def _net_preset(cls, data: Any) -> Any:
        """`net: {size: 128x10, ...}` is the preset plus the other keys given (validated with the net);
        net.init_from and net.init_from_partial move to net_init."""
        if isinstance(data, dict) and isinstance(data.get("net"), dict) and set(NET_INIT_KEYS) & set(data["net"]):
            net = dict(data["net"])
            init = {key: net.pop(key) for key in NET_INIT_KEYS if key in net}
            given = data.get("net_init") or {}
            if not isinstance(given, dict):
                raise ValueError("net_init must be a section")
            data = {**data, "net": net, "net_init": {**given, **init}}
            if not net:  # only init_from given: the net is init_from's own (train.py reads it from the file)
                data.pop("net")
        if isinstance(data, dict) and isinstance(data.get("net"), dict) and "size" in data["net"]:
            net = dict(data["net"])
            size = net.pop("size")
            try:
                sizes = preset_sizes(size)
            except ValueError:
                raise ValueError(f"net.size {size!r} is not FILTERSxBLOCKS, e.g. 128x10") from None
            if net.get("body") == Body.ATTENTION.value and str(size).strip() in ATTENTION_PRESETS:
                sizes = {**sizes, **ATTENTION_PRESETS[str(size).strip()]}  # heads, smolgen, policy widths
            data = {**data, "net": {**sizes, **net}}
        return data


MAX_CONFIG_BYTES = 1 << 20  # a recipe is a page of YAML
MAX_CONFIG_DEPTH = 16  # sections, keys, lists: a recipe is 4 levels deep


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    keys = dotted.split(".")
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise Lc0DistillError(f"override {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(tree: dict, overrides: Sequence[str]) -> dict:
    """`train.lr=0.02`-style overrides; values are YAML (numbers, lists, booleans, strings)."""
    tree = yaml.safe_load(yaml.safe_dump(tree)) or {}  # a deep copy
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise Lc0DistillError(f"override {item!r} is not KEY=VALUE (for example train.lr=0.02)")
        try:
            value = _load_yaml(text)
        except yaml.YAMLError as error:
            raise Lc0DistillError(f"override {item!r}: the value is not valid YAML ({' '.join(str(error).split())}); "
                                  "quote strings with special characters") from None
        if _deeper_than(value, MAX_CONFIG_DEPTH):
            raise Lc0DistillError(f"override {key.strip()}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        _set_dotted(tree, key.strip(), value)
    return tree


def _deeper_than(node: Any, levels: int, seen: dict | None = None) -> bool:
    """True when `node` nests lists and mappings more than `levels` deep. Shared nodes (YAML aliases: a
    "billion laughs" file) are visited once for each depth they are met at, not once per reference."""
    if not isinstance(node, (dict, list, tuple, set)):
        return False
    if levels == 0:
        return True
    seen = {} if seen is None else seen
    if seen.get(id(node), -1) >= levels:
        return False
    seen[id(node)] = levels
    return any(_deeper_than(child, levels - 1, seen) for child in (node.values() if isinstance(node, dict) else node))


def _load_yaml(text: str) -> Any:
    """yaml.safe_load, every failure a YAMLError: PyYAML's constructors raise ValueError and others for some
    scalars (`2001-02-30`, `!!int x`), and nesting a few hundred levels deep exhausts Python's recursion."""
    try:
        return yaml.safe_load(text)
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as error:
        raise yaml.YAMLError(f"{type(error).__name__}: {error}") from None


def _printable(text: str) -> str:
    """Keys and messages as one line: a key may be any YAML string, line breaks and control characters too."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _format_errors(error: ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(_printable(str(part)) for part in problem["loc"])
        message = _printable(problem["msg"].removeprefix("Value error, "))
        lines.append(f"{key}: {message}" if key else message)
    return f"{source}: invalid configuration: " + "; ".join(lines)


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = (), validate=RunConfig) -> RunConfig:
    """Read a YAML recipe (or start from nothing), apply the overrides and validate every key."""
    tree: dict = {}
    source = str(path) if path else "command line"
    if path:
        try:
            tree = _load_yaml(_read_config_text(Path(path))) or {}
        except OSError as error:
            raise Lc0DistillError(f"{path}: cannot read the config ({error.strerror or error})") from None
        except UnicodeDecodeError as error:
            raise Lc0DistillError(f"{path}: not a text file in UTF-8 (byte {error.start}: "
                                  f"{error.object[error.start:error.start + 1]!r})") from None
        except yaml.YAMLError as error:
            raise Lc0DistillError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
        if not isinstance(tree, dict):
            raise Lc0DistillError(f"{path}: a config is a mapping of sections (data, net, teacher, ...)")
        if _deeper_than(tree, MAX_CONFIG_DEPTH):
            raise Lc0DistillError(f"{path}: nested more than {MAX_CONFIG_DEPTH} levels deep: not a config")
    tree = apply_overrides(tree, overrides)
    try:
        return validate.model_validate(tree)
    except ValidationError as error:
        raise Lc0DistillError(_format_errors(error, source)) from None


def _read_config_text(path: Path) -> str:
    """A config file's text: FIFOs and devices (which may never end) and files past MAX_CONFIG_BYTES are refused
    before they are read."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise Lc0DistillError(f"{path}: not a regular file (a folder, FIFO or device): not read as a config")
    if info.st_size > MAX_CONFIG_BYTES:
        raise Lc0DistillError(f"{path}: {info.st_size:,} bytes is not a config (at most {MAX_CONFIG_BYTES:,})")
    return path.read_text(encoding="utf-8")


def dump_config(config: BaseModel) -> str:
    tree = config.model_dump(mode="json")
    init = tree.pop("net_init", {})  # written back where recipes have it: net.init_from
    if init.get("init_from") is not None:
        tree["net"] = {**tree["net"], **init}
    return yaml.safe_dump(tree, sort_keys=False)

