#!/usr/bin/env python3
"""A lifeboat plugin in Python 3, standard library only: protocol v1 over a JSON estate file.

lifeboat starts this program in the plan's directory and speaks JSON-RPC 2.0 with it, one
message per line, on its stdin and stdout (docs/plugin-protocol.md). Everything it logs goes
to stderr, which lifeboat shows with the plugin's name in front.

The estate file holds what a real backend would be asked about (the configuration and
process servers, vCenter, ESXi hosts, datastores, master targets and machines) and the
record of every operation by the id lifeboat gave it. That record is what makes the plugin
crash-safe: `run` with an id already recorded never starts a second operation, and `status`
answers from the file, so a fresh process after a crash answers the same.

Configuration (`provider.plugin.config` in the plan, passed in `initialize`):
  estate:             the estate file, relative to the plan (required)
  start_from:         copied to `estate` when that does not exist yet
  operation_seconds:  how long each operation takes (default 0)
  max_concurrency:    the most operations at once (default: no limit)
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time

try:
    import fcntl  # POSIX: one writer at a time across processes
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PROTOCOL_VERSIONS = [1]
NAME = "estate-plugin"
VERSION = "1.0.0"
HEARTBEAT_S = 5

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PROVIDER_ERROR = -32000
UNSUPPORTED_VERSION = -32001
NOT_INITIALIZED = -32002

KINDS = {
    # kind: (stage it starts from, stage it reaches)
    "reprotect": ("failed-over", "reprotected"),
    "switch-process-server": ("reprotected", "reprotected"),
    "failback": ("reprotected", "failed-back"),
    "commit": ("failed-back", "committed"),
    "reprotect-home": ("committed", "protected"),
}
NEEDS_SETTINGS = {"reprotect", "switch-process-server", "reprotect-home"}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def refuse(code, message, transient=False, retry_after_ms=None):
    """A backend refusal: the engine retries transient ones and reports permanent ones."""
    data = {"kind": "transient" if transient else "permanent", "code": code}
    if retry_after_ms is not None:
        data["retry_after_ms"] = retry_after_ms
    return RpcError(PROVIDER_ERROR, message, data)


def bad_params(message):
    return RpcError(INVALID_PARAMS, "invalid params: " + message)


class Estate:
    """The estate file: every read and change under one lock, every write atomic."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def _read(self):
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)

    def _write(self, estate):
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".estate.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(estate, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def transact(self, change):
        """Runs change(estate) with the estate locked (threads and processes) and writes it."""
        with self.lock:
            with open(self.path + ".lock", "a") as lock:
                if fcntl:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                estate = self._read()
                settle(estate, time.time())
                result = change(estate)
                self._write(estate)
                return result


def settle(estate, now):
    """Completes every running operation whose end has come, in the order they end."""
    due = [
        (op["ends_at"], op_id)
        for op_id, op in estate["operations"].items()
        if op["status"] == "running" and op["ends_at"] <= now
    ]
    for _, op_id in sorted(due):
        op = estate["operations"][op_id]
        complete(estate, op)
        op["status"] = "succeeded"


def complete(estate, op):
    """What an operation changes at the sites once it has run."""
    machine = estate["machines"][op["machine"]]
    machine["stage"] = KINDS[op["kind"]][1]
    settings = op.get("reprotect") or {}
    if op["kind"] == "reprotect":
        target = estate["master_targets"][settings["master_target"]]
        target["disks_attached"] = target.get("disks_attached", 0) + len(machine.get("disks_gib", [1]))
        if settings["recovery"] == "alternate":
            # Alternate-location recovery creates a new VM on the master target's host.
            machine["vmware_vm"] = {
                "exists": True,
                "powered_on": False,
                "esxi_host": target["esxi_host"],
                "datastore": settings["datastore"],
            }
        machine["vmware_vm"]["powered_on"] = False
        machine["settings"] = {
            key: settings[key]
            for key in ("master_target", "process_server", "datastore", "retention_drive", "recovery")
        }
    elif op["kind"] == "switch-process-server":
        machine["settings"]["process_server"] = settings["process_server"]
    elif op["kind"] == "failback":
        target = estate["master_targets"].get(machine.get("settings", {}).get("master_target"))
        if target:
            target["disks_attached"] = max(0, target.get("disks_attached", 0) - len(machine.get("disks_gib", [1])))
        machine["vmware_vm"]["powered_on"] = True
    elif op["kind"] == "commit":
        machine["azure_replica"] = "deleted"


def start(estate, params, seconds, now):
    """Checks the operation as the backend would, then records it as running."""
    machine = estate["machines"].get(params["machine"])
    if machine is None:
        raise refuse("machine-missing", "machine `%s` is not a replicated item" % params["machine"])
    kind = params["kind"]
    need, _ = KINDS[kind]
    if machine["stage"] != need:
        raise refuse(
            "stage",
            "`%s` needs machine `%s` %s; it is %s" % (kind, params["machine"], need, machine["stage"]),
        )
    running = [op for op in estate["operations"].values() if op["status"] == "running" and op["machine"] == params["machine"]]
    if running:
        raise refuse("busy", "another operation runs on `%s`" % params["machine"], transient=True, retry_after_ms=1000)
    settings = params.get("reprotect")
    if kind == "reprotect":
        target = estate["master_targets"].get(settings["master_target"])
        if target is None or not target.get("healthy", False):
            raise refuse("master-target", "master target `%s` is missing or unhealthy" % settings["master_target"])
        if settings["datastore"] not in estate["datastores"]:
            raise refuse("datastore", "datastore `%s` does not exist" % settings["datastore"])
    if kind in ("reprotect", "switch-process-server"):
        server = estate["process_servers"].get(settings["process_server"])
        if server is None or not server.get("healthy", False):
            raise refuse("process-server", "process server `%s` is missing or unhealthy" % settings["process_server"])
    if kind == "reprotect-home":
        home = settings.get("home") if settings else None
        if not home:
            raise refuse("settings", "`reprotect-home` of `%s` needs the plan's `site.home`" % params["machine"])
        if home["run_as_account"] not in estate["configuration_server"]["run_as_accounts"]:
            raise refuse("run-as-account", "run-as account `%s` is not registered" % home["run_as_account"])
    estate["operations"][params["id"]] = {
        "machine": params["machine"],
        "kind": kind,
        "reprotect": settings,
        "status": "running",
        "started_at": now,
        "ends_at": now + seconds,
    }


class Plugin:
    def __init__(self, out):
        self.out = out
        self.out_lock = threading.Lock()
        self.estate = None
        self.seconds = 0.0
        self.max_concurrency = None
        self.initialized = False

    # -- framing ----------------------------------------------------------------------------

    def send(self, message):
        line = json.dumps(message, separators=(",", ":"))
        with self.out_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def answer(self, request_id, result=None, error=None):
        message = {"jsonrpc": "2.0", "id": request_id}
        if error is not None:
            message["error"] = {"code": error.code, "message": error.message}
            if error.data is not None:
                message["error"]["data"] = error.data
        else:
            message["result"] = result
        self.send(message)

    def progress(self, op_id, message):
        params = {"message": message}
        if op_id is not None:
            params["id"] = op_id
        self.send({"jsonrpc": "2.0", "method": "progress", "params": params})

    # -- methods ----------------------------------------------------------------------------

    def initialize(self, params):
        offered = params.get("protocol_versions")
        if not isinstance(offered, list):
            raise bad_params("`protocol_versions` must be a list")
        common = [v for v in PROTOCOL_VERSIONS if v in offered]
        if not common:
            raise RpcError(UNSUPPORTED_VERSION, "no common protocol version", {"supported": PROTOCOL_VERSIONS})
        config = params.get("config") or {}
        if not isinstance(config, dict) or not isinstance(config.get("estate"), str):
            raise bad_params("`config.estate` (the estate file) is required")
        path = config["estate"]
        start_from = config.get("start_from")
        if not os.path.exists(path):
            if not start_from:
                raise refuse("estate", "the estate file `%s` does not exist" % path)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            shutil.copyfile(start_from, path)
            log("created the estate `%s` from `%s`" % (path, start_from))
        self.estate = Estate(path)
        self.seconds = float(config.get("operation_seconds", 0))
        self.max_concurrency = config.get("max_concurrency")
        self.initialized = True
        capabilities = {"cancel": False}
        if self.max_concurrency:
            capabilities["max_concurrency"] = int(self.max_concurrency)
        return {
            "protocol_version": max(common),
            "plugin": {"name": NAME, "version": VERSION},
            "capabilities": capabilities,
        }

    def describe(self, params):
        return {"identity": "estate:" + os.path.abspath(self.estate.path)}

    def refresh(self, params):
        names = {}
        for key in ("vcenter", "configuration_server", "process_server"):
            if not isinstance(params.get(key), str):
                raise bad_params("`%s` must be a string" % key)
            names[key] = params[key]
        for key in ("esxi_hosts", "datastores", "master_targets", "machines"):
            value = params.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad_params("`%s` must be a list of names" % key)
            names[key] = value
        home = params.get("home_process_server")
        estate = self.estate.transact(lambda e: e)
        facts = {"esxi_hosts": {}, "datastores": {}, "master_targets": {}, "machines": {}}
        cs = estate["configuration_server"]
        if cs["name"] == names["configuration_server"]:
            facts["configuration_server"] = {"connected": cs["connected"]}
            facts["run_as_accounts"] = cs["run_as_accounts"]
        if names["process_server"] in estate["process_servers"]:
            facts["process_server"] = estate["process_servers"][names["process_server"]]
        if home and home in estate["process_servers"]:
            facts["home_process_server"] = estate["process_servers"][home]
        if names["vcenter"] in estate["vcenters"]:
            facts["vcenter"] = estate["vcenters"][names["vcenter"]]
        for name in names["machines"]:
            machine = estate["machines"].get(name)
            if machine is None:
                continue  # absent: the site does not have it
            machine = dict(machine)
            running = [
                {"id": op_id, "kind": op["kind"]}
                for op_id, op in estate["operations"].items()
                if op["status"] == "running" and op["machine"] == name
            ]
            if running:
                machine["running"] = running[0]
            facts["machines"][name] = machine
        # The hosts the plan names, and those the machines' VMs live on.
        hosts = list(names["esxi_hosts"]) + [
            m["vmware_vm"]["esxi_host"]
            for m in facts["machines"].values()
            if m.get("vmware_vm", {}).get("esxi_host")
        ]
        for name in hosts:
            if name in estate["esxi_hosts"]:
                facts["esxi_hosts"][name] = estate["esxi_hosts"][name]
        for key in ("datastores", "master_targets"):
            for name in names[key]:
                if name in estate[key]:
                    facts[key][name] = estate[key][name]
        return facts

    def run(self, params):
        op_id = params.get("id")
        if not isinstance(op_id, str) or not isinstance(params.get("machine"), str):
            raise bad_params("`id` and `machine` must be strings")
        if params.get("kind") not in KINDS:
            raise bad_params("`kind` must be one of %s" % ", ".join(KINDS))
        if params["kind"] in NEEDS_SETTINGS and not isinstance(params.get("reprotect"), dict):
            raise bad_params("`%s` needs `reprotect`" % params["kind"])

        def begin(estate):
            if op_id not in estate["operations"]:  # the id is the idempotency key
                start(estate, params, self.seconds, time.time())
            return estate["operations"][op_id]

        op = self.estate.transact(begin)
        while op["status"] == "running":
            time.sleep(max(0.0, min(HEARTBEAT_S, op["ends_at"] - time.time())))
            self.progress(op_id, "%s of %s running" % (op["kind"], op["machine"]))
            op = self.estate.transact(lambda e: e["operations"][op_id])
        if op["status"] == "failed":
            raise refuse(op["error"].get("code"), op["error"]["message"])
        return {"id": op_id, "stage": KINDS[op["kind"]][1]}

    def status(self, params):
        op_id = params.get("id")
        if not isinstance(op_id, str):
            raise bad_params("`id` must be a string")
        op = self.estate.transact(lambda e: e["operations"].get(op_id))
        if op is None:
            return {"status": "unknown"}
        result = {"status": op["status"]}
        if op["status"] == "failed":
            result["error"] = {"message": op["error"]["message"], "kind": "permanent", "code": op["error"].get("code")}
        return result

    def cancel(self, params):
        if not isinstance(params.get("id"), str):
            raise bad_params("`id` must be a string")
        return {"cancelled": False}  # an operation the backend has cannot be stopped

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request_id, method, params):
        try:
            if method == "initialize":
                result = self.initialize(params)
            elif not self.initialized:
                raise RpcError(NOT_INITIALIZED, "`%s` before `initialize`" % method)
            elif method in ("describe", "refresh", "run", "status", "cancel"):
                result = getattr(self, method)(params)
            else:
                raise RpcError(METHOD_NOT_FOUND, "no method `%s`" % method)
            self.answer(request_id, result=result)
        except RpcError as error:
            self.answer(request_id, error=error)
        except Exception as error:  # a bug here must not kill the other requests
            log("error in `%s`: %r" % (method, error))
            self.answer(request_id, error=refuse("internal", "the plugin failed: %r" % error))

    def serve(self, lines):
        for line in lines:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                self.answer(None, error=RpcError(PARSE_ERROR, "not JSON"))
                continue
            if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "method" not in request:
                self.answer(None, error=RpcError(INVALID_REQUEST, "not a JSON-RPC 2.0 request"))
                continue
            request_id, method = request.get("id"), request["method"]
            params = request.get("params") or {}
            if not isinstance(params, dict):
                self.answer(request_id, error=bad_params("params must be an object"))
                continue
            if method == "shutdown":
                self.answer(request_id, result=None)
                return
            if method in ("run", "refresh", "status"):
                # Long requests in threads, so that several operations run at once.
                threading.Thread(target=self.handle, args=(request_id, method, params), daemon=True).start()
            else:
                self.handle(request_id, method, params)
        # stdin ended: lifeboat has gone. Running operations stay recorded in the estate.


def main():
    plugin = Plugin(sys.stdout)
    try:
        plugin.serve(sys.stdin)
    except KeyboardInterrupt:
        pass
    # Daemon threads die with the process; the estate file records what they were doing.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
