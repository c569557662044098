"""The server's settings: one typed object read from flags, CLASSIFY_* variables and a config file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    CliApp,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from classify_server.config_file import ConfigFileSource, config_file_path, reading_config_file
from classify_server.serving.labels import LABEL_FORM, LABEL_PATTERN, LATEST, parse_share
from classify_server.serving.version_policy import VersionPolicy

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ServerSettings(BaseSettings):
    """Serve every model in a Classify model repository over gRPC.

    Each setting is a flag (--max-batch-size 64), an environment variable (CLASSIFY_MAX_BATCH_SIZE=64)
    and a key of the optional --config-file (TOML or JSON: max_batch_size = 64). A flag wins over the
    environment, the environment over the file, the file over the defaults shown here.
    """

    model_config = SettingsConfigDict(
        env_prefix="CLASSIFY_",
        cli_prog_name="classify-server",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_show_env_vars=True,
        extra="forbid",
    )

    config_file: Path | None = Field(
        None,
        description="TOML (.toml) or JSON (.json) file of settings, keyed by setting name "
        "(max_batch_size or max-batch-size); flags and CLASSIFY_* variables override it",
    )

    model_repository: Path = Field(
        description="Folder holding <model>/<version>/ SavedModels with their model.json",
    )
    version_policy: str = Field(
        "latest:1",
        description="Versions of each model to serve: latest, latest:N, all, or specific:V1,V2",
    )
    model_version_policies: dict[str, str] = Field(
        default_factory=dict,
        description="Per-model version policies overriding --version-policy, "
        'as JSON: {"mnist-cnn": "latest:2"}',
    )
    poll_seconds: float = Field(
        5.0,
        ge=0,
        description="How often to look for new, changed or removed versions in the repository; 0: never "
        "(load and unload then happen only through the LoadModel and UnloadModel RPCs)",
    )
    # -- Production features of issue 21 (labels, canaries, response cache, payload log, tracing) ------------
    model_version_labels: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Version labels per model, as JSON: "
        '{"mnist-cnn": {"stable": 6, "canary": 7}}; requests may name a label instead of a version, and '
        "unversioned ones go to 'stable' when it is loaded (else the newest non-canary version). "
        "Changed at run time by the SetVersionLabel RPC (classify label)",
    )
    model_canary_split: dict[str, str | float] = Field(
        default_factory=dict,
        description="Share of unversioned requests sent to the version labelled canary, as JSON: "
        '{"mnist-cnn": "10%"}; sticky per x-classify-route-key, else per x-request-id',
    )
    cache_rows: int = Field(
        0,
        ge=0,
        description="Answers (rows) cached per model version, keyed by a hash of the version and the input "
        "row: a repeated input skips the batcher. 0: no cache; --model-cache-rows sets it per model",
    )
    model_cache_rows: dict[str, int] = Field(
        default_factory=dict,
        description='Per-model --cache-rows overriding it, as JSON: {"mnist-cnn": 10000}',
    )
    cache_max_mb: float = Field(
        64.0, gt=0, description="Memory bound of each version's answer cache, in MiB (besides --cache-rows)"
    )
    payload_log: str | None = Field(
        None,
        description="Log a sample of requests and answers: a file PATH (JSON lines, appended) or an "
        "http(s):// URL (each entry POSTed as a CloudEvent); written by a background thread, never blocking "
        "a request",
    )
    payload_log_sample: float = Field(
        0.01, ge=0, le=1, description="Share of requests --payload-log records (1.0: every request)"
    )
    payload_log_inputs: Literal["summary", "full"] = Field(
        "summary",
        description="Inputs in the payload log: summary (image shapes, texts' first 80 characters) or full "
        "(pixels as base64, whole texts)",
    )
    payload_log_buffer: int = Field(
        10_000,
        ge=1,
        description="Entries waiting for the payload log's sink; beyond it entries are dropped and counted "
        '(classify_payload_log_entries_total{outcome="dropped"}), never waited for',
    )
    otlp_endpoint: str | None = Field(
        None,
        description="Trace requests with OpenTelemetry and export the spans over OTLP/HTTP to this "
        "receiver, e.g. http://collector:4318 (spans go to its /v1/traces; a URL with a path is used as "
        "given); the caller's W3C traceparent is honoured. Unset: tracing is off and costs nothing",
    )
    otlp_service_name: str = Field(
        "classify-server",
        min_length=1,
        description="service.name of the exported spans (--otlp-endpoint), e.g. one per deployment",
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, endpoint: str | None) -> str | None:
        from classify_server.tracing import otlp_traces_url

        if endpoint is not None:
            otlp_traces_url(endpoint)  # raises ValueError saying what is wrong
        return endpoint

    # -- End of the issue 21 block -------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 for all interfaces")
    port: int = Field(8500, ge=0, le=65535, description="gRPC port; 0 picks a free one (logged)")
    metrics_port: int = Field(
        8502,
        ge=-1,
        le=65535,
        description="HTTP port of the Prometheus /metrics endpoint on --host; 0 picks a free one (logged), "
        "-1 turns metrics off",
    )
    http_port: int = Field(
        8501,
        ge=-1,
        le=65535,
        description="HTTP/JSON port on --host (KServe V2 REST, TF Serving REST, native JSON, OpenAPI at "
        "/docs), same TLS, tokens and limits as gRPC; 0 picks a free one (logged), -1 turns HTTP off",
    )
    http_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest an HTTP request body may take to arrive in full; a slower one is answered 408 "
        "and its connection closed (a slow-body client cannot hold a request slot for long)",
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest the head of an HTTP request (request line and headers) may take to arrive, "
        "from the connection opening or its first byte after a keep-alive pause; a slower one is answered "
        "408 and closed (slow-loris clients cannot hold connections open)",
    )
    max_connection_age_seconds: float = Field(
        0.0,
        ge=0,
        description="gRPC connections older than this are asked to close (GOAWAY) once their calls end "
        "(within --max-connection-age-grace-seconds), so long-lived clients re-resolve DNS and spread over "
        "replicas that joined since; set, grpcio serves gRPC (the native front cannot age connections); "
        "0: never",
    )
    max_connection_age_grace_seconds: float | None = Field(
        None,
        ge=0,
        description="How long calls in progress on an aged gRPC connection may still take before it is "
        "closed under them; unset: as long as they need (a long ClassifyStream is never cut, while new "
        "calls already use a new connection)",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) of the server; with --tls-key-file turns TLS on"
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of --tls-cert-file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, callers must present a certificate it signed (mutual TLS)"
    )
    auth_tokens: list[str] = Field(
        default_factory=list,
        description="Bearer tokens accepted in 'authorization: Bearer <token>' (env: a JSON list); "
        "health checks stay open. Prefer --auth-tokens-file: flags show in process lists",
    )
    auth_tokens_file: Path | None = Field(
        None, description="File of accepted bearer tokens, one per line (# comments allowed)"
    )
    max_batch_size: int = Field(
        128, ge=1, description="Most rows per execution (a model.json max_batch_size wins for its model)"
    )
    max_queue_delay_ms: float = Field(
        0.0,
        ge=0,
        description="Milliseconds a batch may wait for more rows after its first request arrived; "
        "0 is greedy: run whatever is queued as soon as a worker is free",
    )
    preferred_batch_sizes: list[int] = Field(
        default_factory=list,
        description="Pad executions up to the smallest of these sizes that fits (fixed shapes for XLA), "
        "e.g. 1,8,32,128, and cap a model.json max_batch_size at the largest; empty: never pad",
    )
    max_batches_in_flight: int = Field(
        1, ge=1, description="Executions of one model that may run at the same time, each on its own thread"
    )
    explain_slice_ms: float = Field(
        20.0,
        ge=0,
        description="Longest an explain execution is planned to take, at its measured cost per item (one "
        "item is the least), so a small explain request waits about this long behind a large one, not for "
        "all its work; 0: bounded by --max-batch-size rows of work only",
    )
    inline_max_rows: int = Field(
        1,
        ge=0,
        description="Executions of at most this many rows run on the event loop's thread when the model "
        "is otherwise idle and such an execution last took at most 2 ms, skipping the worker-thread "
        "hand-off (lower latency for lone small requests); 0: always use worker threads",
    )
    max_request_rows: int = Field(
        4096, ge=1, description="Most rows (images or texts) one request may carry; more is INVALID_ARGUMENT"
    )
    queue_capacity_rows: int = Field(
        8192, ge=1, description="Rows a model may have queued; beyond it requests get RESOURCE_EXHAUSTED"
    )
    max_queued_batches: float = Field(
        0.0,
        ge=0,
        description="How many full batches of its model (max-batch-size rows at the measured pace) a "
        "request may expect to wait for before its own execution; one expected to wait longer gets "
        "RESOURCE_EXHAUSTED at once. 0.1 admits a request only as the running execution ends: under a "
        "10x flood accepted requests kept their p99 within 2x of an idle server's. "
        "0: only --queue-capacity-rows (and the caller's deadline) bound the queue",
    )
    max_queue_ms: float = Field(
        5000.0,
        ge=0,
        description="Milliseconds a request may expect to wait in its model's queue (queued rows at its "
        "priority or above x the measured seconds per row, plus the running executions' rest); one "
        "expected to wait longer, or longer than its deadline leaves, gets RESOURCE_EXHAUSTED at once. "
        "0: only the deadline bounds the wait",
    )
    shed_floods: bool = Field(
        True,
        description="While rows arrive much faster than a model runs them (an open-loop flood, told from a "
        "closed loop of many callers by how long it lasts: see docs/operations.md), admit only requests "
        "expected to start within a tenth of a full batch, so accepted calls stay fast; the rest get "
        "RESOURCE_EXHAUSTED at once. --no-shed-floods: only the row, wait and deadline bounds",
    )
    background_rows: int = Field(
        4,
        ge=0,
        description="While higher-priority requests arrived in the last second, an execution carries at "
        "most this many rows of lower priorities (larger requests are cut into slices), so online callers "
        "never wait behind a batch job's long execution; 0: no cap (strict priority order only)",
    )
    max_text_chars: int = Field(100_000, ge=1, description="Longest text accepted, in characters")
    max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest gRPC message, both directions; a bigger request or answer fails with "
        "RESOURCE_EXHAUSTED",
    )
    max_concurrent_requests: int = Field(
        0,
        ge=0,
        description="Requests (and open streams) served at once over all models and protocols; one more "
        "is refused at once with RESOURCE_EXHAUSTED. Health checks and reflection are not counted. "
        "0: unlimited (the per-model queues still bound the work: --queue-capacity-rows)",
    )
    # --grpc-front (docs/serving.md, "gRPC front"): field and check kept together.
    grpc_front: Literal["native", "grpcio", "auto"] = Field(
        "auto",
        description="What answers the gRPC port: native (pygrpc-native, HTTP/2 and calls in Rust outside "
        "the GIL), grpcio (grpc.aio), or auto (native when installed). TLS always gets grpcio",
    )

    @field_validator("grpc_front")
    @classmethod
    def _native_front_installed(cls, front: str) -> str:
        from classify_server.grpc_front import NATIVE_DISTRIBUTION, native_installed

        if front == "native" and not native_installed():
            raise ValueError(
                f"native needs {NATIVE_DISTRIBUTION} (pip install {NATIVE_DISTRIBUTION}); "
                "expected grpcio or auto"
            )
        return front

    stream_window: int = Field(
        32, ge=1, description="Requests of one ClassifyStream processed concurrently before reading more"
    )
    grace_seconds: float = Field(
        15.0, ge=0, description="On SIGTERM/SIGINT, how long accepted requests may take to finish"
    )
    gpu_memory_limit_mb: int | None = Field(
        None,
        ge=1,
        description="Cap each GPU's TensorFlow memory at this many MiB (several servers on one card); "
        "default: memory growth, taking memory as models need it",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="TensorFlow intra-op threads; 0 lets TensorFlow use every core"
    )
    inter_op_threads: int = Field(
        2,
        ge=0,
        description="TensorFlow inter-op threads (independent ops of one execution side by side: the two "
        "directions of a bidirectional LSTM); 0 lets TensorFlow decide (one per core)",
    )
    log_level: str = Field(
        "INFO",
        description="Least severe log lines written (DEBUG, INFO, WARNING, ERROR, CRITICAL): WARNING has a "
        "line per failed request, INFO adds model and server lifecycle events; successful requests are never "
        "logged (see the metrics)",
    )
    log_format: Literal["plain", "json"] = Field(
        "plain", description="plain text lines, or one JSON object per line with the fields apart"
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
        return level.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first; pydantic-settings puts the command line in front of all of these.
        return (init_settings, env_settings, ConfigFileSource(settings_cls), file_secret_settings)

    @field_validator("version_policy")
    @classmethod
    def _valid_policy(cls, text: str) -> str:
        return str(VersionPolicy.parse(text))

    @field_validator("model_version_policies")
    @classmethod
    def _valid_policies(cls, policies: dict[str, str]) -> dict[str, str]:
        return {name: str(VersionPolicy.parse(text)) for name, text in policies.items()}

    @field_validator("model_version_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for model, named in labels.items():
            for label, version in named.items():
                if not LABEL_PATTERN.fullmatch(label) or label == LATEST:
                    raise ValueError(f"model {model!r}: version label {label!r} is not {LABEL_FORM}")
                if version < 1:
                    raise ValueError(f"model {model!r}: label {label!r} names version {version}, not >= 1")
        return labels

    @field_validator("model_canary_split")
    @classmethod
    def _valid_shares(cls, shares: dict[str, str | float]) -> dict[str, str | float]:
        return {model: f"{parse_share(text) * 100:g}%" for model, text in shares.items()}

    def canary_shares(self) -> dict[str, float]:
        return {model: parse_share(text) for model, text in self.model_canary_split.items()}

    def cache_rows_for(self, model: str) -> int:
        return self.model_cache_rows.get(model, self.cache_rows)

    def versions_for(self, model: str) -> VersionPolicy:
        return VersionPolicy.parse(self.model_version_policies.get(model, self.version_policy))

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("--tls-client-ca-file (mutual TLS) needs --tls-cert-file and --tls-key-file")
        return self

    @field_validator("model_repository")
    @classmethod
    def _must_be_a_folder(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        return path


def load_settings(argv: Sequence[str]) -> ServerSettings:
    """Settings from the command line, the environment and the config file the two of them name.

    Raises pydantic's ValidationError for bad values and ConfigFileError for an unreadable file.
    """
    with reading_config_file(config_file_path(argv)):
        return CliApp.run(ServerSettings, cli_args=list(argv))
