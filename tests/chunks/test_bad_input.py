"""Bad input the chunk reader and `lc0distill data inspect` must turn into one clear error, and the good
paths through the same machinery (tar archives, raw chunks, multi-member gzip).

Every file is built in tmp_path from the bytes of real chunks written by lc0 (../shared/lc0-data relative
to the project root; the tests are skipped when that folder is absent). Library errors are `ChunkError`s
naming the file, and the record and field where one is involved; the CLI prints one line
`lc0distill: error: ...` on stderr, no traceback, and exits with 2.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lc0distill.chunks.layouts import RECORD_SIZES, V5_DTYPE, V6_DTYPE
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import ChunkSource, find_chunks
from lc0distill.cli import main
from lc0distill.errors import ChunkError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA = PROJECT_ROOT.parent / "shared" / "lc0-data"

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real lc0 chunks not found: {DATA} (../shared/lc0-data from the project root) is absent"
)

V6_DIR = DATA / "v6-fmt1-maia1900"
V6_FILE = V6_DIR / "game_000000.gz"
V6_OTHER_FILE = V6_DIR / "game_000002.gz"
V5_FILE = DATA / "v5-maia1100" / "game_000000.gz"
V4_FILE = DATA / "v4-maia1100" / "game_000000.gz"

V4_SIZE, V5_SIZE, V6_SIZE = RECORD_SIZES[4], RECORD_SIZES[5], RECORD_SIZES[6]
ERROR_PREFIX = "lc0distill: error: "


# ---------------------------------------------------------------------------------------------- helpers


def payload(path: Path) -> bytes:
    """The decompressed bytes of a real lc0 chunk."""
    return gzip.decompress(path.read_bytes())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_gz(tmp_path: Path, name: str, raw: bytes) -> Path:
    return write(tmp_path, name, gzip.compress(raw, compresslevel=1))


def set_field(raw: bytes, record: int, size: int, dtype: np.dtype, field: str, value) -> bytes:
    """`raw` with one field of one record overwritten (little-endian, as the layout says)."""
    field_dtype, offset = dtype.fields[field][:2]
    start = record * size + offset
    encoded = np.array([value], dtype=field_dtype).tobytes()
    return raw[:start] + encoded + raw[start + len(encoded):]


def read_error(source: ChunkSource | str | Path) -> ChunkError:
    with pytest.raises(ChunkError) as caught:
        read_chunk(source if isinstance(source, ChunkSource) else str(source))
    return caught.value


def assert_names(error: ChunkError, name: str, record: int | None = None, field: str | None = None) -> None:
    """The error names the file, and the record / field when given (in its attributes and its message)."""
    message = str(error)
    assert error.path == name
    assert message.startswith(f"{name}: "), message
    if record is not None:
        assert error.record == record, message
        assert f"record {record}:" in message, message
    if field is not None:
        assert error.field == field, message
        assert f"field {field}:" in message, message


def run_inspect(capsys, *paths) -> tuple[int, str, str]:
    code = main(["data", "inspect", *(str(p) for p in paths)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, name: str, *fragments: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), line
    assert name in line, line
    for fragment in fragments:
        assert fragment in line, line
    return line


def assert_cli_rejects(capsys, path: Path | str, *fragments: str, name: str | None = None) -> str:
    """`data inspect path` on a bad file: exit 2, nothing on stdout, one error line naming the file."""
    code, out, err = run_inspect(capsys, path)
    assert code == 2
    assert out == ""
    return assert_one_error_line(err, name or str(path), *fragments)


def same_records(a, b) -> bool:
    """Byte equality (the records hold NaNs, so == on values would not do)."""
    return a.version == b.version and a.records.dtype == b.records.dtype and a.records.tobytes() == b.records.tobytes()


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    archive.addfile(info, io.BytesIO(data))


def add_directory(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


@pytest.fixture(scope="module")
def v6_raw() -> bytes:
    raw = payload(V6_FILE)
    assert len(raw) % V6_SIZE == 0 and int.from_bytes(raw[:4], "little") == 6
    assert len(raw) // V6_SIZE > 5
    return raw


# ---------------------------------------------------------------------------------------------- gzip


@pytest.mark.parametrize("cut", ["half", "header", "last_byte"])
def test_truncated_gzip(tmp_path, capsys, cut):
    data = V6_FILE.read_bytes()
    keep = {"half": len(data) // 2, "header": 6, "last_byte": len(data) - 1}[cut]
    path = write(tmp_path, "game.gz", data[:keep])

    error = read_error(path)
    assert_names(error, str(path))
    assert "truncated" in str(error)

    assert_cli_rejects(capsys, path, "truncated")


def test_corrupt_gzip_checksum(tmp_path, capsys):
    data = bytearray(V6_FILE.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = write(tmp_path, "game.gz", bytes(data))

    assert_names(read_error(path), str(path))
    assert_cli_rejects(capsys, path, "gzip")


def test_garbage_after_gzip_stream(tmp_path, capsys):
    path = write(tmp_path, "game.gz", V6_FILE.read_bytes() + b"not gzip")
    assert_names(read_error(path), str(path))
    assert_cli_rejects(capsys, path)


# ---------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "raw"])
def test_size_not_a_multiple_of_record_size(tmp_path, capsys, v6_raw, compressed):
    records = len(v6_raw) // V6_SIZE
    cut = v6_raw[:-100]
    path = write_gz(tmp_path, "game.gz", cut) if compressed else write(tmp_path, "training.1", cut)

    error = read_error(path)
    assert_names(error, str(path), record=records - 1)  # the partial record is the last one
    assert str(V6_SIZE) in str(error)

    assert_cli_rejects(capsys, path, f"record {records - 1}")


def test_partial_first_record(tmp_path, capsys, v6_raw):
    path = write_gz(tmp_path, "game.gz", v6_raw[:100])
    assert_names(read_error(path), str(path), record=0)
    assert_cli_rejects(capsys, path, "record 0")


@pytest.mark.parametrize("length", [1, 3])
def test_fewer_bytes_than_a_version_field(tmp_path, capsys, v6_raw, length):
    path = write_gz(tmp_path, "game.gz", v6_raw[:length])
    assert_names(read_error(path), str(path), record=0, field="version")
    assert_cli_rejects(capsys, path, "record 0", "field version")


def test_unknown_version(tmp_path, capsys, v6_raw):
    path = write_gz(tmp_path, "game.gz", (9).to_bytes(4, "little") + v6_raw[4:])

    error = read_error(path)
    assert_names(error, str(path), record=0, field="version")
    assert "9" in error.reason

    assert_cli_rejects(capsys, path, "record 0", "field version")


def test_mixed_versions_one_record_changed(tmp_path, capsys, v6_raw):
    path = write_gz(tmp_path, "game.gz", set_field(v6_raw, 3, V6_SIZE, V6_DTYPE, "version", 7))

    error = read_error(path)
    assert_names(error, str(path), record=3, field="version")
    assert "7" in error.reason

    assert_cli_rejects(capsys, path, "record 3", "field version")


def test_mixed_versions_v6_file_followed_by_v4_records(tmp_path, capsys, v6_raw):
    v6_records = len(v6_raw) // V6_SIZE
    v4_raw = payload(V4_FILE)
    assert len(v4_raw) // V4_SIZE >= 2
    path = write_gz(tmp_path, "game.gz", v6_raw + v4_raw)

    error = read_error(path)
    assert_names(error, str(path), record=v6_records, field="version")
    assert "4" in error.reason

    assert_cli_rejects(capsys, path, f"record {v6_records}", "field version")


def test_mixed_versions_v4_file_followed_by_v6_records(tmp_path, capsys, v6_raw):
    v4_raw = payload(V4_FILE)
    v4_records = len(v4_raw) // V4_SIZE
    path = write_gz(tmp_path, "game.gz", v4_raw + v6_raw)

    assert_names(read_error(path), str(path), record=v4_records, field="version")
    assert_cli_rejects(capsys, path, f"record {v4_records}", "field version")


def test_mixed_versions_v6_file_followed_by_one_v4_record(tmp_path, v6_raw):
    v6_records = len(v6_raw) // V6_SIZE
    path = write_gz(tmp_path, "game.gz", v6_raw + payload(V4_FILE)[:V4_SIZE])
    assert_names(read_error(path), str(path), record=v6_records, field="version")


# ---------------------------------------------------------------------------------------------- empty / missing


@pytest.mark.parametrize("kind", ["empty_file", "empty_gzip"])
def test_empty_inputs(tmp_path, capsys, kind):
    data = b"" if kind == "empty_file" else gzip.compress(b"")
    path = write(tmp_path, "game.gz", data)

    error = read_error(path)
    assert_names(error, str(path))
    assert "empty" in error.reason

    assert_cli_rejects(capsys, path, "empty")


def test_missing_path(tmp_path, capsys):
    path = tmp_path / "no-such-dir" / "game.gz"
    assert_names(read_error(path), str(path))
    assert_cli_rejects(capsys, path)


def test_missing_path_among_good_ones(tmp_path, capsys):
    missing = tmp_path / "missing.gz"
    code, out, err = run_inspect(capsys, V6_FILE, missing, V5_FILE)
    assert code == 2
    assert f"{V6_FILE}: V6" in out and f"{V5_FILE}: V5" in out
    assert_one_error_line(err, str(missing))


# ---------------------------------------------------------------------------------------------- field values


def test_unknown_input_format(tmp_path, capsys, v6_raw):
    path = write_gz(tmp_path, "game.gz", set_field(v6_raw, 2, V6_SIZE, V6_DTYPE, "input_format", 99))

    error = read_error(path)
    assert_names(error, str(path), record=2, field="input_format")
    assert "99" in error.reason

    assert_cli_rejects(capsys, path, "record 2", "field input_format")


def test_v5_result_out_of_range(tmp_path, capsys):
    v5_raw = payload(V5_FILE)
    assert int.from_bytes(v5_raw[:4], "little") == 5 and len(v5_raw) // V5_SIZE > 4
    path = write_gz(tmp_path, "game.gz", set_field(v5_raw, 4, V5_SIZE, V5_DTYPE, "result", 7))

    error = read_error(path)
    assert_names(error, str(path), record=4, field="result")
    assert "7" in error.reason

    assert_cli_rejects(capsys, path, "record 4", "field result")


# ---------------------------------------------------------------------------------------------- tar archives


def v6_files(count: int) -> list[Path]:
    files = sorted(V6_DIR.glob("game_*.gz"))[:count]
    assert len(files) == count
    return files


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_of_real_chunks_reads_like_the_loose_files(tmp_path, capsys, suffix):
    files = v6_files(4)
    archive_path = tmp_path / f"training-run1{suffix}"
    with tarfile.open(archive_path, "w:gz" if suffix == ".tar.gz" else "w") as archive:
        add_member(archive, "LICENSE", b"GPL-3.0\n" * 50)
        add_directory(archive, "extra")
        for index, file in enumerate(files, start=1):
            add_member(archive, f"training.{index}.gz", file.read_bytes())

    sources = list(find_chunks([archive_path]))
    expected_names = [f"{archive_path}:training.{i}.gz" for i in range(1, len(files) + 1)]
    assert [s.name for s in sources] == expected_names  # LICENSE and the directory are skipped
    for source, file in zip(sources, files):
        assert same_records(read_chunk(source), read_chunk(str(file)))

    code, out, err = run_inspect(capsys, archive_path)
    assert (code, err) == (0, "")
    for name in expected_names:
        assert f"{name}: V6" in out
    assert "LICENSE" not in out


def test_tar_with_a_member_that_is_not_a_chunk(tmp_path, capsys):
    files = v6_files(2)
    archive_path = tmp_path / "archive.tar"
    with tarfile.open(archive_path, "w") as archive:
        add_member(archive, "training.1.gz", files[0].read_bytes())
        add_member(archive, "notes.txt", b"these games were played at 1100 nodes\n")
        add_member(archive, "training.2.gz", files[1].read_bytes())

    sources = {source.member: source for source in find_chunks([archive_path])}
    assert list(sources) == ["training.1.gz", "notes.txt", "training.2.gz"]
    assert same_records(read_chunk(sources["training.1.gz"]), read_chunk(str(files[0])))
    assert same_records(read_chunk(sources["training.2.gz"]), read_chunk(str(files[1])))
    bad_name = f"{archive_path}:notes.txt"
    assert bad_name.endswith("archive.tar:notes.txt")
    assert_names(read_error(sources["notes.txt"]), bad_name)

    code, out, err = run_inspect(capsys, archive_path)
    assert code == 2
    assert f"{archive_path}:training.1.gz: V6" in out
    assert f"{archive_path}:training.2.gz: V6" in out
    assert "notes.txt" not in out
    assert_one_error_line(err, bad_name)


def test_tar_that_ends_inside_a_member(tmp_path, capsys):
    archive_path = tmp_path / "archive.tar"
    with tarfile.open(archive_path, "w") as archive:
        add_member(archive, "training.1.gz", V6_FILE.read_bytes())
    data = archive_path.read_bytes()
    archive_path.write_bytes(data[: 512 + 1000])  # the header and the first 1000 bytes of the member

    # Listing stops at the damage (named, with the archive), and the member cut short is an error of its own.
    with pytest.raises(ChunkError) as caught:
        [read_chunk(source) for source in find_chunks([archive_path])]
    assert caught.value.path.startswith(str(archive_path))
    assert str(caught.value).startswith(f"{caught.value.path}: ")

    code, out, err = run_inspect(capsys, archive_path)
    assert (code, out) == (2, "")
    assert "Traceback" not in err
    damage, member = err.splitlines()
    assert damage.startswith(f"{ERROR_PREFIX}{archive_path}: not a readable tar archive"), damage
    assert member.startswith(f"{ERROR_PREFIX}{archive_path}:training.1.gz: archive ends inside the member"), member


def not_a_tar(tmp_path: Path) -> Path:
    return write(tmp_path, "archive.tar", b"this is not a tar archive\n" * 40)


def test_file_named_tar_that_is_not_an_archive(tmp_path):
    path = not_a_tar(tmp_path)
    with pytest.raises(ChunkError) as caught:
        list(find_chunks([path]))
    assert_names(caught.value, str(path))


def test_file_named_tar_that_is_not_an_archive_cli(tmp_path, capsys):
    path = not_a_tar(tmp_path)
    assert_cli_rejects(capsys, path)


# ---------------------------------------------------------------------------------------------- raw and multi-member


def test_uncompressed_chunk_reads_like_the_gzip_one(tmp_path, capsys, v6_raw):
    raw_path = write(tmp_path, "training.7", v6_raw)
    assert same_records(read_chunk(str(raw_path)), read_chunk(str(V6_FILE)))

    code, out, err = run_inspect(capsys, raw_path)
    assert (code, err) == (0, "")
    assert out.startswith(f"{raw_path}: V6, input format 1, {len(v6_raw) // V6_SIZE} records")


@pytest.mark.parametrize("split", ["record_boundary", "mid_record"])
def test_two_gzip_members_read_as_their_concatenation(tmp_path, v6_raw, split):
    at = 3 * V6_SIZE if split == "record_boundary" else 3 * V6_SIZE + 1234
    path = write(tmp_path, "game.gz", gzip.compress(v6_raw[:at], 1) + gzip.compress(v6_raw[at:], 1))
    assert same_records(read_chunk(str(path)), read_chunk(str(V6_FILE)))


def test_two_concatenated_games(tmp_path, capsys, v6_raw):
    other = payload(V6_OTHER_FILE)
    path = write(tmp_path, "games.gz", V6_FILE.read_bytes() + V6_OTHER_FILE.read_bytes())
    both = write(tmp_path, "both", v6_raw + other)

    chunk = read_chunk(str(path))
    assert len(chunk.records) == (len(v6_raw) + len(other)) // V6_SIZE
    assert same_records(chunk, read_chunk(str(both)))
    first, second = read_chunk(str(V6_FILE)), read_chunk(str(V6_OTHER_FILE))
    assert chunk.records.tobytes() == first.records.tobytes() + second.records.tobytes()

    code, out, err = run_inspect(capsys, path)
    assert (code, err) == (0, "")
    assert f"{len(chunk.records)} records" in out


def test_globs_and_list_files(tmp_path, lc0_data):
    from lc0distill.chunks.sources import find_chunks

    pattern = str(lc0_data / "v6-fmt[23]-*" / "game_00000[02].gz")
    found = [s.name for s in find_chunks([pattern])]
    assert len(found) == 4 and all("fmt2" in n or "fmt3" in n for n in found)
    listing = tmp_path / "chunks.txt"
    listing.write_text(f"# two games and a folder\n{lc0_data / 'v4-maia1100' / 'game_000000.gz'}\n\n"
                       f"{lc0_data / 'v5-maia1100'}\n")
    assert len(list(find_chunks([f"@{listing}"]))) == 5
    errors = []
    assert list(find_chunks([str(tmp_path / "*.gz"), "@/no/list.txt"], on_error=errors.append)) == []
    assert len(errors) == 2 and "no file matches" in str(errors[0]) and "/no/list.txt" in str(errors[1])
