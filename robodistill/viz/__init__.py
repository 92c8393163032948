"""Watching and plotting runs: the interactive viewer, offscreen video and the run report (docs/design.md §1).

``viewer`` drives one environment in MuJoCo's passive viewer, ``render`` writes side-by-side videos of several
policies on the same episode, ``report`` turns ``metrics.jsonl`` and ``summary.json`` into plots and a markdown
page, and ``commands`` adds ``view``, ``render`` and ``report`` to the command line.
"""
