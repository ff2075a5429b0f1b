"""One RPC bench process (started by ``python -m bench.rpc``, never by hand)::

python -m bench.rpc.worker server STACK CERTFILE KEYFILE
python -m bench.rpc.worker client STACK WORKLOAD PORT CAFILE SERVER_PID COUNT
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    role, stack, *rest = argv
    if stack == "ghostwire":
        from . import gw_stack

        gw_stack.run(role, rest)
    else:
        from . import grpc_stacks

        grpc_stacks.run(role, stack, rest)


if __name__ == "__main__":
    main(sys.argv[1:])
