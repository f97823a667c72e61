"""A killed parent leaves no pool workers behind (they would keep gigabytes of features in memory)."""
import os
import signal
import subprocess
import sys
import time

CHILD = r"""
import os, sys
from sdmad_lite.processes import process_pool

def main():
    ex = process_pool(2)
    futs = [ex.submit(os.getpid) for _ in range(4)]
    pids = sorted({f.result() for f in futs})
    print(" ".join(map(str, pids)), flush=True)
    sys.stdin.read()  # wait until killed

if __name__ == "__main__":
    main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split()[2] != "Z"


def test_workers_end_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert pids and all(_alive(x) for x in pids)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(x) for x in pids):
        time.sleep(0.2)
    assert not any(_alive(x) for x in pids), "pool workers outlived their killed parent"
