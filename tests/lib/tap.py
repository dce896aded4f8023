"""TAP output and psql, shared by every Python test: `ok N - what` / `not ok N - what`
with `#` details on failure (or always with TAP_VERBOSE=1), and SQL in the test's
database (the PG* variables tests/run.sh sets)."""
import os, subprocess, sys


class Tap:
    """One numbered sequence of TAP lines; label prefixes each line's text."""

    def __init__(self, label=""):
        self.n = self.failed = 0
        self.label = f"[{label}] " if label else ""

    def ok(self, cond, what, detail=None):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {self.label}{what}", flush=True)
        if not cond:
            self.failed += 1
        if detail is not None and detail != "" and (not cond or os.environ.get("TAP_VERBOSE")):
            for line in str(detail).splitlines()[:40]:
                print(f"#   {line[:400]}", flush=True)
        return cond

    def note(self, text):
        for line in str(text).splitlines():
            print(f"# {line}", flush=True)

    def exit(self):
        sys.exit(1 if self.failed else 0)


T = Tap()  # the sequence of a test that has one


def ok(cond, what, detail=None):
    return T.ok(cond, what, detail)


def note(text):
    T.note(text)


def psql(sql, env=None):
    """Runs SQL in the test's database, returns the unaligned output (raises on error)."""
    return subprocess.run(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()
