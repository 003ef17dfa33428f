"""Message classes for lc0's network files, built at import time from lc0net.proto.

The `.proto` is parsed here (it uses a small proto2 subset: messages, nested enums, optional and repeated
fields of scalar, enum or message types) into a FileDescriptorProto, so no generated code ties the project
to one protobuf release. tests/lc0/test_proto.py checks the result against protoc's own descriptor.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO_PATH = Path(__file__).with_name("lc0net.proto")

_FD = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FD.TYPE_DOUBLE, "float": _FD.TYPE_FLOAT, "int64": _FD.TYPE_INT64, "uint64": _FD.TYPE_UINT64,
    "int32": _FD.TYPE_INT32, "fixed64": _FD.TYPE_FIXED64, "fixed32": _FD.TYPE_FIXED32, "bool": _FD.TYPE_BOOL,
    "string": _FD.TYPE_STRING, "bytes": _FD.TYPE_BYTES, "uint32": _FD.TYPE_UINT32, "sfixed32": _FD.TYPE_SFIXED32,
    "sfixed64": _FD.TYPE_SFIXED64, "sint32": _FD.TYPE_SINT32, "sint64": _FD.TYPE_SINT64,
}
_LABELS = {"optional": _FD.LABEL_OPTIONAL, "repeated": _FD.LABEL_REPEATED, "required": _FD.LABEL_REQUIRED}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|-?\d+|[{};=]')


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(re.sub(r"//[^\n]*", "", text))


class _Parser:
    def __init__(self, text: str, name: str):
        self.tokens = _tokens(text)
        self.at = 0
        self.file = descriptor_pb2.FileDescriptorProto(name=name)

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        if expected is not None and token != expected:
            raise ValueError(f"lc0net.proto: expected {expected!r}, found {token!r}")
        self.at += 1
        return token

    def parse(self) -> descriptor_pb2.FileDescriptorProto:
        while self.at < len(self.tokens):
            keyword = self.take()
            if keyword == "syntax":
                self.take("=")
                syntax = self.take().strip('"')
                if syntax != "proto2":  # descriptors leave proto2, the default, unset (as protoc does)
                    self.file.syntax = syntax
                self.take(";")
            elif keyword == "package":
                self.file.package = self.take()
                self.take(";")
            elif keyword == "message":
                self._message(self.file.message_type.add())
            elif keyword == "enum":
                self._enum(self.file.enum_type.add())
            else:
                raise ValueError(f"lc0net.proto: unexpected {keyword!r}")
        return self.file

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        enum.name = self.take()
        self.take("{")
        while self.tokens[self.at] != "}":
            value = enum.value.add(name=self.take())
            self.take("=")
            value.number = int(self.take())
            self.take(";")
        self.take("}")

    def _message(self, message: descriptor_pb2.DescriptorProto) -> None:
        message.name = self.take()
        self.take("{")
        while self.tokens[self.at] != "}":
            keyword = self.take()
            if keyword == "enum":
                self._enum(message.enum_type.add())
            elif keyword == "message":
                self._message(message.nested_type.add())
            else:
                field = message.field.add(label=_LABELS[keyword])
                type_name = self.take()
                field.name = self.take()
                self.take("=")
                field.number = int(self.take())
                self.take(";")
                field.json_name = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), field.name)
                if type_name in _SCALARS:
                    field.type = _SCALARS[type_name]
                else:
                    field.type_name = type_name  # resolved below, once every name is known
        self.take("}")


def _resolve_types(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Give message- and enum-typed fields their full names and kinds (nested names searched first)."""
    kinds: dict[str, int] = {}

    def collect(prefix: str, messages, enums) -> None:
        for enum in enums:
            kinds[f"{prefix}.{enum.name}"] = _FD.TYPE_ENUM
        for message in messages:
            kinds[f"{prefix}.{message.name}"] = _FD.TYPE_MESSAGE
            collect(f"{prefix}.{message.name}", message.nested_type, message.enum_type)

    collect(f".{file.package}", file.message_type, file.enum_type)

    def resolve(prefix: str, messages) -> None:
        for message in messages:
            scope = f"{prefix}.{message.name}"
            for field in message.field:
                if field.type_name and not field.type_name.startswith("."):
                    for candidate in (f"{scope}.{field.type_name}", f".{file.package}.{field.type_name}"):
                        if candidate in kinds:
                            field.type_name, field.type = candidate, kinds[candidate]
                            break
                    else:
                        raise ValueError(f"lc0net.proto: unknown type {field.type_name!r} in {scope}")
            resolve(scope, message.nested_type)

    resolve(f".{file.package}", file.message_type)


def file_descriptor_proto(text: str | None = None) -> descriptor_pb2.FileDescriptorProto:
    """lc0net.proto as a FileDescriptorProto."""
    parsed = _Parser(PROTO_PATH.read_text() if text is None else text, "lc0distill/lc0/lc0net.proto").parse()
    _resolve_types(parsed)
    return parsed


_CLASSES = message_factory.GetMessages([file_descriptor_proto()], pool=descriptor_pool.DescriptorPool())

Net = _CLASSES["lc0distill.lc0net.Net"]
Weights = _CLASSES["lc0distill.lc0net.Weights"]
Layer = _CLASSES["lc0distill.lc0net.Layer"]
ConvBlock = _CLASSES["lc0distill.lc0net.ConvBlock"]
SEunit = _CLASSES["lc0distill.lc0net.SEunit"]
Residual = _CLASSES["lc0distill.lc0net.Residual"]
NetworkFormat = _CLASSES["lc0distill.lc0net.NetworkFormat"]
Format = _CLASSES["lc0distill.lc0net.Format"]
OnnxModel = _CLASSES["lc0distill.lc0net.OnnxModel"]
