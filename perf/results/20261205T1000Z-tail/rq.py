# rq.py OUT_PREFIX SECONDS pid... : run-queue wait (schedstat) of every thread of these processes over SECONDS
import os, sys, time
secs=float(sys.argv[1]); pids=[int(p) for p in sys.argv[2:]]
def snap():
    d={}
    for p in pids:
        try: ts=os.listdir(f'/proc/{p}/task')
        except OSError: continue
        for t in ts:
            try:
                c=open(f'/proc/{p}/task/{t}/comm').read().strip(); a=open(f'/proc/{p}/task/{t}/schedstat').read().split()
                d[(p,t)]=(c,int(a[0]),int(a[1]),int(a[2]))
            except OSError: pass
    return d
a=snap(); time.sleep(secs); b=snap()
agg={}
for k,(c,cpu,w,n) in b.items():
    if k not in a: continue
    _,cpu0,w0,n0=a[k]; key=(k[0],c)
    x=agg.setdefault(key,[0,0,0]); x[0]+=cpu-cpu0; x[1]+=w-w0; x[2]+=n-n0
for (p,c),(cpu,w,n) in sorted(agg.items()):
    if cpu>5e6: print(f'{p} {c:14s} cpu {cpu/1e6/secs:7.1f} ms/s  runqueue wait {w/1e6/secs:7.1f} ms/s  per run {w/max(n,1)/1e3:7.1f} us  runs/s {n/secs:8.0f}')
