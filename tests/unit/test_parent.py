"""driftline/_parent.py: a service started by ``driftline run`` ends when its parent is killed."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from driftline._parent import PARENT_ENV, child_env, exit_with_parent

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# The child: as a driftline service, it arranges to end with its parent, then says so and waits for
# SIGTERM, which it reports in a file before exiting (the services' graceful stop).
CHILD = textwrap.dedent("""
    import signal, sys, time
    from driftline._parent import exit_with_parent
    out = sys.argv[1]
    def on_term(signum, frame):
        open(out, "a").write("SIGTERM\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    arranged = exit_with_parent()
    open(out, "a").write(f"arranged={arranged}\\n")
    time.sleep(60)
""")

# The parent: as `driftline run`, it starts the child in a session of its own with child_env, prints
# the child's pid and sleeps until it is killed.
PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    from driftline._parent import child_env
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=child_env(dict(os.environ)),
                             start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(60)
""")


def _wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of an exited child counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@linux_only
def test_child_gets_sigterm_when_its_parent_is_killed(tmp_path):
    out = tmp_path / "child.txt"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(out)], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        assert _wait_for(lambda: out.exists() and "arranged=True" in out.read_text()), "the child did not start"
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: not _alive(child_pid)), "the child outlived its killed parent"
        assert out.read_text().splitlines() == ["arranged=True", "SIGTERM"]  # a graceful stop, not a kill
    finally:
        for pid in (parent.pid, child_pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stdout.close()


def test_child_env_names_this_process():
    env = child_env({"A": "1"})
    assert env == {"A": "1", PARENT_ENV: str(os.getpid())}


def test_without_the_variable_nothing_is_arranged():
    assert exit_with_parent({}) is False


@pytest.fixture
def death_signal_undone():
    """The tests below arrange the signal in pytest's own process: cleared after each."""
    yield
    assert ctypes.CDLL(None).prctl(1, 0, 0, 0, 0) == 0  # PR_SET_PDEATHSIG, none


@linux_only
def test_the_variable_is_not_passed_on(death_signal_undone):
    environ = {PARENT_ENV: str(os.getppid()), "B": "2"}
    assert exit_with_parent(environ) is True
    assert environ == {"B": "2"}


@linux_only
def test_a_parent_already_gone_stops_the_start(death_signal_undone):
    with pytest.raises(SystemExit, match="parent process 1 has exited") as exc:
        exit_with_parent({PARENT_ENV: "1"})  # init is not our parent
    assert "not starting" in str(exc.value)


def test_a_bad_value_names_the_variable():
    with pytest.raises(SystemExit, match=f"{PARENT_ENV}='x1' is not a process id"):
        exit_with_parent({PARENT_ENV: "x1"})
