"""The async client: a generic call for any RPC of any service, and one typed method per demo RPC."""

from __future__ import annotations

import enum
import types
import typing
import uuid

import grpc
from google.protobuf import message as proto_message
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2

from client._calls import Attempts, OnRetry, ResponseStream, unary_call
from client._options import TLS, RetryPolicy
from client._results import (
    FileProcessedResult,
    OrderProcessedResult,
    OrderView,
    file_result,
    order_result,
    order_view,
)
from protos.files.v1 import files_pb2
from protos.orders.v1 import orders_pb2
from rill_wire import AUTHORIZATION_KEY, REQUEST_ID_KEY, bearer

__all__ = ["DEFAULT_ADDRESS", "RillClient"]

DEFAULT_ADDRESS = "127.0.0.1:50051"

_PROCESS_ORDERS = "/orders.v1.OrderService/ProcessOrders"
_GET_ORDER = "/orders.v1.OrderService/GetOrder"
_PROCESS_FILES = "/files.v1.FileService/ProcessFiles"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"

T = typing.TypeVar("T")
M = typing.TypeVar("M", bound=proto_message.Message)

Metadata: typing.TypeAlias = typing.Sequence[tuple[str, str]]


class _Default(enum.Enum):
    DEFAULT = enum.auto()


DEFAULT = _Default.DEFAULT
"""A call's ``timeout`` when not given: the client's ``timeout``."""

Timeout: typing.TypeAlias = float | _Default | None

_DEFAULT_RETRY = RetryPolicy()


class RillClient:
    """An async client of the rill service, around one ``grpc.aio`` channel.

    ::

        async with RillClient("127.0.0.1:50051", timeout=30) as client:
            async with client.process_orders(["a", "b", "c"]) as results:
                async for result in results:          # OrderProcessedResult, as each arrives
                    print(result.order_id, result.status)
            order = await client.get_order("a")       # OrderView

    ``tls`` secures the channel (plaintext without it); ``token`` is sent as
    ``authorization: Bearer <token>`` and ``metadata`` with every call; ``timeout`` is the default
    deadline of every call, in seconds (None: none), which each method can override. Calls that fail
    with UNAVAILABLE before anything was received are retried as ``retry`` says (``on_retry`` hears
    of each retry); other failures raise a :class:`client.exceptions.RillError` subclass.
    Every call sends an ``x-request-id`` (``request_id``, or a new one) that the server logs.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        tls: TLS | None = None,
        token: str | None = None,
        metadata: Metadata = (),
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        channel_options: typing.Sequence[tuple[str, typing.Any]] = (),
    ) -> None:
        self.address = address
        self.tls = tls
        self.timeout = timeout
        self.retry = retry if retry is not None else _DEFAULT_RETRY
        self._on_retry = on_retry
        self._metadata: tuple[tuple[str, str], ...] = tuple((key.lower(), value) for key, value in metadata)
        if token is not None:
            self._metadata += ((AUTHORIZATION_KEY, bearer(token)),)
        options: dict[str, typing.Any] = {"grpc.primary_user_agent": "rill-client"}
        options.update(self.retry.channel_options())
        if tls is not None and tls.server_name:
            options["grpc.ssl_target_name_override"] = tls.server_name
        options.update(channel_options)
        self._options = list(options.items())
        self._channel: grpc.aio.Channel | None = None
        self._closed = False

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> RillClient:
        if self._closed:
            raise RuntimeError("this RillClient is closed; create a new one")
        if self._channel is None:
            if self.tls is not None:
                self._channel = grpc.aio.secure_channel(self.address, self.tls.credentials(), self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self.address, self._options)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel; calls still running are cancelled. The client cannot be reused."""
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(None)

    def _open_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            state = "closed" if self._closed else "not open"
            raise RuntimeError(f"this RillClient is {state}: use it inside `async with RillClient(...)`")
        return self._channel

    # -- per-call options ------------------------------------------------------------------------

    def _attempts(self, timeout: Timeout, request_id: str | None) -> Attempts:
        return Attempts(
            self.retry,
            self.timeout if timeout is DEFAULT else timeout,
            request_id or uuid.uuid4().hex,
            self._on_retry,
        )

    def _call_metadata(self, metadata: Metadata, attempts: Attempts) -> tuple[tuple[str, str], ...]:
        extra = tuple((key.lower(), value) for key, value in metadata)
        return (*self._metadata, *extra, (REQUEST_ID_KEY, attempts.request_id))

    def stream(
        self,
        method: str | MethodDescriptor,
        request: proto_message.Message,
        response_class: type[M],
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> ResponseStream[M]:
        """Call any server-streaming RPC, given its generated classes: its responses as they arrive.

        ::

            rows = client.stream("/reports.v1.ReportService/ExportRows", request, reports_pb2.Row)
            async with rows:
                async for row in rows:                # reports_pb2.Row, as each arrives
                    ...

        ``method`` is the RPC's path (``/package.Service/Method``) or its ``MethodDescriptor``
        (``reports_pb2.DESCRIPTOR.services_by_name["ReportService"].methods_by_name["ExportRows"]``,
        checked against the request and response classes). The same deadline, retries, metadata,
        request id and :mod:`client.exceptions` as the typed methods.
        """
        path = _path(method, request, response_class, streaming=True)
        return self._stream(path, request, _as_is, response_class, timeout, metadata, request_id)

    async def call(
        self,
        method: str | MethodDescriptor,
        request: proto_message.Message,
        response_class: type[M],
        *,
        timeout: Timeout = DEFAULT,  # noqa: ASYNC109 - a gRPC deadline sent with the call, not a local cancel scope
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> M:
        """Call any unary RPC, given its generated classes: its response (see :meth:`stream`)."""
        path = _path(method, request, response_class, streaming=False)
        response = await self._unary(path, request, response_class, timeout, metadata, request_id)
        return typing.cast(M, response)

    def _stream(
        self,
        method: str,
        request: proto_message.Message,
        convert: typing.Callable[[typing.Any], T],
        response_class: type[proto_message.Message],
        timeout: Timeout,
        metadata: Metadata,
        request_id: str | None,
    ) -> ResponseStream[T]:
        multicallable: grpc.aio.UnaryStreamMultiCallable[typing.Any, typing.Any] = (
            self._open_channel().unary_stream(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_class.FromString,
            )
        )
        attempts = self._attempts(timeout, request_id)
        call_metadata = self._call_metadata(metadata, attempts)

        def start(time_left: float | None) -> grpc.aio.UnaryStreamCall[typing.Any, typing.Any]:
            return multicallable(request, timeout=time_left, metadata=call_metadata)

        return ResponseStream(start, convert, attempts)

    async def _unary(
        self,
        method: str,
        request: proto_message.Message,
        response_class: type[proto_message.Message],
        timeout: Timeout,  # noqa: ASYNC109 - a gRPC deadline sent with the call, not a local cancel scope
        metadata: Metadata,
        request_id: str | None,
    ) -> typing.Any:
        multicallable: grpc.aio.UnaryUnaryMultiCallable[typing.Any, typing.Any] = (
            self._open_channel().unary_unary(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_class.FromString,
            )
        )
        attempts = self._attempts(timeout, request_id)
        call_metadata = self._call_metadata(metadata, attempts)

        def start(time_left: float | None) -> grpc.aio.UnaryUnaryCall[typing.Any, typing.Any]:
            return multicallable(request, timeout=time_left, metadata=call_metadata)

        return await unary_call(start, attempts)

    # -- the RPCs -------------------------------------------------------------------------------

    def process_orders(
        self,
        order_ids: typing.Iterable[str],
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> ResponseStream[OrderProcessedResult]:
        """Process the orders: one ``OrderProcessedResult`` per id, in order, each as it is done.

        ``InvalidArgument`` (with ``violations``) for a bad request, before any item.
        """
        request = orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))
        return self._stream(
            _PROCESS_ORDERS,
            request,
            order_result,
            orders_pb2.OrderProcessedResult,
            timeout,
            metadata,
            request_id,
        )

    async def get_order(
        self,
        order_id: str,
        *,
        timeout: Timeout = DEFAULT,  # noqa: ASYNC109 - a gRPC deadline, as in process_orders
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> OrderView:
        """What the service recorded for a processed order; ``NotFound`` if it never was."""
        request = orders_pb2.GetOrderRequest(order_id=order_id)
        message = await self._unary(_GET_ORDER, request, orders_pb2.Order, timeout, metadata, request_id)
        return order_view(message)

    def process_files(
        self,
        file_ids: typing.Iterable[str],
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> ResponseStream[FileProcessedResult]:
        """Hash the files (paths under the service's storage root): one result per id, in order.

        A missing file is a result with status ``not_found``; ``InvalidArgument`` for ids that would
        leave the storage root, before any item.
        """
        request = files_pb2.ProcessFilesRequest(file_ids=list(file_ids))
        return self._stream(
            _PROCESS_FILES,
            request,
            file_result,
            files_pb2.FileProcessedResult,
            timeout,
            metadata,
            request_id,
        )

    async def health(
        self,
        service: str = "",
        *,
        timeout: Timeout = DEFAULT,  # noqa: ASYNC109 - a gRPC deadline, as in process_orders
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> str:
        """The serving status of ``service`` ("" for the whole server): ``"SERVING"``,
        ``"NOT_SERVING"``, ...; ``NotFound`` for a service the server does not know."""
        request = health_pb2.HealthCheckRequest(service=service)
        response = await self._unary(
            _HEALTH_CHECK, request, health_pb2.HealthCheckResponse, timeout, metadata, request_id
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _as_is(message: M) -> M:
    return message


def _path(
    method: str | MethodDescriptor,
    request: proto_message.Message,
    response_class: type[proto_message.Message],
    *,
    streaming: bool,
) -> str:
    """The RPC's path; with a descriptor, checked against the request, response and call kind."""
    if isinstance(method, str):
        if not method.startswith("/") or method.count("/") != 2:
            raise ValueError(f"expected an RPC path /package.Service/Method, got {method!r}")
        return method
    if method.client_streaming or method.server_streaming != streaming:
        use = "call() for a unary RPC" if streaming else "stream() for a server-streaming RPC"
        raise ValueError(f"{method.full_name}: use {use}; client streaming is not supported")
    expected = (method.input_type.full_name, method.output_type.full_name)
    given = (request.DESCRIPTOR.full_name, response_class.DESCRIPTOR.full_name)
    if given != expected:
        raise TypeError(
            f"{method.full_name} takes {expected[0]} and answers {expected[1]}, not {given[0]}, {given[1]}"
        )
    return f"/{method.containing_service.full_name}/{method.name}"
