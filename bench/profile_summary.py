"""Summarize py-spy raw (collapsed) stacks: where a worker spends its CPU.

    python -m bench.profile_summary worker.txt [--top 25] [--match REGEX] [--libraries]

Prints, as a share of all samples, the functions with the most inclusive time (a function
counts once per stack it appears in) among frames matching --match (default: all), and
the leaf functions with the most self time; or, with --libraries, the share of samples
by library (database layer, Starlette, logging, ...).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


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


def library(frames: list[str]) -> str:
    """Which part of the stack a sample belongs to (the first rule that matches wins)."""
    text = ";".join(frames)
    rules = (
        (("sqlalchemy", "psycopg", "sqlmodel", "greenlet"), "database layer (SQLAlchemy/psycopg)"),
        (("jinja2",), "Jinja templates"),
        (("email_validator", "idna"), "email validation"),
        (("aiosmtplib", "email/", "(email"), "SMTP and email building"),
        (("logging",), "logging"),
        (("itsdangerous", "hmac", "hashlib"), "signing and hashing"),
        (("starlette", "security.py", "cors.py", "views/"), "Starlette, middleware, views"),
    )
    for needles, name in rules:
        if any(needle in text for needle in needles):
            return name
    return "other (event loop, uvicorn HTTP)"


def libraries(path: Path) -> str:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        counts[library(frames)] += int(count_text)
        total += int(count_text)
    lines = [f"{path.name}: {total} samples, by library"]
    for name, count in counts.most_common():
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=".", help="only frames whose text matches (regex)")
    parser.add_argument("--libraries", action="store_true", help="shares by library instead")
    args = parser.parse_args()
    for path in args.files:
        print(libraries(path) if args.libraries else summarize(path, args.top, args.match))


if __name__ == "__main__":
    main()
