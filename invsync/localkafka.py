"""A local single-node Apache Kafka (KRaft) run from Kafka's own jars, without Docker.

The jars are resolved once from Maven Central by Maven (`localkafka_pom.xml`) into a
cache folder; later starts use the cache and never touch the network. The broker
listens on 127.0.0.1 only, with a heap of at most 512 MB, and logs to a file in its
data dir. `stop` ends it by its pid, politely first, and only once the pid is seen
to be this data dir's broker (a stale pid file must not kill an unrelated process).
Secured listeners (SASL_SSL, SSL) can be added beside the PLAINTEXT one
(`localsecurity.Security`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from invsync.localsecurity import Security, SecurityConfigError
from models.errors import InvsyncError

KAFKA_VERSION = "4.1.2"
DEFAULT_PORT = 9092
DEFAULT_DATA_DIR = Path(".invsync/kafka")
HEAP = "512m"

_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
"""


class LocalKafkaError(InvsyncError, RuntimeError):
    """The local broker could not be installed, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int | None
    answering: bool

    @property
    def bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port else None


def cache_dir() -> Path:
    base = os.environ.get("INVSYNC_KAFKA_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "invsync"
    return root / f"kafka-{KAFKA_VERSION}"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LocalKafkaError(f"`{tool}` was not found on PATH: {hint}")
    return path


def ensure_jars(log: bool = True) -> Path:
    """Resolve Kafka's runtime jars into the cache (first time only); return the lib dir."""
    libs = cache_dir() / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = _require("mvn", "install Maven (e.g. `apt-get install maven`) to fetch Kafka's jars")
    _require("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("invsync").joinpath("localkafka_pom.xml")
    with resources.as_file(pom) as pom_path:
        if log:
            print(f"invsync: resolving Apache Kafka {KAFKA_VERSION} jars into {libs} ...")  # noqa: T201
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom_path),
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise LocalKafkaError("Maven could not resolve Kafka's jars:\n" + "\n".join(tail))
    marker.write_text(KAFKA_VERSION)
    return libs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Can the broker bind `port`? Java's server sockets set SO_REUSEADDR, so connections
    of a broker just stopped (TIME_WAIT) do not block it; neither may they block us."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    security: Security | None = None,
    relay: tuple[int, int] | None = None,
) -> str:
    extra = security.listeners() if security else []
    served = [f"PLAINTEXT://127.0.0.1:{port}", *(f"{n}://127.0.0.1:{p}" for n, p in extra)]
    advertised = list(served)
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT", *(f"{n}:{n}" for n, _ in extra)]
    if relay is not None:  # a plaintext listener that tells clients to come through a relay
        served.append(f"RELAYED://127.0.0.1:{relay[0]}")
        advertised.append(f"RELAYED://127.0.0.1:{relay[1]}")
        protocols.append("RELAYED:PLAINTEXT")
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners={','.join(served)},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *(security.properties(data_dir) if security else []),
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=4",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            "log.cleaner.backoff.ms=1000",
            "",
        ]
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) still answers kill(0): look closer.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _command_line(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        pass
    ps = shutil.which("ps")  # no /proc (macOS)
    if ps is None:
        return ""
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [ps, "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Is `pid` a live Kafka broker started from `data_dir`? (pids are reused)"""
    if not _pid_alive(pid):
        return False
    cmdline = _command_line(pid)
    return "kafka.Kafka" in cmdline and str(data_dir / "server.properties") in cmdline


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


async def _answers(bootstrap: str, wait_s: float) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), wait_s)
        await asyncio.wait_for(admin.describe_cluster(), wait_s)
    except Exception:  # noqa: BLE001 - any failure means "not answering yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True


def answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request (connection noise is silenced)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_answers(bootstrap, timeout))
    finally:
        quiet.setLevel(level)


def listeners(data_dir: Path = DEFAULT_DATA_DIR) -> list[tuple[str, str]]:
    """(protocol, host:port) of each client listener the broker of `data_dir` was given."""
    with contextlib.suppress(OSError):
        for line in (data_dir / "server.properties").read_text().splitlines():
            if line.startswith("advertised.listeners="):
                entries = line.split("=", 1)[1].split(",")
                return [(e.split("://")[0], e.split("://")[1]) for e in entries if "://" in e]
    return []


def status(data_dir: Path = DEFAULT_DATA_DIR) -> BrokerStatus:
    data_dir = data_dir.resolve()
    pid = _read_int(data_dir / "kafka.pid")
    port = _read_int(data_dir / "kafka.port")
    running = pid is not None and _is_our_broker(pid, data_dir)
    answering = bool(running and port and answers(f"127.0.0.1:{port}", timeout=10.0))
    return BrokerStatus(
        running=running, pid=pid if running else None, port=port, answering=answering
    )


def new_cluster_id() -> str:
    """A KRaft cluster id (a base64url UUID) that does not start with "-": the storage
    tool would read that as an option and fail (Kafka's own `Uuid.randomUuid()` skips
    those too). One in 64 random ids did, and a fault-suite broker then never started."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start(
    port: int = DEFAULT_PORT,
    data_dir: Path = DEFAULT_DATA_DIR,
    timeout: float = 90.0,
    log: bool = True,
    security: Security | None = None,
    relay: tuple[int, int] | None = None,
) -> BrokerStatus:
    """Start the broker (formatting its storage the first time) and wait until it answers.

    ``relay`` (listen port, advertised port): a second plaintext listener whose clients are
    told to connect to the advertised port — where a test's relay forwards to the listen
    port (the fault suite's slow broker)."""
    data_dir = data_dir.resolve()
    if security is not None:
        try:
            security.check()
        except SecurityConfigError as exc:
            raise LocalKafkaError(str(exc)) from None
    current = status(data_dir)
    if current.running:
        if current.port != port:
            raise LocalKafkaError(
                f"a broker from {data_dir} is already running on port {current.port} "
                f"(pid {current.pid}); stop it first"
            )
        return current
    java = _require("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
    libs = ensure_jars(log=log)
    relayed = [relay[0]] if relay else []
    for wanted in [port, *(p for _, p in (security.listeners() if security else [])), *relayed]:
        if not port_free(wanted):
            raise LocalKafkaError(f"port {wanted} on 127.0.0.1 is in use; pick another")
    controller_port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    props.touch(mode=0o600)  # PLAIN users' passwords may be in it
    props.chmod(0o600)
    props.write_text(_server_properties(data_dir, port, controller_port, security, relay))
    _check_scram_users(data_dir, security)
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(_LOG4J.format(log=data_dir / "kafka.log"))
    classpath = f"{libs}/*"
    if not (data_dir / "logs" / "meta.properties").exists():
        cluster_id = new_cluster_id()
        storage_tool = [java, "-cp", classpath, "kafka.tools.StorageTool"]
        fmt = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                *storage_tool,
                *("format", "-t", cluster_id, "-c", str(props)),
                *(security.scram_format_args() if security else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise LocalKafkaError(
                "formatting the KRaft storage failed:\n" + fmt.stdout + fmt.stderr
            )
        (data_dir / "scram-users").write_text("\n".join(security.users if security else []) + "\n")
    out = (data_dir / "kafka.out").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [
            java,
            "-Xms128m",
            f"-Xmx{HEAP}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    (data_dir / "kafka.pid").write_text(str(proc.pid))
    (data_dir / "kafka.port").write_text(str(port))
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalKafkaError(
                f"the broker exited with code {proc.returncode}; see {data_dir / 'kafka.log'} "
                f"and {data_dir / 'kafka.out'}"
            )
        if answers(bootstrap, timeout=2.0):
            return BrokerStatus(running=True, pid=proc.pid, port=port, answering=True)
        time.sleep(0.3)
    stop(data_dir)
    raise LocalKafkaError(f"the broker did not answer on {bootstrap} within {timeout:.0f}s")


def stop(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 30.0) -> bool:
    """Stop the broker of `data_dir`; True if one was running."""
    data_dir = data_dir.resolve()
    pid_file = data_dir / "kafka.pid"
    pid = _read_int(pid_file)
    if pid is None or not _is_our_broker(pid, data_dir):
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_broker(pid, data_dir) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _is_our_broker(pid, data_dir):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _check_scram_users(data_dir: Path, security: Security | None) -> None:
    """SCRAM users are written when the storage is formatted: a later start cannot add any."""
    if security is None or not (data_dir / "logs" / "meta.properties").exists():
        return
    known = (
        set((data_dir / "scram-users").read_text().split())
        if (data_dir / "scram-users").exists()
        else set()
    )
    missing = sorted(set(security.users) - known)
    if missing:
        raise LocalKafkaError(
            f"SASL users {', '.join(missing)} were not created when {data_dir} was first "
            "formatted; use a new --data-dir"
        )
