#!/usr/bin/env python3
"""Planted-bug suite: does the simulator catch real bugs in product code?

Each `sim/planted/*.bug` file is a small change to product code (cluster-core,
cluster-net): exact snippets to find and what to put instead. For every bug
this script makes a scratch git worktree of HEAD, applies the change (a
snippet that is not found exactly once means the bug no longer applies: the
script fails, so the suite is kept in step with the code), runs N seeds of the
simulator there and reports how many seeds caught it, the first failing seed
and the checker that caught it.

Usage: scripts/planted-bugs.py [--seeds N] [--first S] [--min-caught K] [bug ...]
Exit code 1 when a bug no longer applies or is caught by fewer than K seeds.
The table goes to stdout (and to --table FILE as Markdown, if given).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUGS = os.path.join(ROOT, "sim", "planted")


def parse_bug(path):
    """A bug file: '# ' comment lines (the first is the title, 'class:' names
    the class), then blocks of 'file: PATH', '--- find', text, '--- replace',
    text, '--- end'."""
    title, klass, edits = None, "?", []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    current_file = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("# ") and title is None:
            title = line[2:].strip()
        elif line.startswith("# class:"):
            klass = line.split(":", 1)[1].strip()
        elif line.startswith("file: "):
            current_file = line[len("file: "):].strip()
        elif line == "--- find":
            j = lines.index("--- replace", i)
            k = lines.index("--- end", j)
            find = "\n".join(lines[i + 1 : j])
            replace = "\n".join(lines[j + 1 : k])
            if current_file is None:
                raise SystemExit(f"{path}: edit before any 'file:' line")
            edits.append((current_file, find, replace))
            i = k
        i += 1
    if not edits:
        raise SystemExit(f"{path}: no edits")
    return title or os.path.basename(path), klass, edits


def apply_bug(tree, edits):
    """Applies the edits in `tree`; returns an error text when one does not apply."""
    for rel, find, replace in edits:
        path = os.path.join(tree, rel)
        if not os.path.exists(path):
            return f"{rel}: no such file"
        text = open(path, encoding="utf-8").read()
        n = text.count(find)
        if n != 1:
            return f"{rel}: snippet found {n} times (must be exactly once):\n{find}"
        open(path, "w", encoding="utf-8").write(text.replace(find, replace))
    return None


def run_seeds(tree, first, seeds, env_extra):
    env = dict(os.environ)
    env.update(
        {
            "SIM_SEED": str(first),
            "SIM_SEEDS": str(seeds),
            "SIM_DETERMINISM": "0",
            "SIM_REQUIRE_PROBES": "0",
        }
    )
    env.update(env_extra)
    out = subprocess.run(
        ["cargo", "test", "-p", "sim", "--test", "simulate", "simulations"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    return out.stdout + out.stderr


SEED_RE = re.compile(r"^seed (\d+) (FAILED|PANICKED):(.*)$")


def caught_seeds(output):
    """{seed: checker} of every failing seed in the simulator's output."""
    caught = {}
    lines = output.split("\n")
    for i, line in enumerate(lines):
        m = SEED_RE.match(line.strip())
        if not m:
            continue
        seed, how, rest = int(m.group(1)), m.group(2), m.group(3)
        checker = "?"
        if how == "FAILED":
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if rest.strip().startswith("not deterministic"):
                checker = "determinism"
            else:
                mm = re.match(r"run: ([a-z_]+):", nxt)
                checker = mm.group(1) if mm else nxt[:40]
        else:
            window = "\n".join(lines[i : i + 40])
            pm = re.search(r"panicked at [^\n]*\n([^\n]*)", window)
            checker = "panic: " + (pm.group(1).strip()[:60] if pm else "?")
        caught.setdefault(seed, checker)
    return caught


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--min-caught", type=int, default=1)
    ap.add_argument("--table", help="also write the table as Markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch worktrees")
    ap.add_argument("bugs", nargs="*")
    args = ap.parse_args()

    names = args.bugs or sorted(
        f[: -len(".bug")] for f in os.listdir(BUGS) if f.endswith(".bug")
    )
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    # One scratch worktree at a fixed place for every bug: cargo then rebuilds
    # only the crates a bug touches, not the whole workspace per bug.
    tree = os.path.join(target, "planted-tree")
    if os.path.exists(tree):
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["git", "-C", ROOT, "worktree", "prune"], check=False)
    subprocess.run(
        ["git", "-C", ROOT, "worktree", "add", "-q", "--detach", tree, "HEAD"], check=True
    )
    rows, failed = [], []
    baseline = {}
    try:
        for name in ["(baseline)"] + names:
            if name == "(baseline)":
                title, klass, edits = "unchanged code", "-", []
            else:
                title, klass, edits = parse_bug(os.path.join(BUGS, name + ".bug"))
            subprocess.run(["git", "-C", tree, "checkout", "-q", "--", "."], check=True)
            # The working state of the suite itself is what runs.
            for rel in ["sim", "scripts"]:
                shutil.rmtree(os.path.join(tree, rel))
                shutil.copytree(os.path.join(ROOT, rel), os.path.join(tree, rel))
            started = time.time()
            err = apply_bug(tree, edits)
            if err:
                print(f"{name}: DOES NOT APPLY: {err}", flush=True)
                failed.append(name)
                rows.append((name, klass, title, None, None, None, 0))
                continue
            # A target dir of its own: cargo does not key workspace crates'
            # artifacts by their path, so builds of the planted tree would
            # otherwise pass for fresh builds of the real one afterwards.
            output = run_seeds(
                tree, args.first, args.seeds, {"CARGO_TARGET_DIR": os.path.join(target, "planted")}
            )
            if "error[" in output and "Finished" not in output:
                print(f"{name}: DOES NOT BUILD:\n{output[-3000:]}", flush=True)
                failed.append(name)
                rows.append((name, klass, title, None, None, None, 0))
                continue
            caught = caught_seeds(output)
            if name == "(baseline)":
                baseline = caught
                print(f"baseline: {len(caught)} of {args.seeds} seeds fail without a planted bug: {caught}", flush=True)
                continue
            # A seed the unchanged code fails too says nothing about the bug.
            caught = {s: c for s, c in caught.items() if s not in baseline}
            first = min(caught) if caught else None
            checkers = {}
            for c in caught.values():
                checkers[c] = checkers.get(c, 0) + 1
            top = max(checkers, key=checkers.get) if checkers else "-"
            wall = time.time() - started
            rows.append((name, klass, title, len(caught), first, top, wall))
            print(
                f"{name}: caught {len(caught)}/{args.seeds}, first seed {first}, "
                f"mostly by {top} ({wall:.0f} s)",
                flush=True,
            )
            if len(caught) < args.min_caught:
                failed.append(name)
    finally:
        if not args.keep:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)
    table = [
        f"| bug | class | caught / {args.seeds} | first failing seed | seeds to first catch | checker (most seeds) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, klass, title, n, first, top, _ in rows:
        if n is None:
            table.append(f"| `{name}` | {klass} | does not apply | | | |")
        else:
            to_first = "-" if first is None else first - args.first + 1
            table.append(f"| `{name}` ({title}) | {klass} | {n} | {first or '-'} | {to_first} | {top} |")
    caught_counts = [r[3] for r in rows if r[3] is not None]
    if baseline:
        table.append(f"| (baseline: unchanged code) | - | {len(baseline)} failing, not counted above | | | |")
    print("\n".join(table))
    to_firsts = [r[4] - args.first + 1 for r in rows if r[4] is not None]
    if caught_counts:
        print(f"median caught: {statistics.median(caught_counts)} of {args.seeds}")
        table.append(f"| (median) | | {statistics.median(caught_counts)} | | {statistics.median(to_firsts) if to_firsts else '-'} | |")
    if args.table:
        open(args.table, "w", encoding="utf-8").write("\n".join(table) + "\n")
    if failed:
        print(f"planted bugs not caught (or not applying): {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
