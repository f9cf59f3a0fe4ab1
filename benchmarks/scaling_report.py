"""The scaling run's figures per core count as text, and its targets' verdicts."""

from __future__ import annotations

import statistics
from typing import Any

#: (what, needed, from which core count on)
TARGETS = (
    ("daemon >= 85% of the pipelined bound", 0.85, 1),
    ("JSON requests >= 95% of raw", 0.95, 1),
    ("auto within 5% of the best manual setting", 0.95, 1),
    (">= 3x the hand-written script", 3.0, 2),
    (">= 1.3x the good engineer's script", 1.3, 2),
)


def paired(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """The median over rounds of one round's throughput over the other's in the same
    round: their bursts ran minutes apart at most, so a drift of the machine between
    rounds (other work starting or ending) touches both sides of each ratio alike."""
    pairs = zip(ours["rounds_per_s"], theirs["rounds_per_s"])
    return round(float(statistics.median(a / max(b, 1e-9) for a, b in pairs)), 3)


def per_core_left(figures: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with each round's throughput per core left to the daemon, where the
    broker and the load generator shared its cores: JSON requests carry a third more
    bytes, which those two pay for on the same cores (the daemon's own CPU per request
    is the same), so JSON and raw bursts are compared on the cores each left the daemon,
    as the bound is. Unchanged where the two ran on other cores."""
    if not run["shared"]:
        return figures
    others = figures.get("others_cores_rounds") or [figures["others_cores"]] * len(
        figures["rounds_per_s"]
    )
    left = [max(run["cores"] - o, 1e-9) for o in others]
    return {**figures, "rounds_per_s": [r / c for r, c in zip(figures["rounds_per_s"], left)]}


def ratios(run: dict[str, Any]) -> dict[str, float]:
    """The daemon's (auto) throughput over each figure it is judged against; against a
    bound its median burst, against another server paired rounds (JSON against raw per
    core left to the daemon, see ``per_core_left``)."""
    d = run["daemon"]
    return {
        TARGETS[0][0]: round(d["throughput_per_s"] / max(run["bound_per_s"], 1e-9), 3),
        TARGETS[1][0]: paired(per_core_left(run["json"], run), per_core_left(d, run)),
        TARGETS[2][0]: paired(d, run["settings"][run["best_manual"]]),
        TARGETS[3][0]: paired(d, run["baseline"]),
        TARGETS[4][0]: paired(d, run["peer"]),
    }


def targets(by_cores: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for cores, run in by_cores.items():
        got = ratios(run)
        for name, needed, from_cores in TARGETS:
            if int(cores) >= from_cores:
                value = got[name]
                out[f"{cores} core(s): {name}"] = {
                    "ratio": value,
                    "needed": needed,
                    "pass": value >= needed,
                }
        lost = [
            k
            for k, r in (*run["settings"].items(), ("json", run["json"]))
            if r["answered"] != r["sent"]
        ]
        out[f"{cores} core(s): no request lost"] = {"pass": not lost}
    return out


def _rounds(figures: dict[str, Any]) -> str:
    return ", ".join(f"{x:.1f}" for x in figures["rounds_per_s"])


def report(run: dict[str, Any]) -> None:
    """One core count's figures."""
    c = run["cores"]
    cpus = ",".join(map(str, run["daemon_cpus"]))
    others = ",".join(map(str, run["broker_and_load_cpus"]))
    print(f"\n{c} core(s): the daemon on CPU {cpus}", end="")
    if run["shared"]:
        print(
            f"; the broker and the load generator share them (they used "
            f"{run['others_cores_during_bursts']:.2f} cores during the daemon's bursts, "
            "taken off the bound)"
        )
    else:
        print(f"; the broker and the load generator on CPU {others}")
    invoke = ", ".join(f"{k} thread(s) {ms:.2f} ms" for k, ms in run["invoke_ms"].items())
    print(f"  decode of a request (Engine.prepare) {run['decode_ms']:.2f} ms; invoke {invoke}")
    measured = run.get("measured")
    if measured:
        print(
            "  (the faster of two measurements, before the bursts and after them: decode "
            + " and ".join(f"{m['decode_ms']:.2f}" for m in measured.values())
            + " ms, invoke at 1 thread "
            + " and ".join(f"{m['invoke_ms']['1']:.2f}" for m in measured.values())
            + " ms)"
        )
    cores = c - (run["others_cores_during_bursts"] if run["shared"] else 0.0)
    print(
        f"  pipelined bound: min({cores:.2f} cores / ({run['decode_ms']:.2f} + "
        f"{run['invoke_ms']['1']:.2f} ms), 1 / {min(run['invoke_ms'].values()):.2f} ms) = "
        f"{run['bound_per_s']:.1f}/s"
    )
    d, j = run["daemon"], run["json"]
    got = ratios(run)
    print(
        f"  other work on the machine took {d['other_work_cores']:.2f} of the daemon's cores "
        "during its bursts (not taken off the bound)"
    )
    print(
        f"  daemon (auto): {d['throughput_per_s']:.1f}/s (rounds {_rounds(d)}), "
        f"{got[TARGETS[0][0]]:.2f} of the bound; {d['cpu_ms_per_request']:.2f} ms of CPU a "
        "request"
    )
    if run["shared"]:
        versus = (
            f"{paired(j, d):.2f} of raw, {got[TARGETS[1][0]]:.2f} per core left to the "
            f"daemon (the broker and the load generator took {j['others_cores']:.2f} cores "
            f"in these bursts, {d['others_cores']:.2f} in the raw ones)"
        )
    else:
        versus = f"{got[TARGETS[1][0]]:.2f} of raw"
    print(
        f"  daemon (auto), JSON requests: {j['throughput_per_s']:.1f}/s (rounds {_rounds(j)}), "
        f"{versus}; {j['cpu_ms_per_request']:.2f} ms of CPU a request"
    )
    for name, s in run["settings"].items():
        if name != "auto":
            print(
                f"  daemon, {name}: {s['throughput_per_s']:.1f}/s (rounds {_rounds(s)}), "
                f"{s['cpu_ms_per_request']:.2f} ms of CPU a request"
            )
    print(f"  best manual setting: {run['best_manual']}; auto / best {got[TARGETS[2][0]]:.2f}")
    for key, what, target in (
        ("baseline", "hand-written script", TARGETS[3][0]),
        ("peer", "good engineer's script", TARGETS[4][0]),
    ):
        p = run[key]
        print(
            f"  {what} ({p['threads']} interpreter thread(s)): {p['throughput_per_s']:.1f}/s "
            f"(rounds {_rounds(p)}), {p['cpu_ms_per_request']:.2f} ms of CPU a request; "
            f"daemon {got[target]:.2f}x (median of paired rounds)"
        )
    print("  daemon (auto) threads under load, per request: CPU ms / runqueue wait ms")
    for t in run["threads"]:
        if t["cpu_ms_per_request"] or t["runqueue_ms_per_request"]:
            print(
                f"    {t['name']:<16} {t['cpu_ms_per_request']:7.3f} "
                f"{t['runqueue_ms_per_request']:7.3f}"
            )
