"""Property-based fuzzing of every RPC of every protocol the server speaks, against a running server.

Each RPC gets its own hypothesis run of generated requests, sent as raw bytes (so unknown fields and
damaged wire bytes can be appended) with a deadline. A case fails when the server answers a status it
does not document for that call, hangs past the deadline, or stops serving. Failures are collected, not
raised, so one run reports every kind of failure with a reproducible example of each.

Run it alone: ``python tests/reliability/fuzzing.py --target 127.0.0.1:8500 --cases 10000``. It imports
this package's own KServe V2 messages, which clash with tritonclient's in one process, so pytest runs it
as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from fuzz_messages import (
    classify_request,
    model_infer_request,
    names,
    unknown_fields,
    versions,
    wire_damage,
)
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from classify_client.wire.proto.classify.v1 import classify_pb2 as native
from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as v2

CODE = grpc.StatusCode
# What the README's status table promises for any call.
DOCUMENTED = frozenset(
    {CODE.OK, CODE.INVALID_ARGUMENT, CODE.NOT_FOUND, CODE.RESOURCE_EXHAUSTED, CODE.UNAVAILABLE}
)
# Bytes that do not parse as the request message: this server's services, grpc.health.v1 included
# (call_guard.ParseGuard), answer INVALID_ARGUMENT. gRPC aio's own UNKNOWN ("Unexpected <class
# 'DecodeError'>") is still counted apart as ``unparseable``, not as a failure.
UNPARSEABLE_MARK = "DecodeError"
DEADLINE_SECONDS = 20.0


@dataclass
class Rpc:
    """One method: its path, whether it streams, its request strategy and the statuses it may answer."""

    path: str
    requests: st.SearchStrategy[Any]
    streaming: bool = False
    allowed: frozenset[grpc.StatusCode] = DOCUMENTED
    weight: int = 1  # share of the cases: the calls with rich inputs get most


@dataclass
class Failure:
    rpc: str
    outcome: str
    example: str


@dataclass
class FuzzReport:
    cases: int = 0
    by_rpc: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    unparseable: int = 0
    seconds: float = 0.0
    samples: dict[str, str] = field(default_factory=dict)  # one status detail per status code

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "failures": self.failure_count,
            "unparseable": self.unparseable,
            "seconds": round(self.seconds, 1),
            "by_rpc": dict(self.by_rpc),
            "outcomes": dict(self.outcomes),
            "samples": self.samples,
            "examples": [vars(f) for f in self.failures[:20]],
        }


def rpcs(real: list[str], tf_serving: bool = True) -> list[Rpc]:
    """Every RPC with its request strategy; LoadModel/UnloadModel only ever name models that do not
    exist, so the fuzz cannot unload what the rest of the run depends on."""
    unreal = names(real).filter(lambda name: name not in real)
    services = [
        Rpc("/classify.v1.Classifier/Classify", classify_request(real), weight=30),
        Rpc(
            "/classify.v1.Classifier/ClassifyStream",
            st.lists(classify_request(real), max_size=5),
            streaming=True,
            weight=8,
        ),
        Rpc("/classify.v1.Classifier/ListModels", st.just(native.ListModelsRequest())),
        Rpc(
            "/classify.v1.Classifier/GetModelMetadata",
            st.builds(native.GetModelMetadataRequest, model=names(real), version=versions()),
            weight=2,
        ),
        Rpc(
            "/classify.v1.Classifier/GetModelStatistics",
            st.builds(native.GetModelStatisticsRequest, model=names(real)),
        ),
        Rpc("/classify.v1.Classifier/LoadModel", st.builds(native.LoadModelRequest, model=unreal)),
        Rpc("/classify.v1.Classifier/UnloadModel", st.builds(native.UnloadModelRequest, model=unreal)),
        Rpc("/grpc.health.v1.Health/Check", st.builds(health_pb2.HealthCheckRequest, service=names(real))),
        Rpc("/inference.GRPCInferenceService/ServerLive", st.just(v2.ServerLiveRequest())),
        Rpc("/inference.GRPCInferenceService/ServerReady", st.just(v2.ServerReadyRequest())),
        Rpc("/inference.GRPCInferenceService/ServerMetadata", st.just(v2.ServerMetadataRequest())),
        Rpc(
            "/inference.GRPCInferenceService/ModelReady",
            st.builds(v2.ModelReadyRequest, name=names(real), version=st.sampled_from(["", "1", "x", "-1"])),
        ),
        Rpc(
            "/inference.GRPCInferenceService/ModelMetadata",
            st.builds(
                v2.ModelMetadataRequest, name=names(real), version=st.sampled_from(["", "1", "0", "x"])
            ),
        ),
        Rpc("/inference.GRPCInferenceService/ModelInfer", model_infer_request(real), weight=25),
        Rpc(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            st.lists(model_infer_request(real), max_size=4),
            streaming=True,
            weight=6,
        ),
    ]
    if tf_serving:
        import fuzz_tfserving as tf

        unimplemented = DOCUMENTED | {CODE.UNIMPLEMENTED}
        services += [
            Rpc("/tensorflow.serving.PredictionService/Predict", tf.predict_request(real), weight=20),
            Rpc("/tensorflow.serving.PredictionService/Classify", tf.classification_request(real), weight=12),
            Rpc(
                "/tensorflow.serving.PredictionService/GetModelMetadata", tf.metadata_request(real), weight=2
            ),
            Rpc(
                "/tensorflow.serving.PredictionService/Regress",
                tf.regression_request(real),
                allowed=unimplemented,
            ),
            Rpc(
                "/tensorflow.serving.PredictionService/MultiInference",
                tf.multi_inference_request(real),
                allowed=unimplemented,
            ),
        ]
    return services


class Fuzzer:
    def __init__(self, target: str, report: FuzzReport) -> None:
        self.target = target
        self.report = report
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )

    def close(self) -> None:
        self._channel.close()

    def send(self, rpc: Rpc, request: Any, tail: bytes) -> tuple[grpc.StatusCode, str, int]:
        """Send one case; (status, details, replies) where replies counts stream answers."""
        if rpc.streaming:
            call = self._channel.stream_stream(rpc.path)
            messages = [message.SerializeToString() for message in request]
            if messages and tail:
                messages[-1] += tail
            try:
                replies = list(call(iter(messages), timeout=DEADLINE_SECONDS))
            except grpc.RpcError as error:
                return error.code(), error.details() or "", -1
            return CODE.OK, "", len(replies)
        call = self._channel.unary_unary(rpc.path)
        try:
            call(request.SerializeToString() + tail, timeout=DEADLINE_SECONDS)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", 0
        return CODE.OK, "", 0

    def check(self, rpc: Rpc, request: Any, tail: bytes, damaged: bool) -> None:
        code, details, replies = self.send(rpc, request, tail)
        self.report.cases += 1
        self.report.by_rpc[rpc.path] += 1
        self.report.outcomes[code.name] += 1
        self.report.samples.setdefault(code.name, details[:200])
        problem = None
        if damaged and code == CODE.UNKNOWN and UNPARSEABLE_MARK in details:
            self.report.unparseable += 1
        elif "metadata size exceeds" in details:
            # The client dropped the server's status because its message was too long: the caller
            # never learns what was wrong.
            problem = f"status message too large for the client: {details[:300]}"
        elif code == CODE.DEADLINE_EXCEEDED:
            problem = f"hang: no answer within {DEADLINE_SECONDS:g} s"
        elif code not in rpc.allowed:
            problem = f"undocumented status {code.name}: {details[:300]}"
        elif code == CODE.UNAVAILABLE and not self.serving():
            problem = f"server stopped serving: {details[:300]}"
        elif rpc.streaming and code == CODE.OK and replies != len(request):
            problem = f"{len(request)} stream requests got {replies} answers"
        if problem is not None:
            self.report.failure_count += 1
            if len(self.report.failures) < 50:
                self.report.failures.append(Failure(rpc.path, problem, describe(request, tail)))

    def serving(self) -> bool:
        stub = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = stub(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def describe(request: Any, tail: bytes) -> str:
    """A short, reproducible description of a case for the report."""
    if isinstance(request, list):
        text = "[" + ", ".join(str(message)[:300].replace("\n", " ") for message in request) + "]"
    else:
        text = str(request)[:600].replace("\n", " ")
    return f"{text} + {len(tail)} appended bytes {tail[:24]!r}" if tail else text


def run_one(fuzzer: Fuzzer, rpc: Rpc, cases: int, seed: int) -> None:
    """One hypothesis run of ``cases`` examples for ``rpc``; outcomes land in the fuzzer's report."""
    extra = st.one_of(
        st.just((b"", False)),
        st.just((b"", False)),
        unknown_fields().map(lambda tail: (tail, False)),
        wire_damage().map(lambda tail: (tail, True)),
    )

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(request=rpc.requests, addition=extra)
    def fuzz(request: Any, addition: tuple[bytes, bool]) -> None:
        tail, damaged = addition
        fuzzer.check(rpc, request, tail, damaged)

    hypothesis_seed(seed)(fuzz)()  # the same seed gives the same cases: failures can be replayed


def fuzz_server(
    target: str,
    cases: int,
    models: list[str],
    *,
    tf_serving: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """About ``cases`` cases spread over every RPC by weight (each RPC gets at least a few)."""
    report = FuzzReport()
    fuzzer = Fuzzer(target, report)
    started = time.perf_counter()
    try:
        services = rpcs(models, tf_serving)
        total_weight = sum(rpc.weight for rpc in services)
        for rpc in services:
            share = max(5, math.ceil(cases * rpc.weight / total_weight))  # ceil: never fewer than asked
            before = report.cases
            run_one(fuzzer, rpc, share, seed)
            if progress:
                progress(f"{rpc.path}: {report.cases - before} cases")
    finally:
        fuzzer.close()
        report.seconds = time.perf_counter() - started
    return report


def served_models(target: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(
            "/classify.v1.Classifier/ListModels",
            request_serializer=native.ListModelsRequest.SerializeToString,
            response_deserializer=native.ListModelsResponse.FromString,
        )
        return [model.name for model in stub(native.ListModelsRequest(), timeout=10).models]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tf-serving", action="store_true", help="skip TF Serving (no TensorFlow import)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    progress = None if args.json else (lambda line: print(line, file=sys.stderr))
    report = fuzz_server(
        args.target,
        args.cases,
        served_models(args.target),
        tf_serving=not args.no_tf_serving,
        seed=args.seed,
        progress=progress,
    )
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for line in summary_lines(report):
            print(line)
    return 1 if report.failure_count else 0


def summary_lines(report: FuzzReport) -> Iterator[str]:
    yield (
        f"{report.cases} cases in {report.seconds:.1f} s, {report.failure_count} failures, "
        f"{report.unparseable} unparseable messages refused by gRPC (UNKNOWN)"
    )
    yield "outcomes: " + ", ".join(f"{code} {count}" for code, count in report.outcomes.most_common())
    for code, details in report.samples.items():
        yield f"  e.g. {code}: {details[:160]}"
    for failure in report.failures[:10]:
        yield f"FAIL {failure.rpc}: {failure.outcome}\n    {failure.example[:500]}"


if __name__ == "__main__":
    sys.exit(main())
