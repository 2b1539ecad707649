"""Regenerate the README's real-data results tables from bench/results/*/results.json (run after a benchmark)."""

from pathlib import Path

from AlignFlowLib.bench.report import update_readme

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    changed = update_readme(root / "README.md", root / "bench" / "results")
    print("README.md updated" if changed else "README.md already up to date")
