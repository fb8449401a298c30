# The workload of testdata/causes.tcptrace, run inside a fresh network namespace.
import socket, struct, subprocess, time, errno
LO = "127.0.0.1"
def nft(rules): subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
subprocess.run(["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"], check=True)
nft("""table inet causes {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 4402 tcp flags & (syn | ack) == syn drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
  }
}""")
def client(port, blocking=True):
    # Fixed local ports, so that the recorder's kernel filter (--lport) keeps both sides.
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LO, port)); s.setblocking(blocking); return s
# refused
s = client(4411)
try: s.connect((LO, 4401))
except OSError as e: print("refused:", e)
s.close()
# abandoned: a connect in progress, closed after 200 ms
s = client(4412, False)
try: s.connect((LO, 4402))
except BlockingIOError: pass
time.sleep(0.2); s.close(); print("abandoned")
# abort with SO_LINGER 0
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((LO, 4403)); l.listen(8)
c = client(4413); c.connect((LO, 4403)); a, _ = l.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
try: a.recv(10)
except OSError as e: print("reset received:", e)
a.close(); l.close()
# keepalive: one probe after 1 s, unanswered
l = socket.socket(); l.bind((LO, 4404)); l.listen(8)
c = client(4414); c.connect((LO, 4404)); a, _ = l.accept()
nft("add rule inet causes output tcp sport 4404 drop")
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)
# syn retries meanwhile: blocks about 3 s
s = client(4415)
try: s.connect((LO, 4402))
except OSError as e: print("syn timeout:", e)
try: c.recv(10)
except OSError as e: print("keepalive:", e)
