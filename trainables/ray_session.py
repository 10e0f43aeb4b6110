"""Joining or starting the Ray session a sweep runs in."""

from __future__ import annotations

import contextlib
import os

from trainables.records import Printer


def connect_ray(address: str | None, dashboard: bool, out: Printer) -> bool:
    """Join ``address`` (or start a local Ray); returns True when this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        from trainables.cluster import connect   # checks the address and token auth with clear errors

        connect(address, logging_level="WARNING")
    else:
        # a local cluster: everything on loopback; Ray's token authentication is left as configured
        with _loopback_node():
            context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", logging_level="WARNING")
        url = getattr(context, "dashboard_url", None)
        if dashboard and url:
            out(f"Ray dashboard (this machine only): http://{url}")
        out(f"Ray's own tools: {ray_tools_command(context.address_info['address'], url if dashboard else None)}")
    return True


LOCAL_CLUSTER_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_node():
    """Start the local Ray node on 127.0.0.1. Ray's GCS, raylet, object manager, agents and workers bind
    to the node's IP address, which Ray picks as the machine's outward address, turning even an explicit
    ``_node_ip_address="127.0.0.1"`` back into it; only its single-machine mode (the default on macOS and
    Windows, switched by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) keeps loopback. Joining a cluster through
    $RAY_ADDRESS is left alone: that node's address is the cluster's."""
    if os.environ.get("RAY_ADDRESS"):
        yield
        return
    from ray._private import ray_constants   # read when ray is imported, so set for this call too

    saved_env, saved = os.environ.get(LOCAL_CLUSTER_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_CLUSTER_VAR] = "0"      # inherited by the processes Ray starts now
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(LOCAL_CLUSTER_VAR, None)
        else:
            os.environ[LOCAL_CLUSTER_VAR] = saved_env


def ray_tools_command(gcs_address: str, dashboard_url: str | None) -> str:
    """How to point Ray's CLI at this cluster. Token authentication is on, and Ray's CLI sends the token
    (from ~/.ray/auth_token or $RAY_AUTH_TOKEN) only when RAY_AUTH_MODE=token is in its environment."""
    if dashboard_url:   # the state API (ray list ...) is served by the dashboard
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        return (f"RAY_AUTH_MODE=token ray list actors --address {url} (trial actors: add --detail, "
                f"the trial is the repr_name), RAY_AUTH_MODE=token ray status --address {gcs_address}")
    return f"RAY_AUTH_MODE=token ray status --address {gcs_address} (ray list ... needs the dashboard)"

