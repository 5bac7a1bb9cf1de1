"""Summarize py-spy raw (collapsed) stacks: where a worker spends its CPU.

    python -m bench.profile_summary worker.txt [--top 25] [--match letters/]

Prints, as a share of all samples, the functions with the most inclusive time (a function
counts once per stack it appears in) among frames whose file matches --match (default:
the app's own code, Starlette, SQLAlchemy, psycopg, Jinja and uvicorn), and the leaf
functions with the most self time.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
DEFAULT_MATCH_OLD = (
    "letters/|starlette/|sqlalchemy/|sqlmodel/|psycopg/|jinja2/|uvicorn/|itsdangerous/"
    "|email_validator/|aiosmtplib/"
)


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match.group('func')} ({file})"


def summarize(path: Path, top: int, match: str) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    pattern = re.compile(match)
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        seen = set()
        for frame in frames:
            name = short(frame)
            if pattern.search(frame) and name not in seen:
                seen.add(name)
                inclusive[name] += count
        if frames:
            leaf[short(frames[-1])] += count
    lines = [f"{path.name}: {total} samples"]
    lines.append("  inclusive (share of samples):")
    for name, count in inclusive.most_common(top):
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    lines.append("  self (leaf frames):")
    for name, count in leaf.most_common(top):
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=".", help="only frames whose text matches (regex)")
    args = parser.parse_args()
    for path in args.files:
        print(summarize(path, args.top, args.match))


if __name__ == "__main__":
    main()
