"""A warehouse system publishing stock events (README "Integrating")."""

import asyncio
import os
from datetime import UTC, datetime, timedelta

from invsync.clients import StockEventPublisher

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
TOPIC = os.environ.get("INVSYNC_TOPIC_STOCK_EVENTS", "warehouse.stock-events")


async def main() -> None:
    now = datetime.now(UTC)
    later = now + timedelta(seconds=1)  # after the count: a change the count does not hold
    events = [
        # A physical count: the absolute on-hand of SKU-42 at WH1.
        {"eventId": "count-7731", "type": "SNAPSHOT", "locationCode": "WH1",
         "channelSkuCode": "SKU-42", "quantity": 10, "occurredAt": now, "reason": "ADJUSTMENT"},
        # Two units picked for an order: a signed change that also ends its reservation.
        {"eventId": "pick-7732", "type": "DELTA", "locationCode": "WH1",
         "channelSkuCode": "SKU-42", "quantity": -2, "occurredAt": later, "reason": "PICK",
         "orderCode": "ORD-1001"},
        {"eventId": "grn-7733", "type": "DELTA", "locationCode": "WH2",
         "channelSkuCode": "SKU-42", "quantity": 5, "occurredAt": now, "reason": "GRN"},
    ]  # fmt: skip
    async with StockEventPublisher(BOOTSTRAP, topic=TOPIC) as publisher:
        for sent in await publisher.publish_many(events):
            print(f"{sent.key} -> partition {sent.partition}, offset {sent.offset}")


asyncio.run(main())
