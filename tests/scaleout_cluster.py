"""A real multi-node Ray cluster on loopback, for the scale-out tests.

Each node is one ``ray start --block`` process started in its own session (process group), with
its own ports and temp dir, on 127.0.0.1. Teardown kills exactly those process groups (the ids this
helper started), first with SIGTERM, then SIGKILL; nothing is looked up by name. Token
authentication stays on: the cluster gets a fresh random token through ``RAY_AUTH_TOKEN``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 90


def shared_token() -> str:
    """The token every Ray cluster in this test process uses. Ray's client loads its token once and
    keeps it, and a local ``ray.init`` elsewhere in the suite uses (or creates) the default token
    file; so the loopback clusters use that same token, creating the file as Ray itself would."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: a concurrent creator wins and both use its token
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    return path.read_text().strip()


CLUSTER_TOKEN = shared_token()


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports(avoid: tuple[int, ...] = ()) -> dict[str, int]:
    """Every port a node listens on, chosen free, so two nodes (and two test runs) never collide."""
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port"]
    ports = {name: free_port() for name in names}
    taken = set(ports.values()) | set(avoid)
    # a small worker-port range of its own (workers bind these; a clash only costs a retry), which
    # must not hold any of the node's other ports: ray start refuses that
    low = free_port()
    while any(low <= p <= low + 200 for p in taken) or low + 200 > 65535:
        low = free_port()
    ports["min-worker-port"], ports["max-worker-port"] = low, low + 200
    return ports


@dataclass
class RayNode:
    process: subprocess.Popen
    temp_dir: Path
    log: Path
    ports: dict[str, int]

    @property
    def metrics_export_port(self) -> int:
        """Where this node's metrics agent serves Prometheus text (``/metrics``)."""
        return self.ports["metrics-export-port"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def descendants(self) -> list[int]:
        """Pids of every live process below ``ray start`` (from /proc; no psutil needed)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = [], [self.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def raylet_pid(self) -> int:
        for pid in self.descendants():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        raise RuntimeError(f"no raylet under ray start pid {self.pid}")

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL, this node's process group and any descendant that left the group."""
        strays = self.descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for pid in strays:  # children that started a session of their own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class LoopbackCluster:
    """``head`` plus ``workers``; ``address`` is the GCS address, ``dashboard_url`` the Jobs/HTTP one."""

    root: Path
    env: dict[str, str]
    address: str = ""
    dashboard_url: str = ""
    head: RayNode | None = None
    workers: list[RayNode] = field(default_factory=list)

    def _start(self, name: str, args: list[str], avoid: tuple[int, ...] = ()) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        cmd = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir),
               "--disable-usage-stats", "--log-style", "record", *args]
        ports = node_ports(avoid)
        for flag, port in ports.items():
            cmd += [f"--{flag}", str(port)]
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
        return RayNode(proc, temp_dir, log, ports)

    def start_head(self, num_cpus: int = 1, num_gpus: int = 0, resources: str | None = None,
                   dashboard: bool = True) -> None:
        port, dash_port, client_port = free_port(), free_port(), free_port()
        args = ["--head", "--port", str(port), "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
                "--include-dashboard", str(dashboard).lower(), "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(dash_port), "--ray-client-server-port", str(client_port),
                "--object-store-memory", str(100 * 2**20)]
        if resources:
            args += ["--resources", resources]
        self.head = self._start("head", args, avoid=(port, dash_port, client_port))
        self.address = f"127.0.0.1:{port}"
        self.dashboard_url = f"http://127.0.0.1:{dash_port}"
        self.wait_started(self.head, dashboard=dashboard)

    def add_worker(self, num_cpus: int = 1, num_gpus: int = 0, resources: str | None = None) -> RayNode:
        args = ["--address", self.address, "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
                "--object-store-memory", str(100 * 2**20)]
        if resources:
            args += ["--resources", resources]
        node = self._start(f"worker{len(self.workers)}", args)
        self.workers.append(node)
        self.wait_started(node)
        return node

    def wait_started(self, node: RayNode, dashboard: bool = False, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``ray start`` says the runtime started (and, for the head, the dashboard answers)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"ray start exited early ({node.process.returncode}):\n" + node.log.read_text()[-3000:])
            if "Ray runtime started" in node.log.read_text() and (not dashboard or self._dashboard_up()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"ray start (pid {node.pid}) not up after {timeout_s}s; log: {node.log}")

    def _dashboard_up(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.dashboard_url + "/api/version", timeout=2):
                return True
        except OSError as e:
            # 401 means the dashboard is up and (rightly) asks for the token
            return getattr(e, "code", None) in (401, 403)

    def stop(self) -> None:
        for node in reversed([self.head, *self.workers]):
            if node is not None:
                node.stop()


def cluster_env(root: Path) -> dict[str, str]:
    """The environment for the cluster's processes and for drivers that connect to it."""
    env = dict(os.environ)
    env.update({
        "RAY_AUTH_MODE": "token",               # token authentication stays on
        "RAY_AUTH_TOKEN": CLUSTER_TOKEN,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        "RAY_metrics_report_interval_ms": "1000",  # live metrics show up within seconds
        "OMP_NUM_THREADS": "1",
    })
    env.pop("RAY_ADDRESS", None)
    # this interpreter's bin first, as an activated venv would be: Ray Jobs run `python ...` from PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def loopback_cluster(root: Path, head_cpus: int = 1, head_gpus: int = 0, dashboard: bool = True):
    """Start a head node (and nothing else); yield the cluster; always tear down what was started."""
    cluster = LoopbackCluster(root=Path(root), env=cluster_env(Path(root)))
    try:
        cluster.start_head(num_cpus=head_cpus, num_gpus=head_gpus, dashboard=dashboard)
        yield cluster
    finally:
        cluster.stop()
