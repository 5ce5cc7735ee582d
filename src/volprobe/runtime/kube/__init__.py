"""volprobe's Kubernetes API layer: a small asyncio client on httpx, a list+watch cache and Lease
leader election. Raw JSON dicts throughout; no generated models.

This module is the public front: import from ``volprobe.kube``, not from its submodules, whose
private details may change. Every request goes through one `volprobe.budget.ApiBudget`.
"""

from volprobe.runtime.kube.client import (
    PATCH_CONTENT_TYPES,
    ApiError,
    ConflictError,
    GoneError,
    KubeClient,
    ListResult,
    NotFoundError,
    PatchType,
    ResponseHook,
    error_from_status,
    parse_watch_stream,
)
from volprobe.runtime.kube.config import (
    ConfigError,
    ConnectionConfig,
    FileToken,
    StaticToken,
    TokenSource,
    build_ssl_context,
    load_config,
    load_incluster,
    load_kubeconfig,
)
from volprobe.runtime.kube.leader import LeaderElector
from volprobe.runtime.kube.reflector import Backoff, Reflector, ReflectorStats, object_key

__all__ = [
    "PATCH_CONTENT_TYPES",
    "ApiError",
    "Backoff",
    "ConfigError",
    "ConflictError",
    "ConnectionConfig",
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
    "StaticToken",
    "TokenSource",
    "build_ssl_context",
    "error_from_status",
    "load_config",
    "load_incluster",
    "load_kubeconfig",
    "object_key",
    "parse_watch_stream",
]
