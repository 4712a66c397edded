"""The HTTP reward server (`rlvr serve-rewards`): a thin layer of validation, limits and logging over the rewards."""

from rlvr.server.app import GoldIndex, ServerConfig, create_app

__all__ = ["GoldIndex", "ServerConfig", "create_app"]
