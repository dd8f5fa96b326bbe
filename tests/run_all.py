"""Runs the whole suite on every Keras backend, then builds the docs.

    python tests/run_all.py                 # jax, tensorflow, torch + mkdocs build --strict
    python tests/run_all.py --backends jax  # one backend
    python tests/run_all.py -m "not slow"   # extra arguments go to pytest

Each backend needs its own process (Keras reads KERAS_BACKEND once, at import).
The last line totals the runs: "N passed, N failed".
"""

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--no-docs", action="store_true")
    args, pytest_args = parser.parse_known_args()
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    failures = []
    for backend in args.backends.split(","):
        start = time.time()
        print(f"\n=== KERAS_BACKEND={backend} ===", flush=True)
        env = dict(os.environ, KERAS_BACKEND=backend)
        command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", *pytest_args]
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
        print(f"=== {backend}: exit {code} in {time.time() - start:.0f} s ===", flush=True)
        if code != 0:
            failures.append(backend)
    if not args.no_docs:
        print("\n=== mkdocs build --strict ===", flush=True)
        env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
        code = subprocess.call([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", os.path.join(ROOT, "site")], cwd=ROOT, env=env)
        if code != 0:
            failures.append("docs")
    if failures:
        print(f"failed: {', '.join(failures)}")
    failed = totals["failed"] + totals["error"]
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return 1 if failures or failed else 0


if __name__ == "__main__":
    sys.exit(main())
