"""kill -9 or a full disk at K moments of a `fast` training: does `--resume` end where an unbroken run does?

    python benchmarks/bench_faults.py [--moments 20] [--disk] [--by steps|time] [--leave BYTES]

One uninterrupted `digitlab train --model fast` (the real CLI, in a child process on a terminal
of its own, whose progress bar tells its step) gives the reference: its test accuracy, weights
and timeline. Then, for each of K moments spread over the training (`--by steps`: k/K of its
training steps: with an even K the middle one is epoch 1's end, the last the end of training;
`--by time`: k/(K+1) of the unbroken command's wall time, start-up and evaluation included),
the same command runs again into a fresh folder and, at that moment, is killed with SIGKILL, or
with `--disk` finds its disk full (its folder on a tmpfs, filled then to all but `--leave`
bytes; mounting needs root). The space is given back and `digitlab train --resume` goes on; where
the error said there is nothing to resume, the command runs again, as the error says.

Per moment: where the run was stopped, what it said, where the resumed run picked up, its test
accuracy against the unbroken run's (points) and whether its weights are the same bits. The
bar: every resume within 0.05 points of the unbroken run, or an `error:` line saying why not.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import DATA_DIR, ROOT, describe_machine

sys.path.insert(0, str(ROOT / "src"))

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "DIGITLAB_OFFLINE": "1"}
BAR = re.compile(r"^\s*(\d+)/(\d+)\s")  # Keras' progress bar: "  40/391 ━━━━ ..."
EPOCH = re.compile(r"^Epoch (\d+)/(\d+)")  # printed before each epoch when there are several
STYLE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x08")  # a terminal's colours, cursor moves, backspaces


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "digitlab.cli", *args]


@dataclass
class Watched:
    """What a child on a terminal printed and did: its exit status, its last training step
    (counted over all epochs), the steps it would take in all, and when the moment came."""

    returncode: int
    output: str
    step: int
    total: int
    seconds: float
    acted_at: str = ""


def watch(args: list[str], cwd: Path, at_step: int | None = None, at_s: float | None = None, act=None) -> Watched:
    """Run `args` on a pseudo-terminal (Keras then draws its bar, step by step); once the training
    reaches `at_step` (or `at_s` seconds have passed), call `act(proc)` once."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=ENV)
    os.close(slave)
    text, pending, epoch, epochs, step, steps, acted_at = [], "", 1, 1, 0, 0, ""
    while True:
        ready, _, _ = select.select([master], [], [], 0.02)
        chunk = b""
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child is gone and the terminal closed
                chunk = b""
            if not chunk:
                break
        pending += chunk.decode(errors="replace")
        *segments, pending = re.split(r"[\r\n]", pending)
        for segment in segments:
            segment = STYLE.sub("", segment)
            text.append(segment)
            if m := EPOCH.match(segment):
                epoch, epochs, step = int(m.group(1)), int(m.group(2)), 0
            elif m := BAR.match(segment):
                step, steps = int(m.group(1)), int(m.group(2))
        done = (epoch - 1) * steps + step
        due = (at_step is not None and done >= at_step) or (at_s is not None and time.perf_counter() - t0 >= at_s)
        if act and due and not acted_at:
            acted_at = f"{time.perf_counter() - t0:.1f} s, epoch {epoch} step {step}/{steps}"
            act(proc)
    os.close(master)
    proc.wait()
    lines = [line for line in text if line.strip()]
    return Watched(proc.returncode, "\n".join(lines), done, epochs * steps, time.perf_counter() - t0, acted_at)


def errors(text: str) -> str:
    """The `error:` lines (on a terminal one may follow the progress bar on its line)."""
    return " / ".join(m.group(0).strip() for m in re.finditer(r"(?m)error: .*$", text))


def test_accuracy(run: Path) -> float | None:
    import json

    metrics = run / "metrics.json"
    return json.loads(metrics.read_text())["test_accuracy"] if metrics.is_file() else None


def same_weights(a: Path, b: Path) -> bool:
    import numpy as np

    from digitlab.nn import pca  # noqa: F401  (registers fast's first stage, for loading)
    from digitlab.nn.backend import keras

    if not all((p / "model.keras").is_file() for p in (a, b)):
        return False
    wa, wb = (keras.saving.load_model(p / "model.keras", compile=False).get_weights() for p in (a, b))
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


def tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if made.returncode:
        raise SystemExit(
            f"cannot mount a tmpfs at {path} (needs root): {made.stderr.decode().strip()}; --disk unavailable"
        )


def fill(disk: Path, leave: int) -> Path:
    """A file that takes the disk's free space but `leave` bytes (tmpfs allocates whole pages)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        stats = os.statvfs(disk)
        size = max(stats.f_bavail * stats.f_frsize - leave, 4096)
        while size > 0:
            try:
                os.posix_fallocate(f.fileno(), 0, size)
                break
            except OSError:
                size -= 4096
    return filler


def moment(k: int, args, reference: Watched, work: Path, base: Path) -> dict:
    """Stop a fresh run at moment k, then resume it (or run it again where nothing is left)."""
    folder = work / f"moment-{k:02d}"
    disk = folder / "disk"
    if args.disk:
        tmpfs(disk, args.size)
    else:
        disk.mkdir(parents=True)
    run = disk / "run"
    command = ["train", "--model", args.model, "--out", str(run), "--data-dir", DATA_DIR]
    filler: list[Path] = []

    def act(proc):
        if args.disk:
            filler.append(fill(disk, args.leave))
        else:
            proc.send_signal(signal.SIGKILL)

    at_step = round(k / args.moments * reference.total) if args.by == "steps" else None
    at_s = k / (args.moments + 1) * reference.seconds if args.by == "time" else None
    stopped = watch(cli(*command), folder, at_step, at_s, act)
    for f in filler:
        f.unlink()  # the space back
    said = errors(stopped.output)
    t0 = time.perf_counter()
    if not stopped.acted_at:  # the run ended before the moment came: nothing to resume
        how, status, output = "nothing", stopped.returncode, ""
    else:
        if (run / "run.json").is_file():
            how, again = "--resume", cli("train", "--resume", str(run), "--data-dir", DATA_DIR)
        else:  # nothing left to resume (the error says so): the command again
            how, again = "again", cli(*command)
        resumed = subprocess.run(again, capture_output=True, text=True, cwd=folder, env=ENV)
        status, output = resumed.returncode, resumed.stdout + resumed.stderr
    first = re.search(r"^Epoch (\d+)/", output, re.M)  # where it picked up
    accuracy = test_accuracy(run)
    result = {
        "k": k,
        "stopped_at": stopped.acted_at or f"never (the run ended first, status {stopped.returncode})",
        "stop_status": stopped.returncode,
        "stop_said": said,
        "how": how,
        "status": status,
        "said": errors(output),
        "from_epoch": int(first.group(1)) if first else None,
        "accuracy": accuracy,
        "points": None if accuracy is None else 100 * (accuracy - test_accuracy(base)),
        "identical": accuracy is not None and same_weights(base, run),
        "resume_s": time.perf_counter() - t0,
    }
    if stopped.returncode not in (0, 2, -signal.SIGKILL):  # neither done, nor one error line, nor killed
        result["tail"] = stopped.output[-1500:]
    if status not in (0, 2):
        result["tail"] = result.get("tail", "") + output[-1500:]
    if args.disk:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def describe(r: dict) -> str:
    fault = "disk full" if r["disk"] else "killed"
    picked = f"from epoch {r['from_epoch']}" if r["from_epoch"] else "no epoch left to train"
    outcome = (
        f"test {r['accuracy']:.2%} ({r['points']:+.2f} points), weights {'identical' if r['identical'] else 'differ'}"
        if r["accuracy"] is not None
        else "no test accuracy"
    )
    said = f"; stop said: {r['stop_said']}" if r["stop_said"] else ""
    refused = f"; {r['how']} said: {r['said']}" if r["said"] else ""
    return (
        f"moment {r['k']:2d}: {fault} at {r['stopped_at']} (exit {r['stop_status']}){said}; {r['how']} "
        f"exit {r['status']}, {picked}, {r['resume_s']:.0f} s: {outcome}{refused}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moments", type=int, default=20)
    parser.add_argument("--disk", action="store_true", help="a full disk (tmpfs, root) instead of SIGKILL")
    parser.add_argument("--by", choices=["steps", "time"], default="steps")
    parser.add_argument("--leave", type=int, default=0, help="bytes left free on the full disk")
    parser.add_argument("--size", default="16m", help="the tmpfs (--disk): room for the whole run")
    parser.add_argument("--model", default="fast")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    if args.disk:  # before the long part: a machine that cannot mount one says so at once
        tmpfs(work / "probe", "64k")
        subprocess.run(["umount", str(work / "probe")], check=True)
    base = work / "uninterrupted"
    t0 = time.perf_counter()
    reference = watch(cli("train", "--model", args.model, "--out", str(base), "--data-dir", DATA_DIR), work)
    if reference.returncode or test_accuracy(base) is None:
        raise SystemExit(f"the uninterrupted run failed (status {reference.returncode}):\n{reference.output[-2000:]}")
    print(
        f"uninterrupted `digitlab train --model {args.model}`: {reference.seconds:.1f} s, "
        f"{reference.total} training steps, test {test_accuracy(base):.2%}",
        flush=True,
    )
    fault = "a full disk (tmpfs filled)" if args.disk else "SIGKILL"
    print(f"{args.moments} moments by {args.by}, {fault} at each, then --resume:", flush=True)
    results = []
    for k in range(1, args.moments + 1):
        results.append(r := moment(k, args, reference, work, base) | {"disk": args.disk})
        print(describe(r), flush=True)
        if "tail" in r:
            print(r["tail"], flush=True)
    shutil.rmtree(work, ignore_errors=True)

    close = [r for r in results if r["status"] == 0 and r["points"] is not None and abs(r["points"]) <= 0.05]
    told = [r for r in results if r["status"] == 2 and r["said"]]
    failed = [r for r in results if r not in close and r not in told]
    worst = max((abs(r["points"]) for r in results if r["points"] is not None), default=float("nan"))
    print()
    print(f"within 0.05 points of the uninterrupted run: {len(close)}/{len(results)}")
    print(f"  of them, the same weights bit for bit: {sum(r['identical'] for r in close)}/{len(close)}")
    again = sum(r["how"] == "again" for r in close)
    print(f"  of them, run again as the error said (nothing was left to resume): {again}")
    print(f"resume said why it cannot: {len(told)}/{len(results)}")
    print(f"neither (the bar missed): {len(failed)}/{len(results)} {[r['k'] for r in failed]}")
    print(f"largest difference: {worst:.2f} points; whole benchmark {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
