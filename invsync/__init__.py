"""invsync: inventory and order sync between Increff-run warehouses and marketplaces."""

__version__ = "0.1.0"
