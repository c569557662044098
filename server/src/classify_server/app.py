"""Assembles the gRPC server and runs its lifecycle: listen, load and warm, serve, drain on a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from classify_client.wire.proto.classify.v1 import classify_pb2_grpc
from classify_server import tracing
from classify_server.call_guard import CallGuard, GuardedRegistration, ParseGuard
from classify_server.concurrency import ConcurrencyLimit
from classify_server.grpc_front import build_grpc_front
from classify_server.http.app import build_app
from classify_server.http.guard import HttpContext
from classify_server.http.server import HttpServer
from classify_server.metrics import ServerMetrics
from classify_server.payload_log import PayloadLog
from classify_server.protocols import kserve
from classify_server.protocols.native import SERVICE_NAME, ClassifierServicer
from classify_server.security import TokenAuthInterceptor, load_tokens, server_credentials
from classify_server.serving.batcher import BatchingPolicy
from classify_server.serving.data_plane import DataPlane
from classify_server.serving.devices import configure_devices
from classify_server.serving.labels import VersionLabels
from classify_server.serving.registry import READY, ModelRegistry, ModelState, RunnerLoader
from classify_server.serving.response_cache import ResponseCache
from classify_server.serving.runner import configure_tensorflow
from classify_server.serving.validation import InputLimits
from classify_server.settings import ServerSettings

log = logging.getLogger(__name__)

OVERALL = ""  # grpc.health.v1's name for the server as a whole


def batching_policy(settings: ServerSettings) -> BatchingPolicy:
    return BatchingPolicy(
        max_batch_size=settings.max_batch_size,
        queue_capacity_rows=settings.queue_capacity_rows,
        max_queue_delay=settings.max_queue_delay_ms / 1000,
        preferred_batch_sizes=tuple(settings.preferred_batch_sizes),
        max_batches_in_flight=settings.max_batches_in_flight,
        inline_max_rows=settings.inline_max_rows,
        max_queued_batches=settings.max_queued_batches,
        max_queue_time=settings.max_queue_ms / 1000,
        shed_floods=settings.shed_floods,
        background_rows=settings.background_rows,
    )


# Clients keep a connection alive with a ping every 30 s (classify_client.settings.KEEPALIVE): allowed here
# even between calls, where gRPC's default (one ping per 5 min) would answer GOAWAY "too_many_pings".
MIN_CLIENT_PING_INTERVAL_MS = 10_000


def connection_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """gRPC server arguments for connection lifetime: an age after which clients reconnect (and so
    re-resolve DNS and reach replicas that joined since), and the keep-alive pings clients may send."""
    options = [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
    ]
    if settings.max_connection_age_seconds > 0:
        options.append(("grpc.max_connection_age_ms", round(settings.max_connection_age_seconds * 1000)))
        grace = settings.max_connection_age_grace_seconds
        if grace is not None:  # gRPC's default grace is unbounded
            options.append(("grpc.max_connection_age_grace_ms", round(grace * 1000)))
    return options


def response_cache(settings: ServerSettings) -> ResponseCache | None:
    """The answer cache, when any model has --cache-rows / --model-cache-rows above 0."""
    if settings.cache_rows <= 0 and not any(rows > 0 for rows in settings.model_cache_rows.values()):
        return None
    return ResponseCache(settings.cache_rows_for, int(settings.cache_max_mb * 1024 * 1024))


def payload_log(settings: ServerSettings) -> PayloadLog | None:
    if settings.payload_log is None:
        return None
    return PayloadLog(
        settings.payload_log,
        settings.payload_log_sample,
        settings.payload_log_buffer,
        settings.payload_log_inputs,
    )


class ClassifyServer:
    """Every service on one port. ``load_runner`` replaces the SavedModel loader (in-process tests)."""

    def __init__(self, settings: ServerSettings, load_runner: RunnerLoader | None = None) -> None:
        self.settings = settings
        self.health = health.aio.HealthServicer()
        self.registry = ModelRegistry(
            settings.model_repository,
            batching_policy(settings),
            settings.versions_for,
            on_state=self._publish_model_health,
            load_runner=load_runner,
            labels=VersionLabels(settings.model_version_labels, settings.canary_shares()),
            explain_slice_seconds=settings.explain_slice_ms / 1000,
        )
        self.metrics = ServerMetrics(self.registry) if settings.metrics_port >= 0 else None
        self.metrics_port: int | None = None
        self.data_plane = DataPlane(
            self.registry,
            InputLimits(settings.max_request_rows, settings.max_text_chars),
            self.metrics,
            cache=response_cache(settings),
            payload_log=payload_log(settings),
        )
        if self.metrics is not None and self.data_plane.cache is not None:
            self.metrics.watch_cache(self.data_plane.cache)
        if self.metrics is not None and self.data_plane.payload_log is not None:
            self.metrics.watch_payload_log(self.data_plane.payload_log)
        limit = settings.max_message_bytes
        self._tokens = load_tokens(settings.auth_tokens, settings.auth_tokens_file)
        self.front = build_grpc_front(
            settings,
            interceptors=[TokenAuthInterceptor(self._tokens)] if self._tokens else [],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # gRPC shares a busy port with SO_REUSEPORT by default: a second server would silently
                # split traffic with the first instead of failing to start.
                ("grpc.so_reuseport", 0),
                *connection_options(settings),
            ],
        )
        self.server = self.front.server
        self.concurrency = ConcurrencyLimit(settings.max_concurrent_requests)
        # The data services register through the guard (request ids, concurrency limit); health and
        # reflection below are never counted or refused (health only gets its unparseable bytes refused).
        guarded = GuardedRegistration(self.server, CallGuard(self.concurrency))
        classify_pb2_grpc.add_ClassifierServicer_to_server(
            ClassifierServicer(self.data_plane, settings.stream_window), guarded
        )
        kserve.pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            kserve.InferenceServicer(self.data_plane, settings.stream_window), guarded
        )
        # TF Serving's servicer imports TensorFlow's generated protos: imported here, where the server
        # already has TensorFlow, never by anything the client distribution imports.
        from classify_server.protocols import tfserving

        tfserving.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            tfserving.PredictionServicer(self.data_plane), guarded
        )
        self.services = (SERVICE_NAME, kserve.SERVICE_NAME, tfserving.SERVICE_NAME)
        health_pb2_grpc.add_HealthServicer_to_server(
            self.health, GuardedRegistration(self.server, ParseGuard())
        )
        reflection.enable_server_reflection(
            [
                *self.services,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = 0
        self.http_context: HttpContext | None = None
        self.http = self._http_server(settings)
        self._background: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self._tracing = False  # this server turned tracing on, so turns it off (flushing) at stop

    def _http_server(self, settings: ServerSettings) -> HttpServer | None:
        """The HTTP/JSON APIs over the same data plane, limit and tokens; None with --http-port -1."""
        if settings.http_port < 0:
            return None
        self.http_context = HttpContext(
            self.data_plane,
            self.concurrency,
            self._tokens,
            max_body_bytes=settings.max_message_bytes,
            body_timeout=settings.http_body_timeout_seconds,
        )
        return HttpServer(
            build_app(self.http_context),
            settings.host,
            settings.http_port,
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_file=settings.tls_client_ca_file,
            header_timeout=settings.http_header_timeout_seconds,
        )

    def _publish_model_health(self, state: ModelState) -> None:
        """Per-model health follows its state; once started, the server is SERVING while any model is."""
        self._set_health_later(state.name, state.state == READY)
        if self.data_plane.cache is not None:  # a version that stops serving takes its answers with it
            self.data_plane.cache.forget_unready(state)
        if self._started:
            for service in (OVERALL, *self.services):
                self._set_health_later(service, self.registry.ready_count() > 0)

    def _set_health_later(self, service: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # Called from the event loop; health's setter is a coroutine. Keep a reference until it ran.
        task = asyncio.get_running_loop().create_task(self.health.set(service, status))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        """Listen first (so probes see NOT_SERVING while models load), then load, warm and go SERVING."""
        for service in (OVERALL, *self.services):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.settings.otlp_endpoint is not None:
            tracing.enable_otlp(self.settings.otlp_endpoint, self.settings.otlp_service_name)
            self._tracing = True
        address = f"{self.settings.host}:{self.settings.port}"
        if self.settings.tls_cert_file is not None and self.settings.tls_key_file is not None:
            credentials = server_credentials(
                self.settings.tls_cert_file, self.settings.tls_key_file, self.settings.tls_client_ca_file
            )
            self.port = self.front.listen(address, credentials)
        else:
            self.port = self.front.listen(address, None)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {address}")
        await self.server.start()
        log.info(
            "listening on %s:%d (%s; %s gRPC front: %s); loading models from %s",
            self.settings.host,
            self.port,
            self._security_summary(),
            self.front.name,
            self.front.reason,
            self.settings.model_repository,
            extra={"event": "server_listening", "port": self.port, "grpc_front": self.front.name},
        )
        if self.http is not None:
            await self.http.start()
            scheme = "https" if self.http.tls else "http"
            log.info(
                "HTTP on %s://%s:%d (KServe V2 /v2, TF Serving /v1, native /api/v1, docs /docs)",
                scheme,
                self.settings.host,
                self.http.port,
                extra={"event": "http_listening", "port": self.http.port},
            )
        if self.metrics is not None:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
            log.info(
                "metrics on http://%s:%d/metrics",
                self.settings.host,
                self.metrics_port,
                extra={"event": "metrics_listening", "port": self.metrics_port},
            )
        if self.data_plane.payload_log is not None:
            self.data_plane.payload_log.start()
        await self.registry.reconcile()
        self._started = True
        ready = self.registry.ready_count()
        serving = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in (OVERALL, *self.services):
            await self.health.set(service, serving)
        if self.settings.poll_seconds > 0:
            self._watcher = asyncio.create_task(self.registry.watch(self.settings.poll_seconds))
        if ready:
            log.info(
                "SERVING %d model(s) on %s:%d",
                ready,
                self.settings.host,
                self.port,
                extra={"event": "server_serving", "models": ready},
            )
        else:
            log.error(
                "no model could be loaded from %s; NOT_SERVING until one can",
                self.settings.model_repository,
                extra={"event": "server_not_serving"},
            )

    def _security_summary(self) -> str:
        settings = self.settings
        transport = "plaintext"
        if settings.tls_cert_file is not None:
            transport = "mutual TLS" if settings.tls_client_ca_file is not None else "TLS"
        auth = "bearer tokens required" if self._tokens else "no authentication"
        return f"{transport}, {auth}"

    async def stop(self) -> None:
        """Readiness goes NOT_SERVING, new calls are refused, accepted ones finish within the grace period."""
        log.info(
            "shutting down: %d requests in progress finish first (grace %.1f s); new ones are refused",
            self.concurrency.in_progress,
            self.settings.grace_seconds,
            extra={"event": "server_stopping", "in_progress": self.concurrency.in_progress},
        )
        await self.health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.http_context is not None:
            self.http_context.draining = True
        # Both protocols stop accepting and drain side by side, within the one grace period.
        await asyncio.gather(
            self.server.stop(self.settings.grace_seconds),
            *([self.http.stop(self.settings.grace_seconds)] if self.http is not None else []),
        )
        await self.registry.close()
        if self.data_plane.payload_log is not None:  # what the sink accepts in time is written
            await asyncio.to_thread(self.data_plane.payload_log.close)
        if self._tracing:  # the spans still buffered are exported (the exporter's timeout bounds it)
            await asyncio.to_thread(tracing.disable)
        log.info("stopped", extra={"event": "server_stopped"})


async def serve(settings: ServerSettings) -> None:
    # GPU memory settings are frozen once TensorFlow's runtime starts: before anything else touches it.
    configure_devices(limit_mb=settings.gpu_memory_limit_mb)
    configure_tensorflow(settings.intra_op_threads, settings.inter_op_threads)
    server = ClassifyServer(settings)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    startup = asyncio.create_task(server.start())
    await asyncio.wait(
        [startup, asyncio.create_task(stop_requested.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    try:
        if startup.done():
            startup.result()  # a start-up failure (port taken, bad repository) ends the process here
            await stop_requested.wait()
        else:
            startup.cancel()
    finally:
        await server.stop()
