"""A real OTLP/HTTP receiver for tests: protobuf bodies decoded with the
official generated classes (opentelemetry-proto 1.45.2).

    otlp_receiver.py [--out FILE] [--fail N] [--status CODE] [--hang N]
                     [--hang-seconds S] [--reject N]

Listens on 127.0.0.1 on a free port and prints `READY http://127.0.0.1:PORT`.
Accepts POST /v1/logs, /v1/traces and /v1/metrics (application/x-protobuf)
and writes every decoded item as one JSON line (to FILE, else stdout):

    {"signal": "log", "resource": {...}, "scope": "...", "body": ...,
     "attributes": {...}, "time_unix_nano": ..., "severity_text": ..., ...}
    {"signal": "span", "name": ..., "kind": ..., "trace_id": hex,
     "parent_span_id": hex, "attributes": {...}, "status": {...}, ...}
    {"signal": "metric", "name": ..., "unit": ..., "attributes": {...},
     "count": ..., "bucket_counts": [...], "explicit_bounds": [...], ...}

Items are written only for requests answered 200: a request this receiver
failed, refused or left hanging was not taken, as with a real collector.

Outage switches, from the command line or at run time with
POST /control?fail=N&status=CODE&hang=N&hang_seconds=S&reject=N
(each sets the count for the next requests to /v1/*; POST /control/clear
resets them and releases hung requests):
  --fail N     answer CODE (default 500) to the next N requests
  --hang N     hold the next N requests without answering for S seconds
               (default 30), then close the connection
  --reject N   answer 400 to the next N requests (a malformed batch)
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SIGNALS = {
    "/v1/logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.fail = args.fail
        self.status = args.status
        self.hang = args.hang
        self.hang_seconds = args.hang_seconds
        self.reject = args.reject
        self.release = threading.Event()
        self.out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
        self.requests = 0

    def next_answer(self):
        """What to do with the next /v1/* request: ok, fail, hang or reject."""
        with self.lock:
            self.requests += 1
            if self.hang > 0:
                self.hang -= 1
                return "hang"
            if self.fail > 0:
                self.fail -= 1
                return "fail"
            if self.reject > 0:
                self.reject -= 1
                return "reject"
            return "ok"

    def write(self, items):
        with self.lock:
            for item in items:
                self.out.write(json.dumps(item, sort_keys=True) + "\n")
            self.out.flush()


def any_value(value):
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def decode_logs(request):
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                yield {
                    "signal": "log",
                    "resource": resource,
                    "scope": scope_logs.scope.name,
                    "time_unix_nano": record.time_unix_nano,
                    "observed_time_unix_nano": record.observed_time_unix_nano,
                    "severity_number": record.severity_number,
                    "severity_text": record.severity_text,
                    "event_name": record.event_name,
                    "body": any_value(record.body),
                    "attributes": attributes(record.attributes),
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                }


def decode_traces(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "signal": "span",
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                    "name": span.name,
                    "kind": span.kind,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "trace_state": span.trace_state,
                    "flags": span.flags,
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes),
                    "status": {"code": span.status.code, "message": span.status.message},
                }


def decode_metrics(request):
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    item = {
                        "signal": "metric",
                        "resource": resource,
                        "scope": scope_metrics.scope.name,
                        "name": metric.name,
                        "unit": metric.unit,
                        "type": kind,
                        "attributes": attributes(point.attributes),
                        "start_time_unix_nano": point.start_time_unix_nano,
                        "time_unix_nano": point.time_unix_nano,
                    }
                    if hasattr(data, "aggregation_temporality"):
                        item["temporality"] = data.aggregation_temporality
                    if kind == "histogram":
                        item.update(
                            count=point.count,
                            sum=point.sum,
                            min=point.min,
                            max=point.max,
                            bucket_counts=list(point.bucket_counts),
                            explicit_bounds=list(point.explicit_bounds),
                        )
                    else:
                        item["value"] = point.as_double or point.as_int
                    yield item


DECODERS = {"/v1/logs": decode_logs, "/v1/traces": decode_traces, "/v1/metrics": decode_metrics}


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def answer(self, status, body=b"", content_type="application/x-protobuf"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if url.path.startswith("/control"):
                return self.control(url)
            if url.path not in SIGNALS:
                return self.answer(404, b"unknown path", "text/plain")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"protobuf only", "text/plain")
            action = state.next_answer()
            if action == "hang":
                state.release.wait(state.hang_seconds)
                self.close_connection = True
                return
            if action == "fail":
                return self.answer(state.status, b"failing on purpose", "text/plain")
            if action == "reject":
                return self.answer(400, b"rejected on purpose", "text/plain")
            request_type, response_type = SIGNALS[url.path]
            request = request_type()
            try:
                request.ParseFromString(body)
            except DecodeError as err:
                return self.answer(400, str(err).encode(), "text/plain")
            state.write(list(DECODERS[url.path](request)))
            self.answer(200, response_type().SerializeToString())

        def control(self, url):
            if url.path == "/control/clear":
                with state.lock:
                    state.fail = state.hang = state.reject = 0
                state.release.set()
                state.release = threading.Event()
                return self.answer(200, b"cleared", "text/plain")
            query = parse_qs(url.query)
            with state.lock:
                for name in ("fail", "status", "hang", "reject"):
                    if name in query:
                        setattr(state, name, int(query[name][0]))
                if "hang_seconds" in query:
                    state.hang_seconds = float(query["hang_seconds"][0])
                requests = state.requests
            self.answer(200, json.dumps({"requests": requests}).encode(), "application/json")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write decoded items here (default: stdout)")
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--status", type=int, default=500)
    parser.add_argument("--hang", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--reject", type=int, default=0)
    args = parser.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
