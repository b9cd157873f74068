"""Loading the library, the command line, what needs no library."""

import os
import subprocess
import sys
import textwrap

import taskbroker as tb


def _py(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30, env=e)


def test_bad_library_path_is_a_clear_error():
    out = _py("""
        import taskbroker
        try:
            taskbroker.Broker().ping()
        except taskbroker.LibraryNotFound as e:
            print("LibraryNotFound:", e)
    """, TASKBROKER_LIB="/nonexistent/libtaskbroker.so")
    assert out.returncode == 0, out.stderr
    assert "TASKBROKER_LIB='/nonexistent/libtaskbroker.so' cannot be " \
        "loaded" in out.stdout


def test_import_and_eager_mode_need_no_library():
    out = _py("""
        import taskbroker
        b = taskbroker.Broker(eager=True)

        @b.task(name="inc")
        def inc(x): return x + 1

        print(inc.defer(1).result())
    """, TASKBROKER_LIB="/nonexistent/libtaskbroker.so")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


def test_default_url_follows_the_environment(monkeypatch):
    out = _py("import taskbroker; print(taskbroker.Broker().url)",
              TASKBROKER_URL="ipc:///tmp/elsewhere.sock")
    assert out.stdout.strip() == "ipc:///tmp/elsewhere.sock"
    env = {k: v for k, v in os.environ.items() if k != "TASKBROKER_URL"}
    out = subprocess.run([sys.executable, "-c", "import taskbroker; "
                          "print(taskbroker.Broker().events_url)"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout.strip() == "ipc://run/taskbroker-events.sock"


def test_worker_command_usage_errors():
    out = subprocess.run([sys.executable, "-m", "taskbroker", "worker",
                          "taskbroker.testing"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "0 Broker objects" in out.stderr
    out = subprocess.run([sys.executable, "-m", "taskbroker", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "worker" in out.stdout


def test_public_names():
    for name in ("Broker", "AsyncBroker", "Task", "TaskSpec", "Event",
                 "TaskbrokerError", "NotFound", "ForkError", "TaskFailed",
                 "Reject", "NoRetry", "current_task", "ArgumentError",
                 "NotATask"):
        assert name in tb.__all__ and hasattr(tb, name)


def test_frameworks_are_optional():
    out = _py("""
        import sys
        for name in ("quart", "hypercorn", "aiohttp", "asab"):
            sys.modules[name] = None  # as if not installed
        import taskbroker, taskbroker.worker, taskbroker.testing
        for mod in ("taskbroker.quart", "taskbroker.aiohttp",
                    "taskbroker.asab"):
            try:
                __import__(mod)
            except ImportError as e:
                print(mod, "ImportError")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "taskbroker.quart ImportError", "taskbroker.aiohttp ImportError",
        "taskbroker.asab ImportError"]
