"""The `invsync` command: worker, local Kafka broker, and the rest of the tooling."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from invsync.streams import localkafka
from invsync.streams.settings import SettingsError, load_settings


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    from faust import Worker

    from invsync.streams.app import create_app
    from invsync.streams.topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    runtime = create_app(settings)
    worker = Worker(runtime.app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0


def _cmd_kafka_start(args: argparse.Namespace) -> int:
    st = localkafka.start(port=args.port, data_dir=Path(args.data_dir))
    print(f"kafka {localkafka.KAFKA_VERSION} running: pid {st.pid}, bootstrap {st.bootstrap}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invsync",
        description="Inventory and order sync between Increff-run warehouses and marketplaces.",
    )
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
    kstart.set_defaults(func=_cmd_kafka_start)
    kstop = ksub.add_parser("stop", help="stop the broker started from --data-dir")
    kstop.add_argument("--data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    kstop.set_defaults(func=_cmd_kafka_stop)
    kstatus = ksub.add_parser("status", help="is the broker running and answering?")
    kstatus.add_argument("--data-dir", default=str(localkafka.DEFAULT_DATA_DIR), help=data_help)
    kstatus.set_defaults(func=_cmd_kafka_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"invsync: {exc}", file=sys.stderr)
        return 2
    except localkafka.LocalKafkaError as exc:
        print(f"invsync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
