#!/usr/bin/env python3
"""Opens N SSE subscribers that never read (a 4 KiB receive buffer), spread
round-robin over channels P0..P{C-1}, and holds them until killed; then says
how many the server closed. Usage: stall.py PORT N C PREFIX"""
import signal, socket, sys, time

port, n, c, prefix = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', port))
    s.sendall(f'GET /api/v1/channels/{prefix}{i % c}/sse?replay=0 HTTP/1.1\r\nHost: x\r\n\r\n'.encode())
    socks.append(s)
print(f'stall: {n} stalled subscribers connected', flush=True)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    time.sleep(0.2)
# Closed by the server: reading to the end finds EOF (the data before it is dropped here).
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                closed += 1
                break
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print(f'stall: {closed} of {n} closed by the server', flush=True)
