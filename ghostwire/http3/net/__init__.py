"""The trio layer of ghostwire.http3: client, server and ASGI adapter."""
