"""A Loki stand-in for what the collector really sends: the `loki` exporter's snappy-compressed
protobuf `logproto.PushRequest` POSTed to /loki/api/v1/push, or the `otlp_http` exporter's OTLP
logs (protobuf, gzip) POSTed to Loki 3's own /otlp/v1/logs, which it stores as Loki 3.7 does
(pkg/loghttp/push/otlp.go): the resource attributes its config makes index labels become the
stream's labels, the body the line, everything else structured metadata.

The messages are declared to the protobuf library with Loki's own field numbers (the
github.com/grafana/loki/pkg/push module's push.proto at v2.9.0), so the library decodes the
bytes; nothing is parsed by hand.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

import snappy
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2  # noqa: F401 (registers Timestamp)
from google.protobuf.message_factory import GetMessageClass

from tests.standins import Reply, StandIn, text

_LABEL = re.compile(r'(?P<name>[A-Za-z_][A-Za-z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def _push_request_class():
    Field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="trace_stack_test/push.proto", package="logproto",
                                              syntax="proto3", dependency=["google/protobuf/timestamp.proto"])

    def message(name: str, *fields: tuple[str, int, str, bool]) -> None:
        """fields: (name, type, message type or "", repeated), numbered from 1 as in push.proto."""
        declared = file.message_type.add(name=name)
        for number, (field_name, kind, message_type, repeated) in enumerate(fields, start=1):
            field = declared.field.add(name=field_name, number=number, type=kind,
                                       label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL)
            if message_type:
                field.type_name = message_type

    string, uint64, nested = Field.TYPE_STRING, Field.TYPE_UINT64, Field.TYPE_MESSAGE
    message("LabelPairAdapter", ("name", string, "", False), ("value", string, "", False))
    message("EntryAdapter", ("timestamp", nested, ".google.protobuf.Timestamp", False), ("line", string, "", False),
            ("structuredMetadata", nested, ".logproto.LabelPairAdapter", True))
    message("StreamAdapter", ("labels", string, "", False), ("entries", nested, ".logproto.EntryAdapter", True),
            ("hash", uint64, "", False))
    message("PushRequest", ("streams", nested, ".logproto.StreamAdapter", True))

    # The default pool already holds google/protobuf/timestamp.proto (timestamp_pb2 is imported).
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    return GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _push_request_class()


def _label_name(attribute: str) -> str:
    """A label or structured metadata name, as Loki makes one of an OTLP attribute's."""
    return re.sub(r"[^A-Za-z0-9_]", "_", attribute)


def parse_labels(selector: str) -> dict[str, str]:
    """`{job="a", level="info"}` as Loki's push carries a stream's labels."""
    return {match["name"]: match["value"].encode().decode("unicode_escape") for match in _LABEL.finditer(selector)}


@dataclass(frozen=True)
class Entry:
    labels: tuple[tuple[str, str], ...]
    timestamp_ns: int
    line: str
    structured_metadata: tuple[tuple[str, str], ...] = ()

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


class LokiPushStandIn:
    """Records every entry of every accepted push. After `fail(status, seconds)` it answers that
    status for that long instead, recording nothing: a Loki restarting (500) or refusing (400).
    After `away(seconds)` nothing listens on its port for that long: a Loki whose container is
    gone."""

    def __init__(self, otlp_index_labels: tuple[str, ...] = ()):
        self.otlp_index_labels = otlp_index_labels
        self.entries: list[Entry] = []
        self.requests = self.refused = 0
        self._failure: tuple[int, float] = (0, 0.0)  # status, until (monotonic)
        self._lock = threading.Lock()
        self.server = self._listen()
        self.port = int(self.server.url.rsplit(":", 1)[1])

    def _listen(self, port: int = 0) -> StandIn:
        return StandIn({"/loki/api/v1/push": self._taking(self._pushed_entries, (204, "text/plain", b"")),
                        "/otlp/v1/logs": self._taking(self._otlp_entries, (200, "application/x-protobuf", b"")),
                        "/ready": lambda *_: text(200, "ready")}, port=port)

    def away(self, seconds: float) -> None:
        self.server.close()

        def back() -> None:
            self.server = self._listen(self.port)

        timer = threading.Timer(seconds, back)
        timer.daemon = True
        timer.start()

    def _taking(self, entries_of: Callable[[bytes], list[Entry]], answer: Reply) -> Callable[..., Reply]:
        """A route that records the entries of each push it takes, unless failing on purpose."""
        def take(path: str, query: dict, body: bytes) -> Reply:
            with self._lock:
                self.requests += 1
                status, until = self._failure
                if time.monotonic() < until:
                    self.refused += 1
                    return text(status, "stand-in: failing on purpose")
                self.entries.extend(entries_of(body))
            return answer
        return take

    @staticmethod
    def _pushed_entries(body: bytes) -> list[Entry]:
        return [Entry(tuple(sorted(parse_labels(stream.labels).items())), entry.timestamp.ToNanoseconds(), entry.line)
                for stream in PushRequest.FromString(snappy.uncompress(body)).streams for entry in stream.entries]

    def _otlp_entries(self, body: bytes) -> list[Entry]:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        entries = []
        for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
            resource = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
            labels = tuple(sorted((_label_name(key), value) for key, value in resource.items()
                                  if key in self.otlp_index_labels))
            kept = {_label_name(key): value for key, value in resource.items() if key not in self.otlp_index_labels}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    metadata = {**kept, **{_label_name(a.key): a.value.string_value for a in record.attributes}}
                    if record.trace_id:
                        metadata["trace_id"] = record.trace_id.hex()
                    if record.span_id:
                        metadata["span_id"] = record.span_id.hex()
                    if record.severity_text:
                        metadata["severity_text"] = record.severity_text
                    entries.append(Entry(labels, record.time_unix_nano, record.body.string_value,
                                         tuple(sorted(metadata.items()))))
        return entries

    def fail(self, status: int, seconds: float) -> None:
        with self._lock:
            self._failure = (status, time.monotonic() + seconds)

    def recover(self) -> None:
        self.fail(0, 0.0)

    def close(self) -> None:
        self.server.close()
