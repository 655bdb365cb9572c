"""A Loki stand-in for what the collector's `loki` exporter really sends: a snappy-compressed
protobuf `logproto.PushRequest` POSTed to /loki/api/v1/push.

The messages are declared to the protobuf library with Loki's own field numbers (the
github.com/grafana/loki/pkg/push module's push.proto at v2.9.0), so the library decodes the
bytes; nothing is parsed by hand.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
import snappy
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


def parse_labels(selector: str) -> dict[str, str]:
    """`{job="a", level="info"}` as Loki's push carries a stream's labels."""
    return {match["name"]: match["value"].encode().decode("unicode_escape") for match in _LABEL.finditer(selector)}


@dataclass(frozen=True)
class Entry:
    labels: tuple[tuple[str, str], ...]
    timestamp_ns: int
    line: str

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


class LokiPushStandIn:
    """Records every entry of every accepted push. After `fail(status, seconds)` it answers that
    status for that long instead, recording nothing: a Loki restarting (500) or refusing (400).
    After `away(seconds)` nothing listens on its port for that long: a Loki whose container is
    gone."""

    def __init__(self):
        self.entries: list[Entry] = []
        self.requests = self.refused = 0
        self._failure: tuple[int, float] = (0, 0.0)  # status, until (monotonic)
        self._lock = threading.Lock()
        self.server = self._listen()
        self.port = int(self.server.url.rsplit(":", 1)[1])

    def _listen(self, port: int = 0) -> StandIn:
        return StandIn({"/loki/api/v1/push": self._push, "/ready": lambda *_: text(200, "ready")}, port=port)

    def away(self, seconds: float) -> None:
        self.server.close()

        def back() -> None:
            self.server = self._listen(self.port)

        timer = threading.Timer(seconds, back)
        timer.daemon = True
        timer.start()

    def _push(self, path: str, query: dict, body: bytes) -> Reply:
        with self._lock:
            self.requests += 1
            status, until = self._failure
            if time.monotonic() < until:
                self.refused += 1
                return text(status, "stand-in: failing on purpose")
            request = PushRequest.FromString(snappy.uncompress(body))
            for stream in request.streams:
                labels = tuple(sorted(parse_labels(stream.labels).items()))
                self.entries.extend(Entry(labels, entry.timestamp.ToNanoseconds(), entry.line)
                                    for entry in stream.entries)
        return 204, "text/plain", b""

    def fail(self, status: int, seconds: float) -> None:
        with self._lock:
            self._failure = (status, time.monotonic() + seconds)

    def recover(self) -> None:
        self.fail(0, 0.0)

    def close(self) -> None:
        self.server.close()
