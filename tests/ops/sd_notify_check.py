#!/usr/bin/env python3
"""Runs a program with $NOTIFY_SOCKET pointing at a socket of ours, as systemd does for a
Type=notify service; checks it sends READY=1, then STOPPING=1 after SIGTERM.
Usage: sd_notify_check.py PROGRAM ARGS..."""
import os, signal, socket, subprocess, sys, tempfile, time

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    proc = subprocess.Popen(sys.argv[1:], env=dict(os.environ, NOTIFY_SOCKET=path),
                            stderr=subprocess.DEVNULL)
    seen = []
    def wait_for(text, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                seen.extend(sock.recv(4096).decode().split("\n"))
            except socket.timeout:
                pass
            if text in seen:
                return True
        return False
    try:
        if not wait_for("READY=1", 10):
            sys.exit(f"FAIL: no READY=1 from {sys.argv[1]} (got {seen})")
        proc.send_signal(signal.SIGTERM)
        if not wait_for("STOPPING=1", 20):
            sys.exit(f"FAIL: no STOPPING=1 after SIGTERM (got {seen})")
    finally:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"{os.path.basename(sys.argv[1])}: " + ", ".join(s for s in seen if s))
