"""A command's memory over time: RSS sampled every 0.25 s next to each line it prints.

Used to find where ``recipe curate`` peaks (issue 15), e.g. on the 1M-row card_scale source:

    python benchmarks/memory_timeline.py recipe curate R.yaml --out RUN --cache-dir CACHE

Prints ``<seconds> <recent peak MB> | <line>`` and the peak with its time.
"""

import subprocess, sys, time, threading, os
cmd = sys.argv[1:]
t0 = time.time()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
samples = []
def watch():
    while p.poll() is None:
        try:
            rss = int(open(f"/proc/{p.pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
            samples.append((time.time() - t0, rss))
        except Exception: pass
        time.sleep(0.25)
th = threading.Thread(target=watch); th.start()
for line in p.stdout:
    print(f"{time.time()-t0:6.1f}s {max((s[1] for s in samples[-4:]), default=0):7.0f}MB | {line.rstrip()[:150]}")
p.wait(); th.join()
print("peak", max(s[1] for s in samples), "at", max(samples, key=lambda s: s[1])[0])
