"""A marketplace following invsync's inventory (README "Integrating")."""

import asyncio
import os

from invsync.clients import InventoryView
from models.events import InventoryUpdate

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
TOPIC = os.environ.get("INVSYNC_TOPIC_INVENTORY", "marketplace.inventory")


def on_change(update: InventoryUpdate, previous: InventoryUpdate | None) -> None:
    # Called only for a higher version than the key had: show update.quantity.
    was = "-" if previous is None else previous.quantity
    print(f"{update.key}: {was} -> {update.quantity}")


async def main() -> None:
    async with InventoryView(BOOTSTRAP, topic=TOPIC, on_change=on_change) as view:
        async with asyncio.timeout(60):
            await view.wait_caught_up()
        print(f"caught up: {len(view)} keys, {view.stale} older records ignored")
        # A marketplace keeps the view running here; on_change sees every new update.


asyncio.run(main())
