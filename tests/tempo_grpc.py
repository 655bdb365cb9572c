"""A Tempo stand-in for what the collector's `otlp/tempo` exporter sends: OTLP over gRPC, the
messages decoded by the OpenTelemetry protobuf package. It counts spans, can keep them, and can
refuse for a while as a Tempo that is restarting does."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str  # 32 hex digits
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    status_code: int  # opentelemetry.proto.trace.v1.Status.StatusCode
    start_ns: int
    end_ns: int
    attributes: tuple[tuple[str, str], ...]


class TempoGrpcStandIn(trace_service_pb2_grpc.TraceServiceServicer):
    """Tempo's OTLP gRPC receiver, taking messages as large as Tempo's config does. After
    `fail(seconds)` it answers UNAVAILABLE for that long, recording nothing."""

    def __init__(self, keep_spans: bool = False):
        self.spans = 0
        self.kept: list[Span] = []
        self.refused = 0
        self._keep = keep_spans
        self._failing_until = 0.0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                  options=[("grpc.max_receive_message_length", 16 * 2**20)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):
        with self._lock:
            if time.monotonic() < self._failing_until:
                self.refused += 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in: restarting on purpose")
            for resource in request.resource_spans:
                service = next((attribute.value.string_value for attribute in resource.resource.attributes
                                if attribute.key == "service.name"), "")
                for scope in resource.scope_spans:
                    self.spans += len(scope.spans)
                    if self._keep:
                        self.kept.extend(Span(service, span.trace_id.hex(), span.name, span.kind, span.status.code,
                                              span.start_time_unix_nano, span.end_time_unix_nano,
                                              tuple((a.key, a.value.string_value) for a in span.attributes))
                                         for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def fail(self, seconds: float) -> None:
        with self._lock:
            self._failing_until = time.monotonic() + seconds

    def close(self) -> None:
        self.server.stop(grace=None)
