"""Label-free checkpoint selection, judged on the benchmark's runs: which rule, and does it hold on a left-out target.

bench_uda.py scores every candidate of every adapting run (the epochs from the end of the burn-in
on, training/selection.py) on the target's test set, beside its label-free figures. This report:

1. rank correlation (Spearman, within each run, averaged over runs) of each figure and each rule's
   score with the true Dice of the candidates;
2. per source and target, the Dice of the candidate each rule keeps (mean ± sd over seeds), beside
   source-only, the final epoch and the best candidate (an oracle that needs labels);
3. leave one target out: the rule chosen on the other targets (mean gain over source-only), and
   what it gives on the left-out one.

    python benchmarks/selection_report.py --work /tmp/uda_main [--row vox-uda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from voxuda_cli.training.selection import FIGURES, SELECTORS, choose, in_band  # noqa: E402

Candidate = dict[str, Any]


def rule_scores() -> dict[str, Callable[[Candidate], float]]:
    """Every --select rule as a score of a candidate (last: its epoch), and the two references."""
    scores: dict[str, Callable[[Candidate], float]] = {}
    for name, score in SELECTORS.items():
        scores[name] = (lambda c: float(c["epoch"])) if score is None else score  # type: ignore[assignment]
    scores["burn-in (first candidate)"] = lambda c: -float(c["epoch"])
    return scores


def chosen(candidates: Sequence[Candidate], score: Callable[[Candidate], float], band: bool = True) -> Candidate:
    """The candidate a reference (the burn-in model) is: the best by ``score`` (in band if ``band``)."""
    ranked = [c for c in candidates if in_band(c)] if band else list(candidates)
    return max(ranked or candidates, key=lambda c: (score(c), c["epoch"]))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * sd:.1f}"


def correlation_table(runs: Sequence[dict[str, Any]]) -> str:
    lines = ["| figure or rule | mean Spearman with Dice | runs |", "|---|---|---|"]
    named = {f"`{f}`": (lambda c, f=f: c[f]) for f in FIGURES}
    named.update({f"rule `{k}`": v for k, v in rule_scores().items() if k != "last"})
    for name, score in named.items():
        values = [spearman([score(c) for c in r["candidates"]], [c["dice"] for c in r["candidates"]]) for r in runs]
        kept = [v for v in values if v is not None]
        lines.append(f"| {name} | {statistics.fmean(kept):+.2f} | {len(kept)} |" if kept else f"| {name} | - | 0 |")
    return "\n".join(lines)


def rule_dice(runs: Sequence[dict[str, Any]], rule: str) -> list[float]:
    """Dice of the candidate a --select rule keeps (training/selection.choose itself), or a reference's."""
    if rule in SELECTORS:
        kept = [choose(r["candidates"], rule) for r in runs]
        return [next(c["dice"] for c in r["candidates"] if c["epoch"] == k["epoch"]) for r, k in zip(runs, kept)]
    return [chosen(r["candidates"], rule_scores()[rule], band=False)["dice"] for r in runs]


def per_target_table(runs: Sequence[dict[str, Any]], baseline: dict[tuple[str, str, int], float]) -> str:
    rules = list(rule_scores())
    header = ["source -> target", "source-only", *[f"`{r}`" for r in rules], "best candidate (oracle)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for source, target in sorted({(r["source"], r["target"]) for r in runs}):
        group = sorted((r for r in runs if (r["source"], r["target"]) == (source, target)), key=lambda r: r["seed"])
        base = [baseline[(source, target, r["seed"])] for r in group if (source, target, r["seed"]) in baseline]
        cells = [f"{source} -> {target}", _mean_sd(base), *[_mean_sd(rule_dice(group, rule)) for rule in rules]]
        cells.append(_mean_sd([max(c["dice"] for c in r["candidates"]) for r in group]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def leave_one_out_table(runs: Sequence[dict[str, Any]], baseline: dict[tuple[str, str, int], float]) -> str:
    """Choose the rule on all targets but one (mean gain over source-only), report it on that one."""
    rules = list(SELECTORS)

    def gain(group: Sequence[dict[str, Any]], rule: str) -> float:
        pairs = [
            (d, baseline[(r["source"], r["target"], r["seed"])])
            for r, d in zip(group, rule_dice(group, rule))
            if (r["source"], r["target"], r["seed"]) in baseline
        ]
        return statistics.fmean(d - b for d, b in pairs) if pairs else float("nan")

    lines = [
        "| left-out target | rule chosen on the others | its gain there | gain on the left-out target | `last` there |",
        "|---|---|---|---|---|",
    ]
    for held_out in sorted({r["target"] for r in runs}):
        others = [r for r in runs if r["target"] != held_out]
        mine = [r for r in runs if r["target"] == held_out]
        if not others:
            continue
        best = max(rules, key=lambda rule: gain(others, rule))
        lines.append(
            f"| `{held_out}` | `{best}` | {100 * gain(others, best):+.1f} | {100 * gain(mine, best):+.1f} | "
            f"{100 * gain(mine, 'last'):+.1f} |"
        )
    return "\n".join(lines)


def selection_section(results: Sequence[dict[str, Any]], row: str = "vox-uda") -> str:
    runs = [r for r in results if r["row"] == row and r.get("candidates")]
    if not runs:
        return ""
    baseline = {
        (r["source"], r["target"], r["seed"]): r["scores"][r["default_weights"]]["dice"]
        for r in results
        if r["row"] == "source-only"
    }
    return f"""### Label-free checkpoint selection (row `{row}`, {len(runs)} runs)

Rank correlation with the true Dice of each run's candidates (epochs from the end of the burn-in):

{correlation_table(runs)}

Dice of the candidate each rule keeps (`last`: the final epoch; the burn-in candidate is the
source-only network at half the schedule), mean ± sd over seeds:

{per_target_table(runs, baseline)}

Leave one target out (gain: Dice minus source-only's, same source and seed, mean over runs):

{leave_one_out_table(runs, baseline)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="bench_uda.py's --work folder")
    parser.add_argument("--row", default="vox-uda")
    args = parser.parse_args()
    results = [json.loads(p.read_text()) for p in sorted(args.work.glob("*/*/bench_result.json"))]
    print(selection_section(results, args.row) or f"no run of row {args.row} with candidates under {args.work}")


if __name__ == "__main__":
    main()
