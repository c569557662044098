"""The vendored protocol definitions are wire-identical to the real clients' own, without importing ours.

Descriptors are read from the generated files' serialized form (never imported), so this test cannot
itself cause the descriptor-pool clash it guards against.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT
from google.protobuf import descriptor_pb2
from test_proto_generated import load_generator

GENERATED = REPO_ROOT / "client/src/classify_client/wire/proto"
TF_SERVING_FILES = (
    "model",
    "predict",
    "classification",
    "regression",
    "inference",
    "input",
    "get_model_metadata",
    "prediction_service",
)


def file_descriptor(path: Path) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(load_generator()._serialized_descriptor(path))


def package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def test_tf_serving_protos_are_descriptor_identical_to_tensorflow_serving_api() -> None:
    theirs = package_dir("tensorflow_serving") / "apis"
    for name in TF_SERVING_FILES:
        ours = file_descriptor(GENERATED / "tensorflow_serving/apis" / f"{name}_pb2.py")
        assert ours == file_descriptor(theirs / f"{name}_pb2.py"), name


def test_kserve_messages_match_tritonclient_field_for_field() -> None:
    ours = file_descriptor(GENERATED / "inference/grpc_predict_v2_pb2.py")
    theirs = file_descriptor(package_dir("tritonclient") / "grpc/service_pb2.py")
    assert ours.package == theirs.package == "inference"
    their_messages = {message.name: message for message in theirs.message_type}
    for message in ours.message_type:
        assert message == their_messages[message.name], message.name
    their_methods = {method.name: method for method in theirs.service[0].method}
    assert ours.service[0].name == theirs.service[0].name == "GRPCInferenceService"
    for method in ours.service[0].method:
        assert method == their_methods[method.name], method.name


def test_client_imports_no_vendored_protocol_module() -> None:
    probe = (
        "import sys, classify_client, classify_client.cli, classify_client.cli.score_job; "
        "from classify_client import Client, AsyncClient; "
        "print(sorted(m for m in sys.modules if 'wire.proto.inference' in m or 'wire.proto.tensorflow' in m))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
