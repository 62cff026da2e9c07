#!/usr/bin/env python3
"""Timeline client of the benchmark: keep-alive HTTP GETs over several connections, completed requests counted per 100 ms bucket, written as CSV."""
import socket
import sys
import threading
import time

BUCKET = 0.1


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    duration, conns, out = float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    nb = int(duration / BUCKET + 0.5)
    counts = [0] * nb
    errors = [0] * nb
    lock = threading.Lock()
    t0 = time.time()
    end = t0 + duration
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()

    def bucket():
        b = int((time.time() - t0) / BUCKET)
        return b if b < nb else None

    def read_response(s, buf):
        # Headers, then Content-Length bytes of body; returns leftover bytes.
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("EOF")
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(rest) < length:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("EOF")
            rest += d
        return rest[length:]

    def worker():
        s = None
        buf = b""
        while time.time() < end:
            try:
                if s is None:
                    s = socket.create_connection((host, port), timeout=1.0)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buf = b""
                s.sendall(req)
                buf = read_response(s, buf)
                b = bucket()
                if b is not None:
                    with lock:
                        counts[b] += 1
            except (OSError, ConnectionError, ValueError):
                b = bucket()
                if b is not None:
                    with lock:
                        errors[b] += 1
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.01)
        if s is not None:
            s.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 5)
    with open(out, "w") as f:
        f.write("# client_start_wall=%.6f\n" % t0)
        f.write("t_s,requests,req_per_s,errors\n")
        for i in range(nb):
            f.write("%.1f,%d,%d,%d\n" % (i * BUCKET, counts[i], counts[i] / BUCKET, errors[i]))


if __name__ == "__main__":
    main()
