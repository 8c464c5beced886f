"""connectors: HTTP clients for Increff and the marketplace. Imports models only."""
