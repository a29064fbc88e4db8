"""``python -m loadtest.ws_baseline --lib picows --port 0``: run one bare broadcast server."""

from __future__ import annotations

import argparse

import uvloop

from .server import LIBRARIES, run_until_stdin_closes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", choices=LIBRARIES, default="picows")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compress", choices=("zlib-stream", "zstd-stream"), default=None,
                        help="compress each receiver's stream as the gateway does")
    args = parser.parse_args()
    uvloop.run(run_until_stdin_closes(args.lib, args.host, args.port, args.compress))


if __name__ == "__main__":
    main()
