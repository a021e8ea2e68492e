"""Synthetic anime sample library: generated H.264 episodes with ground truth, for tests,
benchmarks and the demo (no real anime can ship with the project).

    from data.synth import generate_library
    gt_path = generate_library(Path("var/sample"), series=4, episodes=3, seconds=30)
"""

from __future__ import annotations

from data.synth.library import SynthParams, generate_library, render_out_of_library

__all__ = ["SynthParams", "generate_library", "render_out_of_library"]
