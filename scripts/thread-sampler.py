#!/usr/bin/env python3
"""Which threads of a process ran, every 10 ms, and where this sampler itself was not run.

Written to find what stalls the center's one core for tens of milliseconds now and then
(docs/PERFORMANCE.md, issue 13's p99): each line is the wall time, then every thread of PID
that used CPU since the line before or is runnable, as `name:tid:ticks:state` (ticks of
1/100 s; state R runnable, S sleeping). A gap between two lines much longer than 10 ms means
this sampler was not run either: a pause of the whole machine, not of the process. Stops when
the process ends. Compare its lines with the wall times of the slow requests.

usage: scripts/thread-sampler.py PID OUT.txt
       then: awk 'NR>1 {g=$1-p; if (g>0.025) print p, g*1000 " ms"} {p=$1}' OUT.txt
"""
import os
import sys
import time

pid, out_path = sys.argv[1], sys.argv[2]
task_dir = f"/proc/{pid}/task"
previous = {}
with open(out_path, "w") as out:
    while os.path.exists(task_dir):
        now = time.time()
        current = {}
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue  # the thread ended between the listing and the read
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            # fields[0] is the state (stat field 3); utime and stime are fields 14 and 15.
            current[tid] = (name, int(fields[11]) + int(fields[12]), fields[0])
        seen = []
        for tid, (name, ticks, state) in current.items():
            used = ticks - previous.get(tid, (name, ticks, ""))[1]
            if used > 0 or state == "R":
                seen.append(f"{name}:{tid}:{used}:{state}")
        out.write(f"{now:.3f} " + " ".join(seen) + "\n")
        previous = current
        time.sleep(0.01)
