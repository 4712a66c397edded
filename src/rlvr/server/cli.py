"""`rlvr serve-rewards`: flags and launch of the reward server.

rlvr serve-rewards --reward math_verifier --gold data/train.jsonl --port 6000 --log logs/rewards.jsonl
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys

from rlvr.argtypes import finite, megabytes, port, positive_int, seconds


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
        "--weights", type=finite, nargs="+", default=None, help="one weight per --reward (default: 1.0 each)"
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
    parser.add_argument("--port", type=port, default=6000, help="port, 1 to 65535 (default: 6000)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="scoring processes, each one request at a time (default: 2)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every request (default: $RLVR_API_KEY, else none)",
    )
    parser.add_argument(
        "--log", default=None, metavar="FILE", help="append every scored sample to this JSONL file"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="seconds a request may wait for a free worker (else 503) and then take to score (else 504, and its "
        "worker is replaced) (default: 60)",
    )
    parser.add_argument(
        "--reward-options",
        default=None,
        metavar="YAML",
        help="options per reward, inline YAML keyed by reward, e.g. '{code_tests: {sandbox: bubblewrap, "
        "partial_credit: false}}' (an option is any parameter of the function but prompts and completions)",
    )
    parser.add_argument(
        "--max-request-mb",
        type=megabytes,
        default=16.0,
        help="larger request bodies are answered 413 (default: 16)",
    )


class UsageError(Exception):
    """A flag value that parses but cannot be used; the message says what to do."""


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key is None:
        return os.environ.get("RLVR_API_KEY") or None  # an empty variable means no key, as if unset
    key = args.api_key
    if not key:
        raise UsageError("--api-key is empty: give a key, or leave the flag out to serve without one")
    if not all("!" <= c <= "~" for c in key):
        # A header value cannot carry it as it is: no client could ever authenticate.
        raise UsageError(
            "--api-key must be printable ASCII without spaces, as an 'Authorization: Bearer' header"
        )
    return key


def _reward_options(text: str | None) -> dict | None:
    """`--reward-options` read as YAML: a mapping of reward to a mapping of its options."""
    if text is None:
        return None
    import yaml

    from rlvr.config.loading import load_yaml

    try:
        options = load_yaml(text)  # a key given twice is refused, as in configs
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"--reward-options is not valid YAML ({problem}): {text!r}") from None
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UsageError(
            f"--reward-options must map each reward to its options, e.g. '{{code_tests: {{timeout: 5}}}}', "
            f"got {text!r}"
        )
    return options


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`, before any worker starts; `UsageError` saying what to do when it cannot be."""
    where = f"cannot listen on {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(
            f"{where}: {host!r} is not an address or a known host name ({exc}); give an address of this machine, "
            "e.g. --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: rebind at once after a restart
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            hint = "the port is already in use (another server is running there?): stop it or choose another --port"
        elif exc.errno == errno.EACCES:
            hint = "permission denied (ports below 1024 need privileges): choose a --port of 1024 or above"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = f"{host} is not an address of this machine: use 127.0.0.1, 0.0.0.0 or one of its addresses"
        else:
            hint = f"{exc.strerror or exc}"
        raise UsageError(f"{where}: {hint}") from None
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean stop, 2 on a bad flag, spec, gold file or address, 1 when the
    scoring workers fail to start."""
    import uvicorn

    from rlvr.rewards.registry import RewardSpecError
    from rlvr.server.app import ServerConfig, create_app

    try:
        if "reasoning_gym" in args.rewards:  # its scorers import the package: say so now, not on each request
            from rlvr.optional import require

            require("reasoning_gym", "--reward reasoning_gym", "serve another --reward")
        config = ServerConfig(
            rewards=args.rewards,
            weights=args.weights,
            gold_path=args.gold,
            workers=args.workers,
            api_key=_api_key(args),
            log_path=args.log,
            request_timeout=args.timeout,
            max_request_bytes=int(args.max_request_mb * 2**20),
            reward_options=_reward_options(args.reward_options),
        )
        app = create_app(config)
        sock = _bind(args.host, args.port)
    except (UsageError, RewardSpecError, ValueError, OSError) as exc:
        print(f"rlvr serve-rewards: error: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and config.api_key is None:
        print(
            f"rlvr serve-rewards: warning: listening on {args.host} without --api-key: anyone who can reach this "
            "port can use it",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    banner = f"rlvr serve-rewards: serving [{', '.join(app.state.reward_names)}] at http://{host}:{args.port}/get_reward"
    server = _server_class()(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"), banner)
    try:
        with sock:
            server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again
        return 0
    except SystemExit:  # the lifespan failed: uvicorn has logged why
        pass
    if not server.started:
        print(
            "rlvr serve-rewards: error: the scoring workers did not start (see the log above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that prints the banner once it serves: after the workers started, on a bound socket."""

        def __init__(self, config: uvicorn.Config, banner: str) -> None:
            super().__init__(config)
            self.banner = banner

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(self.banner, file=sys.stderr, flush=True)

    return Server


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
