"""The trio shell around the sans-IO QUIC core (the only part that imports trio)."""
