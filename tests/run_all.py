"""Runs the whole suite on every Keras backend, then builds the docs.

    python tests/run_all.py                 # jax, tensorflow, torch + mkdocs build --strict
    python tests/run_all.py --backends jax  # one backend
    python tests/run_all.py -m "not slow"   # extra arguments go to pytest

Each backend needs its own process (Keras reads KERAS_BACKEND once, at import).
After the runs, a table gives each tier's minutes, its time relative to the
TensorFlow tier, and the largest peak resident memory of any of its pytest
workers with the test that set it (from tests/conftest.py's KERAS_VIT_MEMORY_LOG
lines, Linux only). The last line totals the runs: "N passed, N failed".
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_memory(log_path):
    """(peak MiB, test) of the worker that peaked highest, from a memory log.

    Each line is one finished test: "pid rss=..MB peak=..MB available=..MB nodeid".
    A worker's peak (VmHWM) only grows, so the first line showing the highest
    peak names the test that set it.
    """
    best = (0, None)
    if not os.path.exists(log_path):
        return best
    with open(log_path) as f:
        for line in f:
            match = re.match(r"\d+ rss=\d+MB peak=(\d+)MB available=\S+ (.*)", line.strip())
            if match and int(match.group(1)) > best[0]:
                best = (int(match.group(1)), match.group(2))
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--no-docs", action="store_true")
    args, pytest_args = parser.parse_known_args()
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    failures = []
    tiers = {}
    logs = tempfile.TemporaryDirectory(prefix="keras_vit_memory_")
    for backend in args.backends.split(","):
        start = time.time()
        print(f"\n=== KERAS_BACKEND={backend} ===", flush=True)
        memory_log = os.path.join(logs.name, f"{backend}.log")
        env = dict(os.environ, KERAS_BACKEND=backend, KERAS_VIT_MEMORY_LOG=memory_log)
        # worksteal: a worker that runs out of tests takes some of the other's,
        # so the tier does not end with one worker idle behind a queue of
        # minute-long process tests.
        command = [
            sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "worksteal", "-p", "no:cacheprovider", *pytest_args
        ]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = ""
        for line in process.stdout:
            print(line, end="", flush=True)
            if re.search(r"\d+ (passed|failed)|no tests ran", line):
                last = line
        code = process.wait()
        for key in totals:
            match = re.search(rf"(\d+) {key}", last)
            totals[key] += int(match.group(1)) if match else 0
        seconds = time.time() - start
        tiers[backend] = (seconds, *peak_memory(memory_log))
        print(f"=== {backend}: exit {code} in {seconds:.0f} s ===", flush=True)
        if code != 0:
            failures.append(backend)
    if not args.no_docs:
        print("\n=== mkdocs build --strict ===", flush=True)
        env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
        code = subprocess.call([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", os.path.join(ROOT, "site")], cwd=ROOT, env=env)
        if code != 0:
            failures.append("docs")
    print("\ntier        minutes  vs tensorflow  peak worker RSS  test that set it")
    for backend, (seconds, peak, test) in tiers.items():
        ratio = f"{seconds / tiers['tensorflow'][0]:.2f}x" if "tensorflow" in tiers else "-"
        print(f"{backend:11s} {seconds / 60:7.1f}  {ratio:>13s}  {peak / 1024:12.1f} GiB  {test or '-'}")
    logs.cleanup()
    if failures:
        print(f"failed: {', '.join(failures)}")
    failed = totals["failed"] + totals["error"]
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return 1 if failures or failed else 0


if __name__ == "__main__":
    sys.exit(main())
