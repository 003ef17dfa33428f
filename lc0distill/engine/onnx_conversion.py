"""lc0 nets that lc0distill does not build in PyTorch (attention bodies, attention policy heads with encoder
layers) teach and evaluate through onnxruntime, converted once by the lc0 engine's own `leela2onnx`.

The converted model is cached beside the net as NET.lc0-<hash>.onnx, the hash being the first 16 hex digits
of the SHA-256 of the .pb.gz's bytes, so an edited or replaced net is converted again and never meets a stale
model; where the net's folder is not writable, the cache folder (~/.cache/lc0distill/onnx) holds it.
Without the engine, the error says how to convert the net by hand.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lc0distill.engine.binary import leela2onnx
from lc0distill.engine.evaluation import Lc0Refused
from lc0distill.engine.locate import INSTALL_COMMAND, EngineNotFound, cache_dir, find_engine
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import file_sha256

HASH_DIGITS = 16


def net_hash(path: str | os.PathLike) -> str:
    return file_sha256(path)[:HASH_DIGITS]


def _candidates(path: Path, key: str) -> list[Path]:
    name = f"{path.name}.lc0-{key}.onnx"
    return [path.with_name(name), cache_dir().parent / "onnx" / name]


def converted_onnx(path: str | os.PathLike, why: str) -> Path:
    """The ONNX model lc0's leela2onnx makes of the .pb.gz at `path` (cached; see the module docstring).
    `why` says what kind of net it is, for the error when no engine is there to convert it."""
    path = Path(path)
    places = _candidates(path, net_hash(path))
    for place in places:
        if place.is_file() and place.stat().st_size > 0:
            return place
    try:
        binary = find_engine()
    except EngineNotFound as error:
        raise Lc0DistillError(
            f"{path}: {why}: lc0distill runs it through ONNX, converted by the lc0 engine, and {error}. Or "
            f"convert it yourself: lc0 leela2onnx --input={path} --output={path.with_suffix('').with_suffix('')}"
            f".onnx, and give that .onnx file instead") from None
    for place in places:
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=place.parent, prefix=f".{place.name}.", suffix=".tmp")
        except OSError:
            continue  # the net's folder is read-only: the cache folder then
        os.close(handle)
        try:
            leela2onnx(binary, path, temporary)
            os.replace(temporary, place)  # whole or not at all
        except Lc0Refused as error:
            raise Lc0DistillError(f"{path}: {why}, and the lc0 engine cannot convert it: {error}") from None
        finally:
            Path(temporary).unlink(missing_ok=True)
        return place
    raise Lc0DistillError(f"{path}: cannot write its ONNX conversion beside it or in {places[-1].parent}")
