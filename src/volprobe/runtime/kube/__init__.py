"""volprobe's Kubernetes API layer: a small asyncio client on httpx, a list+watch cache and Lease
leader election. Raw JSON dicts throughout; no generated models.

This module is the public front: import from ``volprobe.runtime.kube``, not from its submodules,
whose private details may change. Every request goes through one `volprobe.runtime.budget.ApiBudget`
(`BudgetTransport`) and the credentials of its `ConnectionConfig` (`AuthTransport`).
"""

from volprobe.runtime.kube.client import (
    PATCH_CONTENT_TYPES,
    KubeClient,
    ListResult,
    PatchType,
    parse_watch_stream,
)
from volprobe.runtime.kube.config import (
    ConnectionConfig,
    TlsConfig,
    load_config,
    load_incluster,
    load_kubeconfig,
)
from volprobe.runtime.kube.credentials import (
    ClientCertificate,
    ConfigError,
    Credential,
    CredentialError,
    Credentials,
    ExecConfig,
    ExecPlugin,
    FileToken,
    StaticCredentials,
)
from volprobe.runtime.kube.errors import (
    ApiError,
    ConflictError,
    GoneError,
    NotFoundError,
    error_from_status,
)
from volprobe.runtime.kube.leader import LeaderElector
from volprobe.runtime.kube.reflector import Backoff, Reflector, ReflectorStats, object_key
from volprobe.runtime.kube.transport import (
    AuthTransport,
    BudgetTransport,
    ConnectionTransport,
    ResponseHook,
    build_transport,
)

__all__ = [
    "PATCH_CONTENT_TYPES",
    "ApiError",
    "AuthTransport",
    "Backoff",
    "BudgetTransport",
    "ClientCertificate",
    "ConfigError",
    "ConflictError",
    "ConnectionConfig",
    "ConnectionTransport",
    "Credential",
    "CredentialError",
    "Credentials",
    "ExecConfig",
    "ExecPlugin",
    "FileToken",
    "GoneError",
    "KubeClient",
    "LeaderElector",
    "ListResult",
    "NotFoundError",
    "PatchType",
    "Reflector",
    "ReflectorStats",
    "ResponseHook",
    "StaticCredentials",
    "TlsConfig",
    "build_transport",
    "error_from_status",
    "load_config",
    "load_incluster",
    "load_kubeconfig",
    "object_key",
    "parse_watch_stream",
]
