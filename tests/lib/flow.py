"""Load helpers for Python tests: a steady flow of published events, and waiting for a
process to exit.

    with EventFlow("t1", "room:1", pad=300, threads=2):
        ...            # events are published, one statement after another, until the block ends
    exited(pid, 15)    # True once pid is gone (or a zombie) within 15 s
"""
import os, subprocess, threading, time


class EventFlow:
    """Publishes events to (tenant, channel) from `threads` psql sessions, each fed one
    statement after another (a steady stream of hub wakes), until stopped."""

    def __init__(self, tenant, channel, pad=0, threads=1):
        self.tenant, self.channel, self.pad = tenant, channel, pad
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        p = subprocess.Popen(["psql", "-qXAt"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        i = 0
        pad = f", 'pad', repeat('x', {self.pad})" if self.pad else ""
        while not self.stop.is_set():
            p.stdin.write(f"SELECT realtime.publish('{self.tenant}', '{self.channel}', 'e', "
                          f"jsonb_build_object('i', {i}{pad}));\n")
            p.stdin.flush()
            i += 1
            if i % 20 == 0:
                time.sleep(0.002)
        p.stdin.close()
        p.wait()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()
        return False


def exited(pid, timeout):
    """Whether pid exits (or is left a zombie) within timeout seconds."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return not os.path.exists(f"/proc/{pid}")
