"""Size: the read and confirm figures on an empty letter, then with 1,000,000 signatures.

    python -m bench.size [--signatures 1000000] [--storm-duration 30] [--workers 2]

One run, one database (letters_bench by default, recreated at the start):
  1. the demo letter with no signatures: bench.read and bench.storm;
  2. bench.seed adds N verified signatures (COPY; counts kept exact);
  3. the same bench.read and bench.storm again;
and a table comparing each figure before and after. Reads compare ratios to the bare
endpoint measured in the same phase, so a busier or quieter machine between phases does
not pass for a change caused by size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import common, read, seed, storm


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signatures", type=int, default=1_000_000)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument("--read-workers", default="1")
    parser.add_argument("--read-duration", type=float, default=10.0)
    parser.add_argument("--read-rounds", type=int, default=2)
    parser.add_argument("--read-targets", default="bare,api,html,badge")
    parser.add_argument("--workers", default="2", help="storm worker count")
    parser.add_argument("--storm-duration", type=float, default=30.0)
    parser.add_argument("--mail", choices=("smtp", "outbox"), default="smtp")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    name = common.check_db_name(args.database)
    common.reset_database(name)
    read_args = [
        "--database",
        name,
        "--keep-db",
        "--workers",
        args.read_workers,
        "--duration",
        str(args.read_duration),
        "--rounds",
        str(args.read_rounds),
        "--targets",
        args.read_targets,
        "--quiet-wait",
        str(args.quiet_wait),
    ]
    storm_args = [
        "--database",
        name,
        "--keep-db",
        "--workers",
        args.workers,
        "--duration",
        str(args.storm_duration),
        "--mail",
        args.mail,
        "--rounds",
        "1",
        "--quiet-wait",
        str(args.quiet_wait),
    ]
    if args.no_access_log:
        read_args.append("--no-access-log")
        storm_args.append("--no-access-log")
    phases: dict[str, Any] = {}
    for phase in ("empty", "seeded"):
        if phase == "seeded":
            print(f"\n=== seeding {args.signatures} signatures")
            phases["seed"] = seed.main(["--database", name, "--signatures", str(args.signatures)])
        print(f"\n=== {phase}: read")
        reads = read.main(read_args)
        print(f"\n=== {phase}: storm")
        storms = storm.main(storm_args)
        phases[phase] = {
            "read": reads,
            "storm": storms,
            "verified": common.letter_counts(common.database_url(name)),
        }
    print(
        f"\nsize: the same figures with {phases['empty']['verified']['verified_count']} and "
        f"{phases['seeded']['verified']['verified_count']} verified signatures at the end "
        "of each phase"
    )
    print(f"  {'figure':44} {'empty':>10} {'seeded':>10} {'seeded/empty':>12}")

    def row(label: str, before: float, after: float) -> None:
        change = after / before if before else float("nan")
        print(f"  {label:44} {before:10.2f} {after:10.2f} {change:12.2f}")

    for i, result in enumerate(phases["empty"]["read"]):
        after = phases["seeded"]["read"][i]
        for target, s in result["summary"].items():
            t = after["summary"][target]
            w = result["workers"]
            row(f"read {target} req/s (workers={w})", s["median_rps"], t["median_rps"])
            if target != "bare":
                row(f"read {target} ratio to bare (workers={w})", s["ratio"], t["ratio"])
        for which in ("app",):
            peak = max(m.get("VmHWM", 0) for m in result["memory"][which]) / 1024
            peak2 = max(m.get("VmHWM", 0) for m in after["memory"][which]) / 1024
            row(f"read peak RSS per {which} worker, MB", peak, peak2)
    for i, result in enumerate(phases["empty"]["storm"]):
        after = phases["seeded"]["storm"][i]
        w, who = result["workers"], result["target"]
        row(
            f"storm {who} confirmed/s (workers={w})",
            result["confirmed_per_s"],
            after["confirmed_per_s"],
        )
        row(
            f"storm {who} sign requests/s (workers={w})",
            result["signs_per_s"],
            after["signs_per_s"],
        )
        row(
            f"storm {who} p99 latency ms (workers={w})",
            result["latency_p99_ms"],
            after["latency_p99_ms"],
        )
        for name in ("app_cpu_ms_per_signature", "db_cpu_ms_per_signature"):
            row(f"storm {who} {name.replace('_', ' ')}", result[name], after[name])
        peak = max(m.get("VmHWM", 0) for m in result["memory"]) / 1024
        peak2 = max(m.get("VmHWM", 0) for m in after["memory"]) / 1024
        row(f"storm {who} peak RSS per worker, MB (workers={w})", peak, peak2)
        print(f"  storm {who} exact (empty, seeded): {result['exact']}, {after['exact']}")
    apps = [(r, phases["seeded"]["storm"][i]) for i, r in enumerate(phases["empty"]["storm"])]
    ratio = {
        phase: next(r for r in runs if r["target"] == "app")["confirmed_per_s"]
        / max(next(r for r in runs if r["target"] == "reference")["confirmed_per_s"], 1e-9)
        for phase, runs in (("empty", [a for a, _ in apps]), ("seeded", [b for _, b in apps]))
        if len({r["target"] for r in runs}) == 2
    }
    if len(ratio) == 2:
        row("storm app / reference confirmed/s", ratio["empty"], ratio["seeded"])
    if args.json:
        args.json.write_text(json.dumps(phases, indent=1, default=str))
    return phases


if __name__ == "__main__":
    main()
