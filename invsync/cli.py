"""The `invsync` command: worker, local Kafka broker, and the rest of the tooling."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import invsync
from invsync import localkafka
from invsync.localsecurity import Security
from models.errors import InvsyncError
from streams.kafka import security_kwargs
from streams.settings import SettingsError, load_settings, require_callback_auth

GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two young collections of the worker's cyclic GC (default 700)."""

STOP_GRACE_S = 15.0
"""How long a stopping worker may take once its consumer has stopped (offsets committed,
pending updates flushed) before it exits anyway. Closing a TLS connection can wait 30 s
for the broker's close_notify (the event loop's ``ssl_shutdown_timeout``): seen in about
1 of 10 stops through SASL_SSL, after "LeaveGroup request succeeded"."""

log = logging.getLogger("invsync.worker")


def arm_stop_deadline(
    seconds: float = STOP_GRACE_S, *, exit_now: Callable[[int], object] = os._exit
) -> threading.Timer:
    """Exit with status 0 if the process still runs ``seconds`` from now, with one line
    saying so. Armed once the consumer stopped: what is left is closing connections and
    stores, and a SIGKILL-like end of those loses nothing (the fault suite's premise)."""

    def expire() -> None:
        log.warning(
            "still stopping %.0f s after the consumer stopped (offsets were committed); "
            "exiting now",
            seconds,
        )
        logging.shutdown()
        exit_now(0)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    require_callback_auth(settings)  # before touching the broker: one clear line
    import logging.config

    from faust import Worker

    from streams.app import create_app
    from streams.logs import logging_config
    from streams.topics import ensure_topics

    # Ours until the worker starts; then Faust applies the same config to its own set-up.
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")  # the event loop policy: Faust's threads get uvloop too
    asyncio.run(ensure_topics(settings))
    # Every event allocates a few dozen objects (record, message, event, state, output):
    # at the default 700 allocations a young collection ran every few events and took
    # 14% of the rules' time (`make bench-rules`). Every 20,000 costs ~1 ms of pause.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    runtime = create_app(settings)

    def bound_the_stop(sender: object, **kwargs: object) -> None:
        arm_stop_deadline()

    shutdown: Any = runtime.app.on_before_shutdown  # sent once the consumer stopped
    shutdown.connect(bound_the_stop)
    worker = Worker(
        runtime.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        logging_config=logging_config(settings.log_format, settings.log_level),
    )
    worker.execute_from_commandline()
    return 0


def _security(args: argparse.Namespace) -> Security | None:
    if args.sasl_ssl_port is None and args.ssl_port is None:
        return None
    if not (args.tls_cert and args.tls_key):
        raise localkafka.LocalKafkaError("secured listeners need --tls-cert and --tls-key")
    users: dict[str, str] = {}
    if args.sasl_ssl_port is not None:
        password = os.environ.get("KAFKA_SASL_PASSWORD", "")
        if not (args.sasl_user and password):
            raise localkafka.LocalKafkaError(
                "--sasl-ssl-port needs --sasl-user, with its password in KAFKA_SASL_PASSWORD"
            )
        users[args.sasl_user] = password
    return Security(
        certfile=Path(args.tls_cert),
        keyfile=Path(args.tls_key),
        sasl_ssl_port=args.sasl_ssl_port,
        ssl_port=args.ssl_port,
        cafile=Path(args.tls_ca) if args.tls_ca else None,
        users=users,
    )


def _cmd_kafka_start(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    st = localkafka.start(port=args.port, data_dir=data_dir, security=_security(args))
    print(f"kafka {localkafka.KAFKA_VERSION} running: pid {st.pid}, bootstrap {st.bootstrap}")
    for protocol, address in localkafka.listeners(data_dir):
        if protocol != "PLAINTEXT":
            print(f"  {protocol} listener on {address}")
    return 0


def _cmd_kafka_stop(args: argparse.Namespace) -> int:
    stopped = localkafka.stop(Path(args.data_dir))
    print("kafka stopped" if stopped else "kafka was not running")
    return 0


def _cmd_kafka_status(args: argparse.Namespace) -> int:
    st = localkafka.status(Path(args.data_dir))
    if not st.running:
        print("kafka not running")
        return 1
    state = "answering" if st.answering else "not answering"
    print(f"kafka running: pid {st.pid}, bootstrap {st.bootstrap}, {state}")
    return 0 if st.answering else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    import uuid

    from invsync.demo.feed import simulate
    from invsync.demo.simulator import SimConfig
    from streams.topics import ensure_topics

    settings = load_settings()
    config = SimConfig(
        keys=args.keys,
        locations=args.locations,
        seed=args.seed,
        tag=f"s{uuid.uuid4().hex[:6]}",
        order_rate=args.order_rate,
    )

    async def run() -> int:
        await ensure_topics(settings)
        return await simulate(
            bootstrap=settings.kafka_bootstrap_servers,
            stock_topic=settings.topic_stock_events,
            orders_topic=settings.topic_orders,
            config=config,
            rate=args.rate,
            duration=args.duration,
            truth_path=Path(args.truth) if args.truth else None,
            security=security_kwargs(settings),
        )

    return asyncio.run(run())


def _cmd_demo(args: argparse.Namespace) -> int:
    from invsync.demo.runner import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            duration=args.duration,
            rate=args.rate,
            order_rate=args.order_rate,
            keys=args.keys,
            locations=args.locations,
            seed=args.seed,
            debounce_ms=args.debounce_ms,
            max_delay_ms=args.max_delay_ms,
            converge_timeout=args.converge_timeout,
            kafka_port=args.kafka_port,
            kafka_data_dir=Path(args.kafka_data_dir),
            work_dir=Path(args.work_dir),
            keep_topics=args.keep_topics,
        )
    )


def _serve_mock(kind: str, host: str, port: int) -> int:
    import signal

    from invsync.mocks.increff import MockIncreff
    from invsync.mocks.marketplace import MockMarketplace
    from invsync.mocks.server import MockHttpServer

    async def serve() -> None:
        mock: MockHttpServer = MockIncreff() if kind == "increff" else MockMarketplace()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        url = await mock.start(host=host, port=port)
        if isinstance(mock, MockIncreff):
            print(f"{mock.name} listening on {url} (auth headers {', '.join(mock.auth_headers)})")
        else:
            print(f"{mock.name} listening on {url} (PUT /inventory)")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await mock.stop()

    asyncio.run(serve())
    return 0


def _cmd_mock_increff(args: argparse.Namespace) -> int:
    return _serve_mock("increff", args.host, args.port)


def _cmd_mock_marketplace(args: argparse.Namespace) -> int:
    return _serve_mock("marketplace", args.host, args.port)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _add_sim_options(p: argparse.ArgumentParser, duration: float) -> None:
    p.add_argument(
        "--rate", type=_positive_float, default=2000.0, help="events per second (default 2000)"
    )
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=duration,
        help=f"seconds of activity (default {duration:.0f})",
    )
    p.add_argument(
        "--keys", type=_positive_int, default=1000, help="(location, SKU) keys (default 1000)"
    )
    p.add_argument(
        "--order-rate",
        type=float,
        default=20.0,
        help="new marketplace orders per second, part of --rate (default 20)",
    )
    p.add_argument("--locations", type=_positive_int, default=4, help="locations (default 4)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invsync",
        description="Inventory and order sync between Increff-run warehouses and marketplaces.",
    )
    parser.add_argument("--version", action="version", version=f"invsync {invsync.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser(
        "worker", help="run a stream worker (settings from the environment / .env)"
    )
    worker.set_defaults(func=_cmd_worker)

    kafka = sub.add_parser("kafka", help="a local Apache Kafka broker for development and tests")
    ksub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    data_help = f"broker data folder (default {localkafka.DEFAULT_DATA_DIR})"
    kstart = ksub.add_parser("start", help="start the broker and wait until it answers")
    kstart.add_argument("--port", type=int, default=localkafka.DEFAULT_PORT, help="listener port")
    kstart.add_argument("--data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    secured = kstart.add_argument_group(
        "secured listeners (beside the PLAINTEXT one, to try a client as a managed cluster "
        "would see it)"
    )
    secured.add_argument(
        "--sasl-ssl-port",
        type=int,
        help="add a SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
    )
    secured.add_argument(
        "--ssl-port", type=int, help="add an SSL listener that requires client certificates"
    )
    secured.add_argument("--tls-cert", help="the broker's certificate, PEM, for 127.0.0.1")
    secured.add_argument("--tls-key", help="its private key, PEM PKCS#8, unencrypted")
    secured.add_argument("--tls-ca", help="CA of the client certificates (--ssl-port)")
    secured.add_argument(
        "--sasl-user",
        help="SASL user, its password read from KAFKA_SASL_PASSWORD (SCRAM users are "
        "created when the data dir is first formatted)",
    )
    kstart.set_defaults(func=_cmd_kafka_start)
    kstop = ksub.add_parser("stop", help="stop the broker started from --data-dir")
    kstop.add_argument("--data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    kstop.set_defaults(func=_cmd_kafka_stop)
    kstatus = ksub.add_parser("status", help="is the broker running and answering?")
    kstatus.add_argument("--data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    kstatus.set_defaults(func=_cmd_kafka_status)

    simulate = sub.add_parser(
        "simulate",
        help="produce simulated warehouse stock events and marketplace orders",
        description="Produce simulated stock events (SNAPSHOT, then DELTA bursts and picks) "
        "and marketplace orders (ORDER_CREATED, CUSTOMER_CANCELLED) to the topics of the "
        "settings (KAFKA_BOOTSTRAP_SERVERS, INVSYNC_TOPIC_*), with Zipf-like SKU popularity.",
    )
    _add_sim_options(simulate, 60.0)
    simulate.add_argument(
        "--truth", metavar="FILE", help="write the expected ATP per key (JSON) to FILE"
    )
    simulate.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser(
        "demo",
        help="the product demo: broker, mocks, a worker and the simulator, checked end to end",
        description="Start a local broker (unless KAFKA_BOOTSTRAP_SERVERS is set), a mock "
        "Increff and a mock marketplace, an `invsync worker`, run the simulator with live "
        "progress, wait for convergence and compare the marketplace's final quantities with "
        "the simulator's ground truth. Exit code 0 only when every key matches.",
    )
    _add_sim_options(demo, 60.0)
    demo.add_argument(
        "--debounce-ms", type=int, default=200, help="worker debounce window (default 200)"
    )
    demo.add_argument(
        "--max-delay-ms",
        type=int,
        default=1000,
        help="worker max delay of a busy key before it is published (default 1000)",
    )
    demo.add_argument(
        "--converge-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds to wait for convergence after the last event (default 60)",
    )
    demo.add_argument(
        "--kafka-port",
        type=int,
        default=localkafka.DEFAULT_PORT,
        help="port of the local broker when one is started (a free one if busy; default 9092)",
    )
    demo.add_argument("--kafka-data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    demo.add_argument(
        "--work-dir", default=".invsync/demo", help="worker log and data (default .invsync/demo)"
    )
    demo.add_argument(
        "--keep-topics", action="store_true", help="keep this run's topics (deleted by default)"
    )
    demo.set_defaults(func=_cmd_demo)

    for name, default_port, what, func in (
        ("mock-increff", 8081, "Increff's order and returns APIs", _cmd_mock_increff),
        ("mock-marketplace", 8082, "a marketplace inventory URL", _cmd_mock_marketplace),
    ):
        mock = sub.add_parser(
            name,
            help=f"serve a mock of {what} (for docker compose and manual tests)",
            description=f"Serve a mock of {what} until SIGINT/SIGTERM."
            + (
                " Auth headers: authUsername invsync-user, authPassword invsync-pass, "
                "authDomainName invsync-domain."
                if name == "mock-increff"
                else " Takes PUT /inventory (Increff location-wise ATP body, <= 200 SKUs)."
            ),
        )
        mock.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
        mock.add_argument(
            "--port", type=int, default=default_port, help=f"port (default {default_port})"
        )
        mock.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"invsync: {exc}", file=sys.stderr)
        return 2
    except InvsyncError as exc:  # ours, with a message made to be read: one line, no trace
        print(f"invsync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
