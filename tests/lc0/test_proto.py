"""lc0net.proto as our runtime parser reads it equals protoc's own reading of it."""

import shutil
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from lc0distill.lc0.proto import PROTO_PATH, file_descriptor_proto


def _protoc_descriptor(tmp_path) -> descriptor_pb2.FileDescriptorProto:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (which ships protoc) is not installed")
    folder = tmp_path / "lc0distill" / "lc0"
    folder.mkdir(parents=True)
    shutil.copy(PROTO_PATH, folder / "lc0net.proto")
    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--descriptor_set_out={out}",
                    "lc0distill/lc0/lc0net.proto"], check=True)
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def test_runtime_descriptor_equals_protoc(tmp_path):
    ours, theirs = file_descriptor_proto(), _protoc_descriptor(tmp_path)
    assert ours == theirs


def test_known_field_numbers():
    messages = {m.name: m for m in file_descriptor_proto().message_type}
    fields = {f.name: f.number for f in messages["Weights"].field}
    assert fields["policy1"] == 11 and fields["moves_left"] == 12 and fields["ip2_mov_b"] == 16
    net = {f.name: (f.number, f.type) for f in messages["Net"].field}
    assert net["magic"] == (1, descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32)
    assert net["weights"][0] == 10 and net["onnx_model"][0] == 11
