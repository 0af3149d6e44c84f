#!/usr/bin/env python3
"""Prosody's own CPU per stanza, by the stanza's shape (a diagnostic).

    python3 benches/prosody_stanza_cost.py            # every shape, twice
    REPS=3 N=20000 python3 benches/prosody_stanza_cost.py "c2s plain" "comp gateway"

Starts a Prosody (from PATH) on free loopback ports, with the test world's
modules, two users and a component, and no Estuary. Each shape sends N
messages to alice's full JID, in bursts of 20 with at most 400 in flight
(as benches/irc_load.rs does), either from the client carol (c2s) or from
the component (comp). It prints messages/s and Prosody's user+system CPU
per message, from /proc. Prosody is single-threaded, so where it is busy
all the time, its CPU per message is what caps the rate.

Why it exists: irc_load's Prosody ceiling is client messages with a body
only, while the issue requires every relayed message to carry an id and an
XEP-0359 stanza-id. This shows what those cost Prosody, with no gateway in
the path: "c2s gateway-shaped" is a client sending exactly the gateway's
shape of message.
"""
import socket, subprocess, os, sys, time, hashlib, base64, re, uuid, tempfile

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

D = tempfile.mkdtemp(prefix="prosody-stanza-cost-")
C2S, COMP = free_port(), free_port()
# The test world's Prosody configuration (tests/world/prosody.rs), repeated
# here because this tool is Python and runs without the Rust test world.
cfg = f'''
run_as_root = true
pidfile = "{D}/prosody.pid"
data_path = "{D}/data"
log = {{ warn = "{D}/prosody.log" }}
network_settings = {{ nagle = false }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {C2S} }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
component_ports = {{ {COMP} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "offline"; "vcard"; "version"; "posix"; }}
modules_disabled = {{ "s2s"; "tls" }}
VirtualHost "localhost"
Component "irc.localhost"
    component_secret = "sec"
'''
open(f"{D}/prosody.cfg.lua","w").write(cfg)
acc = f"{D}/data/localhost/accounts"; os.makedirs(acc)
for u in ("alice","carol"):
    open(f"{acc}/{u}.dat","w").write('return {\n\t["password"] = "pw";\n};\n')
p = subprocess.Popen(["prosody","--config",f"{D}/prosody.cfg.lua","-F"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().split(") ")[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK")
def conn(port):
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1",port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); return s
        except OSError: time.sleep(0.1)
    raise SystemExit("Prosody did not start (is it installed? scripts/test installs it)")
def recv_until(s, pat):
    buf = b""
    while pat not in buf:
        d = s.recv(65536)
        if not d: raise SystemExit(f"closed, got {buf!r}")
        buf += d
    return buf
def client(user, res):
    s = conn(C2S)
    s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    recv_until(s, b"</stream:features>")
    a = base64.b64encode(b"\0"+user.encode()+b"\0pw").decode()
    s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{a}</auth>".encode())
    recv_until(s, b"success")
    s.sendall(b"<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    recv_until(s, b"</stream:features>")
    s.sendall(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq>".encode())
    recv_until(s, b"</iq>")
    s.sendall(b"<presence/>")
    time.sleep(0.2); s.setblocking(False)
    try: s.recv(1<<20)
    except BlockingIOError: pass
    s.setblocking(True)
    return s
def component():
    s = conn(COMP)
    s.sendall(b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='irc.localhost'>")
    b = recv_until(s, b">")
    sid = re.search(rb"id=['\"]([^'\"]+)", b).group(1)
    s.sendall(f"<handshake>{hashlib.sha1(sid+b'sec').hexdigest()}</handshake>".encode())
    recv_until(s, b"<handshake")
    return s
time.sleep(0.5)
alice = client("alice","res"); carol = client("carol","r2"); comp = component()
N = int(os.environ.get("N","20000"))
def run(sender, make, label):
    msgs = [make(i).encode() for i in range(N)]
    window, burst = 400, 20
    sent = recvd = 0; buf = b""
    c0 = cpu(); t0 = time.time()
    while recvd < N:
        while sent < N and sent - recvd < window:
            chunk = b"".join(msgs[sent:sent+burst]); sender.sendall(chunk); sent += min(burst, N-sent)
        d = alice.recv(1<<20)
        buf += d
        k = buf.count(b"</message>"); recvd += k
        buf = buf[buf.rfind(b"</message>")+10:] if k else buf
    dt = time.time()-t0; c = cpu()-c0
    print(f"{label:28s} {N/dt:8.0f} msg/s  prosody {c/N*1e6:6.1f} us/msg  ({c/dt*100:4.0f}% core)  {len(msgs[0])}B", flush=True)
body = "bench 12345 1234567890123456789"
U = lambda: str(uuid.uuid4())
ROOM = "#bench%localhost@irc.localhost"
# Each shape: who sends it, and message number i.
shapes = {
    # irc_load's ceiling: a client message with a body only.
    "c2s plain": (lambda: carol, lambda i: f"<message to='alice@localhost/res' type='chat'><body>{body}</body></message>"),
    # What Conversations, Dino and Gajim send at the least.
    "c2s id+origin": (lambda: carol, lambda i: f"<message to='alice@localhost/res' type='chat' id='{U()}'><body>{body}</body><origin-id xmlns='urn:xmpp:sid:0' id='{U()}'/></message>"),
    # The gateway's groupchat message, sent by a client.
    "c2s gateway-shaped": (lambda: carol, lambda i: f"<message to='alice@localhost/res' type='groupchat' id='{U()}'><body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' id='{U()}' by='{ROOM}'/></message>"),
    # The gateway's groupchat message from the component, as Estuary writes it.
    "comp gateway": (lambda: comp, lambda i: f"<message from='{ROOM}/bob' to='alice@localhost/res' id='{U()}' type='groupchat'><body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' id='{U()}' by='{ROOM}'/></message>"),
    # The same with the stream's namespace declared on each stanza, as before.
    "comp gateway, xmlns on each": (lambda: comp, lambda i: f"<message xmlns='jabber:component:accept' from='{ROOM}/bob' to='alice@localhost/res' id='{U()}' type='groupchat'><body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' id='{U()}' by='{ROOM}'/></message>"),
    # Without the stanza-id the issue requires.
    "comp no stanza-id": (lambda: comp, lambda i: f"<message from='{ROOM}/bob' to='alice@localhost/res' id='{U()}' type='groupchat'><body>{body}</body></message>"),
    # As little as a component can send.
    "comp plain": (lambda: comp, lambda i: f"<message from='bob@irc.localhost' to='alice@localhost/res' type='chat'><body>{body}</body></message>"),
}
sel = sys.argv[1:] or list(shapes)
for rep in range(int(os.environ.get("REPS","2"))):
    for name in sel:
        who, make = shapes[name]
        run(who(), make, name)
p.terminate()
p.wait()
import shutil; shutil.rmtree(D, ignore_errors=True)
