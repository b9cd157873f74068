"""Shared fixtures: the taskbroker plugin's taskbroker_server and
taskbroker_client (a real taskbrokerd per test) come from the package's
pytest11 entry point; this file only checks the environment."""

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("TB_BROKER_BIN") and not shutil.which("taskbrokerd"):
        raise pytest.UsageError(
            "set TB_BROKER_BIN to build/broker/taskbrokerd (and "
            "TASKBROKER_LIB to build/client/libtaskbroker.so)")


@pytest.fixture
def broker(taskbroker_client):
    return taskbroker_client


@pytest.fixture
def server(taskbroker_server):
    return taskbroker_server
