"""Teacher outputs computed once: a folder of what distillation reads from a teacher, joined to the records.

A live teacher costs its whole forward pass on every batch of every epoch. `teacher cache` runs the teacher
(or an ensemble) once over the data and stores, per record:
- the policy as log-probabilities over the record's legal moves (the losses only ever read the teacher's
  policy over legal moves, and a log-softmax differs from the logits there by a constant per row, so every
  distillation loss (KL at any temperature, the teacher's best move, centred logit MSE) is unchanged);
  for an ensemble, the mixture, as the live ensemble gives it;
- the WDL probabilities and moves-left, where the teacher has those heads;
- the index of the best legal move (taken from the float32 logits: 16-bit log-probabilities could tie or
  swap two near-equal moves, and the teacher's-best-move loss and teacher agreement read it);
- a fingerprint of the planes (chunks.packed.position_fingerprints), so a cached row is joined to the record
  it was computed for and no other.

Layout of DIR: `manifest.json` (the teachers with their sha256 and weights, the chunks in order, the sampling,
the dtype and the shards) and `shard-NNNNN.npz.zst` files (numpy arrays, no pickles, zstandard-compressed):
chunk (P,) u4, record (P,) u4, fingerprint (P,) u8, legal_count (P,) u2, best (P,) u2, logp (sum of legal counts,)
f2 or f4, wdl (P, 3) f4 and mlh (P,) f4 when present.

At training (`teacher.cache: DIR`), a run's teacher.nets must be the cache's (same bytes, same weights): a
cache made by another teacher is an error naming both. A position the cache lacks, or whose planes differ
from the cached ones, is an error naming the chunk and the record: the data changed since the cache was
made. A cache made with a sampling rate holds only the records that sampling kept; the loader then reads
exactly those records (data.sample_rate must equal the cache's).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from lc0distill.chunks.batch import Batch, to_device
from lc0distill.chunks.sources import ChunkSource
from lc0distill.distill.teachers import TeacherOutput
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import file_sha256, read_manifest_json, write_atomic

CACHE_FORMAT = "lc0distill-teacher-cache"
CACHE_VERSION = 1
MANIFEST = "manifest.json"
ILLEGAL_FILL = -1.0e4  # what the dense policy holds at illegal moves: finite, and never read by a loss
FP16_TOLERANCE = 1e-3  # float16 log-probabilities only when the losses move by less than this
MAX_MANIFEST_BYTES = 1 << 30


@dataclass(frozen=True)
class TeacherIdentity:
    path: str
    sha256: str
    weight: float

    def to_json(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "weight": self.weight}


def teacher_identities(paths: Sequence[str], weights: Sequence[float] | None) -> list[TeacherIdentity]:
    """Who teaches: each net's file hash and its normalised ensemble weight (how the live ensemble mixes)."""
    raw = list(weights) if weights else [1.0] * len(paths)
    total = sum(raw)
    return [TeacherIdentity(str(p), file_sha256(p), round(w / total, 12)) for p, w in zip(paths, raw)]


def chunk_key(source: ChunkSource) -> str:
    """Where a chunk is, independent of how a command named it (relative paths, @lists, globs)."""
    path = os.path.realpath(source.path)
    return path if source.member is None else f"{path}:{source.member}"


def chunk_bytes(source: ChunkSource) -> int:
    """The chunk's size as stored: a change of the data that a run can see before reading it."""
    return int(source.size) if source.size is not None else os.stat(source.path).st_size


def _short_key(key: str) -> str:
    """The chunk's file name (and member): what still matches after the data folder moved."""
    path, sep, member = key.partition(".tar:")
    return (os.path.basename(path) + sep + member) if sep else os.path.basename(key)


# ----------------------------------------------------------------------------------------------- writing


def legal_log_probs(policy_logits: torch.Tensor, legal: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 log-softmax over each row's legal moves in ascending index order, (B,) legal counts)."""
    log_p = policy_logits.float().masked_fill(~legal, float("-inf")).log_softmax(dim=1)  # (B, 1858)
    return log_p[legal].cpu().numpy(), legal.sum(dim=1).cpu().numpy().astype(np.uint16)


def fp16_loss_error(logp32: np.ndarray, counts: np.ndarray) -> float:
    """The largest change float16 log-probabilities make to a batch-mean policy loss: the cross-entropy
    against a uniform student and against the teacher itself (the two ends of what a student is), over these
    positions."""
    logp16 = logp32.astype(np.float16).astype(np.float64)
    logp32 = logp32.astype(np.float64)
    p32, p16 = np.exp(logp32), np.exp(logp16)
    rows = np.repeat(np.arange(len(counts)), counts)
    uniform = -np.log(np.repeat(counts.astype(np.float64), counts))
    errors = []
    for student in (uniform, logp32):
        ce32 = np.bincount(rows, weights=-p32 * student, minlength=len(counts))
        ce16 = np.bincount(rows, weights=-p16 * student, minlength=len(counts))
        errors.append(abs(ce16.mean() - ce32.mean()))
    return float(max(errors))


class ShardWriter:
    """Collects cached rows and writes them as zstandard-compressed shards of about `shard_positions`."""

    def __init__(self, out: Path, dtype: str, shard_positions: int):
        self.out, self.dtype, self.shard_positions = out, dtype, shard_positions
        self.parts: list[dict[str, np.ndarray]] = []
        self.pending = 0
        self.shards: list[dict] = []

    def add(self, rows: dict[str, np.ndarray]) -> None:
        self.parts.append(rows)
        self.pending += len(rows["chunk"])
        if self.pending >= self.shard_positions:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        arrays = {name: np.concatenate([part[name] for part in self.parts]) for name in self.parts[0]}
        arrays["logp"] = arrays["logp"].astype(np.float16 if self.dtype == "float16" else np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        import zstandard

        data = zstandard.ZstdCompressor(level=3).compress(buffer.getvalue())
        name = f"shard-{len(self.shards):05d}.npz.zst"
        write_atomic(self.out / name, data)
        self.shards.append({"file": name, "positions": int(len(arrays["chunk"])), "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
        self.parts, self.pending = [], 0


def build_cache(teacher: Callable[[torch.Tensor], TeacherOutput], batches: Iterable[Batch],
                sources: Sequence[ChunkSource], identities: Sequence[TeacherIdentity], out: Path, *,
                input_format: int, sample_rate: int, seed: int, dtype: str = "auto",
                shard_positions: int = 1 << 20, on_batch: Callable[[int], None] | None = None) -> dict:
    """Run `teacher` over `batches` (every record of `sources` a sampling keeps, read once) and write the
    cache in `out`; the manifest, as written. dtype "auto": float16 when fp16_loss_error stays within
    FP16_TOLERANCE on the first batches, else float32."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("shard-*.npz.zst"):  # a cache folder is rewritten whole, never mixed
        stale.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    writer = ShardWriter(out, "float32" if dtype == "auto" else dtype, shard_positions)
    checked: list[tuple[np.ndarray, np.ndarray]] = []
    fp16_error = None
    heads = {"wdl": None, "mlh": None}
    positions = 0
    for batch in batches:
        with torch.no_grad():
            output = teacher(batch.planes)
        logp, counts = legal_log_probs(output.policy_logits, batch.legal)
        rows = {"chunk": batch.chunk_index.cpu().numpy().astype(np.uint32),
                "record": batch.record_index.cpu().numpy().astype(np.uint32),
                "fingerprint": batch.fingerprint.cpu().numpy().view(np.uint64), "legal_count": counts, "logp": logp,
                "best": output.policy_logits.float().masked_fill(~batch.legal, float("-inf")).argmax(dim=1)
                .cpu().numpy().astype(np.uint16)}
        for head, tensor in (("wdl", output.wdl), ("mlh", output.moves_left)):
            heads[head] = tensor is not None if heads[head] is None else heads[head]
            if tensor is not None:
                rows[head] = tensor.float().cpu().numpy()
        if dtype == "auto" and fp16_error is None:
            checked.append((logp, counts))
            if sum(len(c) for _, c in checked) >= 4096:
                fp16_error = fp16_loss_error(np.concatenate([l for l, _ in checked]),
                                             np.concatenate([c for _, c in checked]))
                writer.dtype = "float16" if fp16_error <= FP16_TOLERANCE else "float32"
        writer.add(rows)
        positions += len(counts)
        if on_batch:
            on_batch(len(counts))
    if dtype == "auto" and fp16_error is None and checked:
        fp16_error = fp16_loss_error(np.concatenate([l for l, _ in checked]), np.concatenate([c for _, c in checked]))
        writer.dtype = "float16" if fp16_error <= FP16_TOLERANCE else "float32"
    writer.flush()
    if positions == 0:
        raise Lc0DistillError("teacher cache: the data gave no position to cache")
    manifest = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "teachers": [t.to_json() for t in identities],
        "input_format": input_format, "dtype": writer.dtype, "fp16_loss_error": fp16_error,
        "sample_rate": sample_rate, "seed": seed, "heads": {k: bool(v) for k, v in heads.items()},
        "positions": positions, "chunks": [chunk_key(s) for s in sources],
        "chunk_bytes": [chunk_bytes(s) for s in sources], "shards": writer.shards,
    }
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


# ----------------------------------------------------------------------------------------------- reading


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise Lc0DistillError(f"{folder}: not a teacher cache (no {MANIFEST}; make one with lc0distill teacher "
                              "cache)")
    manifest = read_manifest_json(path, what="teacher cache manifest", max_bytes=MAX_MANIFEST_BYTES,
                                  form=CACHE_FORMAT, version=CACHE_VERSION, remedy="make the cache again")
    return manifest


def _read_shard(folder: Path, entry: dict) -> dict[str, np.ndarray]:
    import zstandard

    path = folder / str(entry["file"])
    data = path.read_bytes() if path.is_file() else None
    if data is None or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise Lc0DistillError(f"{path}: {'missing' if data is None else 'damaged (its sha256 differs from the manifest)'}"
                              ": make the cache again")
    # a shard's arrays: about 2 bytes per legal move and 28 per position; refuse to inflate far beyond that
    limit = 64 * len(data) + (1 << 20)
    raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit) if data else b""
    with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


class TeacherCache:
    """A cache loaded into memory: rows sorted by (chunk, record) for vectorised joins."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = read_manifest(folder)
        shards = [_read_shard(self.folder, entry) for entry in self.manifest["shards"]]
        if not shards:
            raise Lc0DistillError(f"{folder}: the cache holds no shard")
        columns = {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}
        self.chunk_keys: list[str] = list(self.manifest["chunks"])
        keys = columns["chunk"].astype(np.int64) << 32 | columns["record"].astype(np.int64)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]
        self.fingerprint = columns["fingerprint"]
        self.legal_count = columns["legal_count"].astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.legal_count)])
        self.logp = columns["logp"]
        self.wdl = columns.get("wdl")
        self.mlh = columns.get("mlh")
        self.chunk, self.record = columns["chunk"], columns["record"]
        self.best = columns["best"].astype(np.int64)
        if self.offsets[-1] != len(self.logp):
            raise Lc0DistillError(f"{folder}: the shards' policies do not add up: make the cache again")
        self._by_key = {key: i for i, key in enumerate(self.chunk_keys)}
        short: dict[str, list[int]] = {}
        for i, key in enumerate(self.chunk_keys):
            short.setdefault(_short_key(key), []).append(i)
        self._by_short = {k: v[0] for k, v in short.items() if len(v) == 1}

    @property
    def positions(self) -> int:
        return len(self.order)

    def check_teachers(self, identities: Sequence[TeacherIdentity]) -> None:
        """The run's teachers are the cache's, by file hash and ensemble weight."""
        cached = [(t["sha256"], round(float(t["weight"]), 9)) for t in self.manifest["teachers"]]
        given = [(t.sha256, round(t.weight, 9)) for t in identities]
        if cached != given:
            def names(items):
                return ", ".join(f"{t['path'] if isinstance(t, dict) else t.path} (sha256 "
                                 f"{(t['sha256'] if isinstance(t, dict) else t.sha256)[:12]}, weight "
                                 f"{t['weight'] if isinstance(t, dict) else t.weight:g})" for t in items)
            raise Lc0DistillError(f"teacher cache {self.folder} was made by {names(self.manifest['teachers'])}, "
                                  f"but the run's teacher is {names(identities)}: make the cache again with "
                                  "lc0distill teacher cache, or name the cache's teachers")

    def chunk_id(self, source: ChunkSource) -> int:
        """The cache's number for this chunk, -1 when the cache does not have it."""
        key = chunk_key(source)
        if key in self._by_key:
            return self._by_key[key]
        return self._by_short.get(_short_key(key), -1)

    def records_of(self, chunk: int) -> np.ndarray:
        """The record numbers cached for a chunk, ascending."""
        low, high = np.searchsorted(self.sorted_keys, [chunk << 32, (chunk + 1) << 32])
        return (self.sorted_keys[low:high] & 0xFFFFFFFF).astype(np.uint32)

    def bind(self, sources: Sequence[ChunkSource]) -> "BoundCache":
        return BoundCache(self, list(sources))


class BoundCache:
    """The cache joined to one loader's sources: called with a Batch, gives the teacher's outputs for it."""

    def __init__(self, cache: TeacherCache, sources: list[ChunkSource]):
        self.cache = cache
        self.sources = sources
        self.ids = np.array([cache.chunk_id(s) for s in sources], dtype=np.int64)

    def check_sizes(self) -> None:
        """Chunks whose size differs from the cached one's: changed since (the fingerprints catch the rest)."""
        sizes = self.cache.manifest.get("chunk_bytes", [])
        for source, chunk in zip(self.sources, self.ids):
            if chunk >= 0 and chunk < len(sizes) and chunk_bytes(source) != sizes[chunk]:
                raise Lc0DistillError(f"{source.name}: {chunk_bytes(source):,} bytes, {sizes[chunk]:,} when the "
                                      f"teacher cache {self.cache.folder} was made: the data changed since the "
                                      "cache was made: make the cache again")

    @property
    def missing(self) -> list[str]:
        return [s.name for s, i in zip(self.sources, self.ids) if i < 0]

    def keep_records(self) -> dict[int, np.ndarray]:
        """Per loader source number, the records the cache holds (for a cache made with sampling)."""
        return {i: self.cache.records_of(int(c)) for i, c in enumerate(self.ids) if c >= 0}

    def rows(self, batch: Batch) -> np.ndarray:
        """The cache's row of each position of the batch; an error naming the first that does not match."""
        cache = self.cache
        source = batch.chunk_index.cpu().numpy()
        record = batch.record_index.cpu().numpy()
        chunk = self.ids[source]
        keys = chunk << 32 | record
        where = np.minimum(np.searchsorted(cache.sorted_keys, keys), len(cache.sorted_keys) - 1)
        found = (chunk >= 0) & (cache.sorted_keys[where] == keys)
        rows = cache.order[where]
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            raise Lc0DistillError(f"{self.sources[source[i]].name}: record {record[i]} is not in the teacher cache "
                                  f"{cache.folder} (made from other data or another sampling): make the cache "
                                  "again for this data")
        fingerprints = batch.fingerprint.cpu().numpy().view(np.uint64)
        counts = (batch.legal_count if batch.legal_count is not None else batch.legal.sum(dim=1)).cpu().numpy()
        bad = (cache.fingerprint[rows] != fingerprints) | (cache.legal_count[rows] != counts)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise Lc0DistillError(f"{self.sources[source[i]].name}: record {record[i]} is not the position the "
                                  f"teacher cache {cache.folder} holds for it (the data changed since the cache "
                                  "was made): make the cache again")
        return rows

    def __call__(self, batch: Batch) -> TeacherOutput:
        cache = self.cache
        rows = self.rows(batch)
        counts = cache.legal_count[rows]
        starts = cache.offsets[rows]
        ends = np.cumsum(counts)
        flat = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts) + np.repeat(starts, counts)
        device = batch.legal.device
        policy = torch.full(batch.legal.shape, ILLEGAL_FILL, dtype=torch.float32, device=device)  # (B, 1858)
        logp = to_device(torch.from_numpy(cache.logp[flat].astype(np.float32)), device)
        if batch.legal_flat is not None:  # indices from the host: a boolean mask would make the device count them
            policy.view(-1)[to_device(batch.legal_flat, device)] = logp
        else:
            policy[batch.legal] = logp
        wdl = to_device(torch.from_numpy(cache.wdl[rows].astype(np.float32)), device) if cache.wdl is not None else None
        mlh = to_device(torch.from_numpy(cache.mlh[rows].astype(np.float32)), device) if cache.mlh is not None else None
        best = to_device(torch.from_numpy(cache.best[rows]), device)
        return TeacherOutput(policy, wdl, mlh, best)


@dataclass
class RunCache:
    """A cache opened for a run: the training join, the held-out join (None: the live teacher evaluates the
    held-out data) and, for a sampled cache, the records the training loader reads."""

    train: BoundCache
    test: BoundCache | None
    keep: dict[int, np.ndarray] | None


def open_for_run(folder: str, nets: Sequence[str], weights: Sequence[float] | None, sample_rate: int,
                 input_format: int, train_sources: Sequence[ChunkSource],
                 test_sources: Sequence[ChunkSource]) -> RunCache:
    """Open the cache for a run whose teachers are `nets`; every check that it is this run's cache."""
    cache = TeacherCache(folder)
    cache.check_teachers(teacher_identities(nets, weights))
    if cache.manifest["input_format"] != input_format:
        raise Lc0DistillError(f"teacher cache {folder} holds input format {cache.manifest['input_format']} "
                              f"positions, the student reads {input_format}")
    train = cache.bind(train_sources)
    test = cache.bind(test_sources)
    for bound in (train, test):
        bound.check_sizes()
    if train.missing:
        raise Lc0DistillError(f"teacher cache {folder}: {len(train.missing)} of the {len(train_sources)} training "
                              f"chunks are not in it (first: {train.missing[0]}): make the cache for this data")
    cached_rate = int(cache.manifest["sample_rate"])
    keep = None
    if cached_rate > 1:
        if sample_rate != cached_rate:
            raise Lc0DistillError(f"teacher cache {folder} holds the records a sampling of 1 in {cached_rate} "
                                  f"kept, but data.sample_rate is {sample_rate}: set it to {cached_rate} (the "
                                  "loader then reads exactly the cached records) or make the cache again")
        keep = train.keep_records()
    return RunCache(train, test if cached_rate == 1 and not test.missing else None, keep)


BoundCache.joins_batches = True  # teachers.teach passes it the batch, not the planes
