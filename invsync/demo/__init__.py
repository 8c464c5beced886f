"""The product demo: a warehouse + marketplace simulator and the `invsync demo` runner.

`simulator` is pure generation (no I/O) with its ground truth; `feed` produces its
messages to Kafka at a paced rate; `runner` wires a broker, the mocks, a worker and
the simulator together and checks the marketplace against the ground truth.
"""
