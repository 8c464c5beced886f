"""invsync: inventory and order sync between Increff-run warehouses and marketplaces."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invsync")  # one source of truth: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
