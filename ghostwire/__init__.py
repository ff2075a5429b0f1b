"""ghostwire: a trio-native QUIC, HTTP/3 and RPC framework."""

__version__ = "0.1.0"
