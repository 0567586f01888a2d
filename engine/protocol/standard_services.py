"""The standard services generic gRPC tools expect: server reflection and health.

grpcio-reflection implements only ``grpc.reflection.v1alpha``; tools such as
``buf curl --reflect-protocol grpc-v1`` and newer grpcurl ask for
``grpc.reflection.v1``. The two protocols are the same messages under another package
name (same field numbers, same wire bytes), so the v1 service is the v1alpha servicer
mounted under the v1 name, and the v1 file descriptor is the v1alpha one renamed, so
that reflection can describe itself under both names.

grpcio-health-checking advertises ``grpc.health.v1.Health/List`` but leaves it
unimplemented; :class:`HealthService` answers it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PACKAGE = ".grpc.reflection.v1alpha."
_V1_PACKAGE = ".grpc.reflection.v1."


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha for ``service_names`` (and for themselves)."""
    _register_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1}),)
    )


def _register_v1_descriptor() -> None:
    """Add grpc/reflection/v1/reflection.proto to the default pool (once per process)."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return  # registered before (another server in this process, or a newer library)
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    file.name = _V1_FILE
    file.package = _V1_PACKAGE.strip(".")
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # messages and enums only
                field.type_name = field.type_name.replace(_V1ALPHA_PACKAGE, _V1_PACKAGE)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(_V1ALPHA_PACKAGE, _V1_PACKAGE)
            method.output_type = method.output_type.replace(_V1ALPHA_PACKAGE, _V1_PACKAGE)
    pool.AddSerializedFile(file.SerializeToString())


class HealthService(health.aio.HealthServicer):  # type: ignore[misc]
    """The standard health service, with ``List`` answered from the same statuses."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        statuses = {
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in dict(self._server_status).items()
        }
        return health_pb2.HealthListResponse(statuses=statuses)
