"""ghostwire vs aioquic benchmarks: ``python -m bench`` (see README.md)."""
