"""The reference hub against ours, side by side.

Prints figures only (no assertions). Run from the interop venv, which has
the reference installed (tests/run.sh creates it):

    cargo build --release
    ARC_BIN=target/release/arc target/interop-venv/bin/python tests/bench/vs_reference.py

First, with Python clients against both hubs: wake latency and the relay
round trip. Then the request-path sections of `cargo bench --bench bench`
(page, post, close, threads, release, start), whose Rust load generator
drives both hubs when ARC_REFERENCE_PYTHON names this interpreter; pass
`--no-cargo` to skip that part, or `quick` for its short run.

Each hub gets its own temp dir and port on 127.0.0.1. Wake latency: a
/v1/events long-poll is parked, then a message is posted; the figure is
from sending the POST to the poll returning. Relay: a request file in the
reference's format is dropped into the hub's built-in spool and its
response file is checked for every 5 ms.
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request, statistics
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def req(url, body=None, timeout=70):
    data=json.dumps(body).encode() if body is not None else None
    r=urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(r, timeout=timeout) as f: return json.loads(f.read())
def run(cmd, label):
    d=tempfile.mkdtemp(); port=free_port(); url=f"http://127.0.0.1:{port}"
    p=subprocess.Popen(cmd+["--port",str(port),"--storage",os.path.join(d,"a.db"),"--spool-dir",os.path.join(d,"spool"),"--quiet"],cwd=d,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    for _ in range(200):
        try: req(url+"/v1/hub-info"); break
        except Exception: time.sleep(0.05)
    lat=[]
    for i in range(20):
        last=req(url+"/v1/messages?channel=general&limit=1&tail=true")["result"]
        since=last[-1]["id"] if last else 0
        got={}
        def wait():
            req(url+f"/v1/events?agent_id=w&since_id={since}&timeout=30"); got["t"]=time.perf_counter()
        t=threading.Thread(target=wait); t.start(); time.sleep(0.3)
        t0=time.perf_counter(); req(url+"/v1/messages",{"from_agent":"p","body":f"m{i}"}); t.join(35)
        lat.append((got["t"]-t0)*1000)
    # relay round trip with the reference client's file format, polled every 5 ms
    spool=os.path.join(d,"spool"); rt=[]
    for i in range(20):
        rid=os.urandom(16).hex(); rd=os.path.join(spool,"requests","b"); od=os.path.join(spool,"responses","b")
        os.makedirs(rd,exist_ok=True); os.makedirs(od,exist_ok=True)
        t0=time.perf_counter(); tmp=os.path.join(rd,"."+rid)
        with open(tmp,"w") as f: json.dump({"request_id":rid,"agent_id":"b","method":"GET","path":"/v1/hub-info","body":None,"created_at":"2026-01-01T00:00:00Z"},f)
        os.replace(tmp,os.path.join(rd,rid+".json"))
        out=os.path.join(od,rid+".json")
        for _ in range(2000):
            if os.path.exists(out):
                try: json.load(open(out)); break
                except Exception: pass
            time.sleep(0.005)
        rt.append((time.perf_counter()-t0)*1000)
    p.terminate(); p.wait(10)
    q=lambda xs:(statistics.median(xs), sorted(xs)[int(len(xs)*0.95)-1])
    print(f"{label:10} wake p50 {q(lat)[0]:7.1f} ms p95 {q(lat)[1]:7.1f} ms | relay p50 {q(rt)[0]:7.1f} ms p95 {q(rt)[1]:7.1f} ms")
run([sys.executable,"-m","arc"],"reference")
run([os.environ["ARC_BIN"]],"arc-rs")
if "--no-cargo" not in sys.argv:
    env = dict(os.environ, ARC_REFERENCE_PYTHON=sys.executable)
    sections = ["page", "post", "close", "threads", "release", "start"]
    extra = ["quick"] if "quick" in sys.argv else []
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.stdout.flush()
    subprocess.run(["cargo", "bench", "--bench", "bench", "--"] + sections + extra, cwd=root, env=env, check=False)
