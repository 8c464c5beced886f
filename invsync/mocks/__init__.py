"""mocks: small real aiohttp servers standing in for Increff and a marketplace.

Used by the integration tests and the demo. They import models only.
"""

from invsync.mocks.increff import Applied, MockIncreff
from invsync.mocks.marketplace import MockMarketplace, ReceivedQuantity
from invsync.mocks.server import MockHttpServer, RecordedRequest

__all__ = [
    "Applied",
    "MockHttpServer",
    "MockIncreff",
    "MockMarketplace",
    "ReceivedQuantity",
    "RecordedRequest",
]
