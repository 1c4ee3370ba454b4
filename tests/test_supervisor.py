"""gunicorn's settings for ``lightbox serve --workers N`` (:mod:`app.supervisor`); the processes
themselves are tests/e2e/test_supervisor.py."""

from gunicorn.config import Config

from app.supervisor import gunicorn_options


def test_bind_address() -> None:
    assert gunicorn_options("127.0.0.1", 8080, 2, 30, "info")["bind"] == ["127.0.0.1:8080"]
    assert gunicorn_options("::", 8443, 2, 30, "info")["bind"] == ["[::]:8443"]


def test_worker_timeout_in_whole_seconds_at_least_two() -> None:
    """uvicorn's loop beats about once a second: a shorter timeout would kill idle workers."""
    timeouts = [gunicorn_options("h", 1, 2, t, "info")["timeout"] for t in (30, 2.5, 1, 0.1, 0)]
    assert timeouts == [30, 3, 2, 2, 0]  # 0: never


def test_gunicorn_takes_every_setting() -> None:
    options = gunicorn_options("h", 1, 4, 30, "warning")
    assert options["workers"] == 4
    assert options["loglevel"] == "warning"
    # not a control socket in $HOME shared by every server of the machine
    assert options["control_socket_disable"] is True
    config = Config()
    for name, value in options.items():
        config.set(name, value)  # an unknown name raises
    assert config.workers == 4
    assert config.timeout == 30
