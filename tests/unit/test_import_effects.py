"""Importing the runtime changes nothing outside it; a process that starts sets up what it needs.

Each check runs in a fresh interpreter: the suite itself has imported (and, for the header
decoding, installed) everything long before, which would hide an effect of the import.
"""

from __future__ import annotations

import json
import sys

from tests.unit.commands import output_of

RUNTIME = ("common", "first", "service", "last")

# Prints what changed, as JSON: every global a library could set on import, before and after
# importing every module of the runtime (pika and redis are imported first, so that their own
# set-up is not counted, and their module and class attributes are compared one by one).
PROBE = """
import json, logging, pkgutil, importlib, signal, socket, sys, threading, inspect
import pika, pika.spec, pika.channel, pika.connection, redis

def third_party():
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("pika", "redis")):
            continue
        for attribute, value in list(vars(module).items()):
            found[f"{name}.{attribute}"] = id(value)
            if inspect.isclass(value) and value.__module__ == name:
                for member, inner in list(vars(value).items()):
                    found[f"{name}.{attribute}.{member}"] = id(inner)
    return found

def loggers():
    found = {"": (logging.root.level, len(logging.root.handlers))}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            found[name] = (logger.level, len(logger.handlers), logger.disabled)
    return found

def state():
    return {
        "signals": {
            s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
            if isinstance(s, signal.Signals)
        },
        "switch interval": sys.getswitchinterval(),
        "recursion limit": sys.getrecursionlimit(),
        "socket timeout": socket.getdefaulttimeout(),
        "excepthooks": [repr(sys.excepthook), repr(threading.excepthook)],
        "threads": sorted(t.name for t in threading.enumerate()),
        "logging disabled": logging.root.manager.disable,
        "decode is tolerant": getattr(pika.spec.BasicProperties.decode, "tolerant", False),
    }

before, patched, configured = state(), third_party(), loggers()
imported = []
for package in %(packages)r:
    root = importlib.import_module(package)
    imported.append(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(module.name)
        imported.append(module.name)
after = state()
changed = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
now = third_party()
changed.update({
    name: "replaced" for name, value in patched.items() if name in now and now[name] != value
})
changed.update({
    f"logger {name!r}": [setting, loggers().get(name)]
    for name, setting in configured.items() if loggers().get(name) != setting
})
changed.update({
    f"logger {name!r}": ["new", setting] for name, setting in loggers().items()
    if name not in configured and setting[:2] != (logging.NOTSET, 0)
})
print(json.dumps({"imported": imported, "changed": changed}))
"""


def probe() -> dict:
    return json.loads(output_of([sys.executable, "-c", PROBE % {"packages": RUNTIME}]))


def test_importing_the_runtime_changes_nothing_global() -> None:
    found = probe()
    assert {"common.connection", "last.store", "first.__main__"} <= set(found["imported"])
    assert found["changed"] == {}


def test_a_process_makes_header_decoding_tolerant_as_it_starts() -> None:
    """What the import no longer does, `common.main.run()` does before the process's main."""
    script = (
        "from pika import spec\n"
        "from common.main import run\n"
        "run(lambda env: 0 if getattr(spec.BasicProperties.decode, 'tolerant', False) else 5)\n"
    )
    output_of([sys.executable, "-c", script])  # exit code 5 if it is not
