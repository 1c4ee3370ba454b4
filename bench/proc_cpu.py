"""CPU seconds (user + system) used so far by the processes whose command line contains a
pattern, and by all their descendants.

    .venv/bin/python bench/proc_cpu.py 'serve --port 8000' postgres:

Prints one number per pattern. Descendants count because uvicorn's workers are spawned processes
whose command line does not repeat the server's. Read it before and after a load run and divide
the difference by the requests served to get CPU per request. A process that exits during the
run takes its time with it: use it with long-lived servers.

The pattern ``:steal`` stands for the CPU time the hypervisor gave to other machines while this
one wanted it (all CPUs, from ``/proc/stat``): a run during which it grows was measured on a
slower machine than its neighbours.
"""

import os
import sys
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> tuple[int, float]:
    """``(parent pid, user + system CPU seconds)`` of one process, from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # after "pid (comm) ": state ppid ... utime stime (fields 14 and 15 of stat)
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process of this machine."""
    return _stat(pid)[1]


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode("latin-1")
            parent, cpu = _stat(entry.name)
        except OSError:  # exited meanwhile
            continue
        found[int(entry.name)] = (parent, cmdline, cpu)
    return found


def cpu_seconds(pattern: str, processes: dict[int, tuple[int, str, float]]) -> float:
    me = os.getpid()
    chosen = {pid for pid, (_, cmd, _) in processes.items() if pattern in cmd and pid != me}
    grew = True
    while grew:  # add children until none is left out
        more = {pid for pid, (ppid, _, _) in processes.items() if ppid in chosen} - chosen
        chosen |= more
        grew = bool(more)
    return sum(processes[pid][2] for pid in chosen)


def steal_seconds() -> float:
    """CPU seconds stolen from this machine by its hypervisor so far (all CPUs)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()  # "cpu user nice system idle iowait irq softirq steal"
    return int(fields[8]) / TICKS


def main() -> None:
    processes = _processes()
    print(
        " ".join(
            f"{steal_seconds() if p == ':steal' else cpu_seconds(p, processes):.2f}"
            for p in sys.argv[1:]
        )
    )


if __name__ == "__main__":
    main()
