"""`rlvr serve-rewards`: flags and launch of the reward server.

rlvr serve-rewards --reward math_verifier --gold data/train.jsonl --port 6000 --log logs/rewards.jsonl
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `serve-rewards` flags to `parser`."""
    parser.add_argument(
        "--reward",
        dest="rewards",
        action="append",
        required=True,
        metavar="SPEC",
        help="reward to serve: a registered name (see docs/rewards.md), module:function or path/file.py:function; "
        "repeat for several, summed with --weights",
    )
    parser.add_argument(
        "--weights", type=float, nargs="+", default=None, help="one weight per --reward (default: 1.0 each)"
    )
    parser.add_argument(
        "--gold",
        default=None,
        metavar="FILE",
        help="JSONL with question and answer fields (GSM8K '#### N' answers are parsed): the gold answer of a "
        "prompt sent without one is looked up here by its question",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=6000, help="port (default: 6000)")
    parser.add_argument(
        "--workers", type=int, default=2, help="scoring processes, each one request at a time (default: 2)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RLVR_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every request (default: $RLVR_API_KEY, else none)",
    )
    parser.add_argument(
        "--log", default=None, metavar="FILE", help="append every scored sample to this JSONL file"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait for a free worker (else 503) and then take to score (else 504, and its "
        "worker is replaced) (default: 60)",
    )
    parser.add_argument(
        "--max-request-mb",
        type=float,
        default=16.0,
        help="larger request bodies are answered 413 (default: 16)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean stop, 2 on a bad flag, spec or gold file."""
    import uvicorn

    from rlvr.rewards.registry import RewardSpecError
    from rlvr.server.app import ServerConfig, create_app

    config = ServerConfig(
        rewards=args.rewards,
        weights=args.weights,
        gold_path=args.gold,
        workers=args.workers,
        api_key=args.api_key or None,
        log_path=args.log,
        request_timeout=args.timeout,
        max_request_bytes=int(args.max_request_mb * 2**20),
    )
    try:
        app = create_app(config)
    except (RewardSpecError, ValueError, OSError) as exc:
        print(f"rlvr serve-rewards: error: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and config.api_key is None:
        print(
            f"rlvr serve-rewards: warning: listening on {args.host} without --api-key: anyone who can reach this "
            "port can use it",
            file=sys.stderr,
        )
    names = ", ".join(app.state.reward_names)
    print(
        f"rlvr serve-rewards: serving [{names}] at http://{args.host}:{args.port}/get_reward", file=sys.stderr
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    except SystemExit as exc:  # uvicorn exits 1 when the port is taken
        return int(exc.code or 0)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m rlvr.server.cli ...`, the same as `rlvr serve-rewards ...`."""
    parser = argparse.ArgumentParser(
        prog="rlvr serve-rewards", description="Serve reward functions over HTTP."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
