"""A RabbitMQ node of the test's own, for faults the shared broker must never see.

`PrivateBroker` runs the installed `rabbitmq-server` as a second node on this machine: its own
node name (`rhtest-<random>@localhost`, with the test worker in it in a parallel run), its own
Erlang cookie, its own AMQP and distribution ports (both on 127.0.0.1 only, in the test worker's
share of the ports), its own config, data and log directories, and no plugins. A test
may stop it, start it again on the same data, or raise an alarm on it; the shared node
(rabbit@localhost) is never touched, and with a cookie of its own this node's `rabbitmqctl`
could not reach the shared node even if it tried.

What it takes on a Debian-style install (learnt here, RabbitMQ 3.10):
- /usr/sbin/rabbitmq-server and /usr/sbin/rabbitmqctl are wrappers that, run as root, `su` to
  the rabbitmq user: its home, hence its Erlang cookie. The real scripts, which honour the
  environment below, live in /usr/lib/rabbitmq/bin; those are run directly, as the current user.
- /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost, ERL_FLAGS, ...) is sourced unless
  RABBITMQ_CONF_ENV_FILE names another file, so the node gets an env file of its own.
- The node name is set at run time, not on the beam command line: the node's processes
  (beam.smp, erl_child_setup, inet_gethost, the odd `sh`) are found through a marker in their
  environment (RHTEST_PRIVATE_BROKER), which also names the test process that owns the node.
- `rabbitmq-server -detached` returns at once; SIGTERM to beam.smp stops the node gracefully
  (clients get connection.close 320), as `rabbitmqctl stop` would, and the node's processes are
  then watched until gone.
- `rabbitmqctl await_startup` fails at once while the node is not yet registered with epmd, so
  readiness is an AMQP connection that opens, polled against a deadline.
- Ports are picked below the kernel's ephemeral range: a client retrying against a closed port
  inside that range can connect to itself (TCP simultaneous open) and take the port the node
  needs when it comes back.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pika
import pika.exceptions

from harness.broker import Vhost, test_worker, unique_name

# In the environment of the node's processes: which node they are, and which process owns it.
MARKER = "RHTEST_PRIVATE_BROKER"
OWNER = "RHTEST_PRIVATE_BROKER_OWNER"
SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin")
# The pieces of a node that die with it; epmd, which a node starts if none runs, may stay.
KEEP_RUNNING = frozenset({"epmd"})


class BrokerUnavailable(RuntimeError):
    """No usable rabbitmq-server / rabbitmqctl on this machine."""


def find_scripts() -> Path:
    """The directory of the real rabbitmq-server and rabbitmqctl (not the `su` wrappers)."""
    override = os.environ.get("RABBITMQ_SCRIPTS_DIR")
    candidates = [override] if override else list(SCRIPT_DIRS)
    if not override and (found := shutil.which("rabbitmq-server")):
        candidates.append(str(Path(found).resolve().parent))
    for candidate in candidates:
        directory = Path(candidate)
        server = directory / "rabbitmq-server"
        if (
            server.is_file()
            and (directory / "rabbitmqctl").is_file()
            and b"su rabbitmq" not in server.read_bytes()
        ):
            return directory
    raise BrokerUnavailable(
        f"no rabbitmq-server/rabbitmqctl scripts found in {candidates} "
        "(set RABBITMQ_SCRIPTS_DIR to the directory holding them)"
    )


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (TIME_WAIT leftovers do not count, as for the node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_share(first: int, last: int) -> tuple[int, int]:
    """This test worker's share of the ports `first`..`last`: the whole range outside a
    parallel run; in one (pytest-xdist), a slice per worker, so that a port one worker's node
    or server leaves free while it is down (a restart, an outage) is never picked by another."""
    worker = test_worker()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not worker.removeprefix("gw").isdigit() or workers < 2:
        return first, last
    size = (last - first + 1) // workers
    start = first + int(worker.removeprefix("gw")) % workers * size
    return start, start + size - 1


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1, outside the ephemeral range where possible
    (and in this test worker's share of it, see `_worker_share`)."""
    low, high = _ephemeral_range()
    if low - 10000 >= 1000:
        first, last = 10000, low - 1
    elif 65535 - high >= 1000:
        first, last = high + 1, 65535
    else:
        first, last = 1024, 65535
    first, last = _worker_share(first, last)
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(1000):
        port = rng.randint(first, last)
        if port not in ports and _port_is_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise BrokerUnavailable(f"no {count} free ports found between {first} and {last}")


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _marked_processes() -> list[tuple[int, dict[str, str]]]:
    """Live processes of private nodes (epmd aside), with their MARKER and OWNER variables."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if MARKER.encode() not in environ:
                continue
            if (entry / "comm").read_text().strip() in KEEP_RUNNING:
                continue
        except OSError:
            continue  # gone, or not ours to read
        env = {}
        for item in environ.split(b"\0"):
            key, _, value = item.decode(errors="replace").partition("=")
            if key in (MARKER, OWNER):
                env[key] = value
        if MARKER in env and _pid_alive(int(entry.name)):
            found.append((int(entry.name), env))
    return found


def _signal_beams(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp":
                os.kill(pid, sig)


def _end(find: Callable[[], list[int]], timeout: float, what: str) -> None:
    """Wait for `find()` to come back empty; SIGKILL what is left at the deadline."""
    deadline = time.monotonic() + timeout
    killed = False
    while pids := find():
        if time.monotonic() > deadline:
            if killed:
                raise AssertionError(f"{what}: processes {pids} survive SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + timeout
        time.sleep(0.1)


def reap_orphans(timeout: float = 10) -> list[str]:
    """Stop private nodes whose owner process has died (a test run killed before teardown).

    Only nodes started by this module are considered, and only those whose owner is gone; the
    nodes of a test run still going on (here or in another session) are left alone.
    """
    orphans: dict[str, list[int]] = {}
    for pid, env in _marked_processes():
        owner = env.get(OWNER, "")
        if owner.isdigit() and not _pid_alive(int(owner)):
            orphans.setdefault(env[MARKER], []).append(pid)
    for node, pids in orphans.items():
        _signal_beams(pids, signal.SIGTERM)  # a graceful stop for RabbitMQ >= 3.8

        def left(pids: list[int] = pids) -> list[int]:
            return [pid for pid in pids if _pid_alive(pid)]

        _end(left, timeout, node)
    return sorted(orphans)


class DefaultVhost(Vhost):
    """The private node's default vhost "/", with `Vhost`'s helpers (depth, drain, publish)."""

    def __init__(self, url: str) -> None:  # no super().__init__: it creates a vhost
        self.name = "/"
        self.url = url

    def delete(self) -> None:
        """The default vhost goes with the node (`PrivateBroker.destroy`)."""


def new_node_name() -> str:
    """A node name no other test run uses: `rhtest-<worker>-<random>`, the test worker's id
    only in a parallel run (the host part is `localhost`)."""
    return unique_name("rhtest")


class PrivateBroker:
    """One private RabbitMQ node under `base_dir`; call `destroy()` when done, whatever happens.

    `short_name`, `cookie` and `config` (more rabbitmq.conf lines) let several nodes form a
    cluster (`harness.private_cluster`); by default the node has a random name and cookie.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        short_name: str | None = None,
        cookie: str | None = None,
        config: Sequence[str] = (),
    ) -> None:
        self._scripts = find_scripts()
        short = short_name or new_node_name()
        self.node = f"{short}@localhost"
        self.port, self.dist_port = free_ports(2)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.dir = Path(base_dir) / short
        self.log_dir = self.dir / "log"
        self.pid_file = self.dir / f"{short}.pid"
        self.start_seconds: list[float] = []  # how long each start took until ready
        self._started_at: float | None = None
        self._make_files(cookie or secrets.token_hex(20).upper(), config)
        self._ctl_env = self._environment()
        self._server_env = {**self._ctl_env, MARKER: self.node, OWNER: str(os.getpid())}

    def __repr__(self) -> str:
        return f"PrivateBroker({self.node}, amqp 127.0.0.1:{self.port}, dist {self.dist_port})"

    # -- files and environment -----------------------------------------------------------------

    def _make_files(self, cookie: str, extra_config: Sequence[str]) -> None:
        home = self.dir / "home"
        for directory in (home, self.dir / "mnesia", self.log_dir):
            directory.mkdir(parents=True)
        cookie_file = home / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        config = [
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",  # AMQP on loopback only
            "log.file.level = info",
            "log.console = false",
            *extra_config,
        ]
        (self.dir / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text(
            "# Empty on purpose: /etc/rabbitmq/rabbitmq-env.conf is the shared node's.\n"
        )

    def _environment(self) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "ERL_")) and k not in ("HOME", MARKER, OWNER)
        }
        return {
            **inherited,
            "HOME": str(self.dir / "home"),  # where the node and its CLI find the cookie
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the node detached (on its existing data, if any); `wait_until_ready` follows."""
        if self.processes():
            raise RuntimeError(f"{self.node} is already running")
        for port in (self.port, self.dist_port):
            if not _port_is_free(port):
                raise RuntimeError(f"port {port} of {self.node} is taken by something else")
        self._started_at = time.monotonic()
        # Output to a file, not a pipe: the detached node must not hold a pipe of ours open.
        with (self.dir / "start.out").open("ab") as out:
            code = subprocess.run(
                [str(self._scripts / "rabbitmq-server"), "-detached"],
                env=self._server_env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                check=False,
                timeout=60,
            ).returncode
        if code != 0:
            raise AssertionError(f"rabbitmq-server -detached exited {code}:\n{self.log_tail()}")

    def wait_until_ready(self, timeout: float = 60) -> float:
        """Wait until the node accepts an AMQP connection; the seconds since `start()`."""
        waiting_since = time.monotonic()
        deadline = waiting_since + timeout
        parameters = pika.URLParameters(self.url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 2
        parameters.blocked_connection_timeout = 2
        while True:
            try:
                pika.BlockingConnection(parameters).close()
                break
            except pika.exceptions.AMQPError:
                pass
            started = self._started_at
            if started is not None and time.monotonic() - started > 2 and not self.processes():
                raise AssertionError(f"{self.node} died while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.node} not ready after {timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        took = time.monotonic() - (self._started_at or waiting_since)
        self.start_seconds.append(round(took, 2))
        return took

    def stop(self, timeout: float = 60) -> None:
        """Stop the node gracefully (clients see connection.close), keeping its data.

        SIGTERM is a graceful stop for RabbitMQ >= 3.8, as `rabbitmqctl stop` is, without the
        CLI's own Erlang VM to boot first: seconds of CPU on a busy machine, while the clients
        of a fault scenario wait for the node to go."""
        self._signal_beam(signal.SIGTERM)
        self._end_processes(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the node, as a crash would: no goodbye to its clients or its peers."""
        self._signal_beam(signal.SIGKILL)
        self._end_processes(timeout=10)

    def destroy(self, keep_logs_in: Path | None = None) -> None:
        """Stop the node, make sure none of its processes is left, and delete its files.

        With `keep_logs_in`, the node's log directory is first copied there (for post-mortems).
        """
        try:
            self.stop()
        finally:
            self._end_processes(timeout=10)
            if keep_logs_in is not None and self.log_dir.is_dir():
                shutil.copytree(
                    self.log_dir, Path(keep_logs_in) / f"{self.node}-log", dirs_exist_ok=True
                )
            shutil.rmtree(self.dir, ignore_errors=True)
        left = self.processes()
        assert not left, f"{self.node} left processes behind: {left}"

    # -- inspection and control ----------------------------------------------------------------

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl -n NODE ARGS` against this node only; its stdout."""
        return self.cli("rabbitmqctl", *args, timeout=timeout)

    def cli(self, tool: str, *args: str, timeout: float = 60) -> str:
        """`TOOL -n NODE ARGS` (rabbitmqctl, rabbitmq-queues, rabbitmq-upgrade, ...); stdout."""
        command = [str(self._scripts / tool), "-n", self.node, *args]
        result = subprocess.run(
            command,
            env=self._ctl_env,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def rabbitmqctl_command(self) -> str:
        """A shell command that runs rabbitmqctl against this node (for RABBITMQCTL=...)."""
        env = [
            f"{name}={value}"
            for name, value in self._ctl_env.items()
            if name == "HOME" or name.startswith(("RABBITMQ_", "ERL_"))
        ]
        return shlex.join(["env", *env, str(self._scripts / "rabbitmqctl"), "-n", self.node])

    def processes(self) -> list[int]:
        """Pids of this node's live processes (beam.smp, erl_child_setup, ...), epmd aside."""
        return [pid for pid, env in _marked_processes() if env.get(MARKER) == self.node]

    def _signal_beam(self, sig: signal.Signals) -> None:
        _signal_beams(self.processes(), sig)

    def _end_processes(self, timeout: float) -> None:
        _end(self.processes, timeout, self.node)

    @property
    def running(self) -> bool:
        return bool(self.processes())

    def vhost(self) -> DefaultVhost:
        return DefaultVhost(self.url)

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_dir / f"{self.node}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = f"(no log at {path})"
        start_out = self.dir / "start.out"
        if start_out.exists():
            text += start_out.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
