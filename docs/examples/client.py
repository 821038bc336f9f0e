#!/usr/bin/env python3
"""A minimal nanoecrd client using only the Python standard library.

It speaks the protocol of docs/socket-protocol.md: newline-delimited JSON-RPC 2.0 over the
daemon's Unix socket. It is an example to copy from, not a replacement for the `nanoecr` CLI.

    client.py info                             # daemon.info
    client.py submit config/demo.toml          # run.start with the file's text (config_toml)
    client.py submit config/demo.toml --watch  # ... then follow the run to its end
    client.py watch                            # events.subscribe, print until run.end
    client.py status                           # run.status
    client.py abort                            # run.abort (safe unload)

Socket: --socket, else $NANOECR_SOCKET, else $XDG_RUNTIME_DIR/nanoecr/nanoecrd.sock, else
/run/nanoecr/nanoecrd.sock (the same rule as nanoecrd and the nanoecr CLI).

Exit codes (the same as the CLI's): 0 done (for watch: the run completed), 2 the daemon
refused (error response) or there is nothing to watch, 3 the daemon is unreachable, 4 the
watched run ended aborted or failed.
"""

import argparse
import json
import os
import socket
import sys

EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_RUN_NOT_COMPLETE = 4


def default_socket():
    if os.environ.get("NANOECR_SOCKET"):
        return os.environ["NANOECR_SOCKET"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "nanoecr", "nanoecrd.sock")
    return "/run/nanoecr/nanoecrd.sock"


class Unreachable(Exception):
    """No daemon to talk to, or it closed the connection."""


class Refused(Exception):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, error):
        super().__init__(error.get("message", ""))
        self.error = error


class Client:
    """One connection. Requests are answered in order; notifications that arrive while waiting
    for a response are kept for next_notification()."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            raise Unreachable("%s: %s" % (path, e.strerror or e)) from e
        self.file = self.sock.makefile("rwb")
        self.next_id = 1
        self.held = []

    def _read(self):
        line = self.file.readline()
        if not line:
            raise Unreachable("the daemon closed the connection")
        return json.loads(line)

    def call(self, method, params=None):
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            req["params"] = params
        try:
            self.file.write(json.dumps(req).encode("utf-8") + b"\n")
            self.file.flush()
        except OSError:
            # A refused peer gets one error line, then a closed socket: read it below.
            pass
        while True:
            msg = self._read()
            if "method" in msg:  # a notification
                self.held.append(msg)
            elif msg.get("id") in (req["id"], None):
                if "error" in msg:
                    raise Refused(msg["error"])
                return msg["result"]

    def next_notification(self):
        if self.held:
            return self.held.pop(0)
        while True:
            msg = self._read()
            if "method" in msg:
                return msg


def fmt(x, spec):
    """Floats may be null on the wire (NaN, e.g. Δρ/ρ during settle)."""
    return "-" if x is None else format(x, spec)


def follow(client, run_id):
    """Print the run's notifications until its run.end; return the exit code."""
    while True:
        n = client.next_notification()
        method, p = n["method"], n.get("params") or {}
        if p.get("run_id") not in (None, run_id):
            continue
        if method == "progress":
            print(
                "progress t=%s/%s s segment=%s load=%s uN disp=%s nm delta_rho=%s samples=%d dropped=%d"
                " spikes_p=%d spikes_n=%d popins=%d"
                % (
                    fmt(p["time_s"], ".3f"), fmt(p["total_s"], ".1f"), p["segment"], fmt(p["load_un"], ".1f"),
                    fmt(p["disp_nm"], ".2f"), fmt(p["delta_rho"], "+.2e"), p["samples"], p["dropped"],
                    p["spikes_p"], p["spikes_n"], p["popins"],
                ),
                flush=True,
            )
        elif method == "event":
            print(
                "event %s %s onset=%s s duration=%s s magnitude=%s segment=%s stress=%s MPa"
                % (
                    p["kind"], p["sign"], fmt(p["onset_time_s"], ".4f"), fmt(p["duration_s"], ".4f"),
                    fmt(p["magnitude"], "+.3e"), p["segment"], fmt(p["stress_mpa"], ".0f"),
                ),
                flush=True,
            )
        elif method == "samples":
            print("samples %d decimated (seq %d..%d)" % (len(p["seq"]), p["seq"][0], p["seq"][-1]) if p["seq"]
                  else "samples 0", flush=True)
        elif method == "run.end":
            s = p.get("summary") or {}
            print(
                "run.end run=%d status=%s file=%s samples=%s dropped=%s moved=%s skipped=%s reason=%s"
                % (
                    p["run_id"], p["status"], p["file"], s.get("samples", "-"), s.get("dropped", "-"),
                    s.get("moved_ticks", "-"), s.get("skipped_ticks", "-"),
                    s.get("end_reason") or p.get("error") or "-",
                ),
                flush=True,
            )
            return 0 if p["status"] == "complete" else EXIT_RUN_NOT_COMPLETE
        elif method == "subscriber.dropped":
            print("dropped by the daemon: %s" % p.get("reason"), file=sys.stderr)
            return EXIT_UNREACHABLE


def cmd_info(client, args):
    info = client.call("daemon.info")
    if args.json:
        print(json.dumps(info))
        return 0
    print("%s %s, protocol %d, pid %d, uid %d" % (info["name"], info["version"], info["protocol_version"],
                                                info["pid"], info["uid"]))
    print("state %s, %d clients, %d subscribers" % (info["state"], info["clients"], info["subscribers"]))
    print("output directory %s" % info["out_dir"])
    print("methods %s" % " ".join(info["methods"]))
    return 0


def cmd_status(client, args):
    st = client.call("run.status")
    if args.json:
        print(json.dumps(st))
        return 0
    print("state %s" % st["state"])
    if st["run"]:
        print("run %d: %s" % (st["run"]["run_id"], st["run"]["file"]))
    if st["last"]:
        print("last run: %s %s" % (st["last"]["status"], st["last"]["file"]))
    return 0


def cmd_submit(client, args):
    with open(args.config, encoding="utf-8") as f:
        text = f.read()
    params = {"config_toml": text, "config_name": args.config}
    if args.fast:
        params["fast"] = True
    if args.seed is not None:
        params["seed"] = args.seed
    if args.out_dir:
        params["out_dir"] = os.path.abspath(args.out_dir)
    if args.watch:
        # Subscribe first so that no notification of this run is missed.
        client.call("events.subscribe", {"samples": False})
    started = client.call("run.start", params)
    print("started run %d: %s (%s s program, %d samples expected)"
          % (started["run_id"], started["file"], started["total_s"], started["expected_samples"]), flush=True)
    return follow(client, started["run_id"]) if args.watch else 0


def cmd_watch(client, args):
    sub = client.call("events.subscribe", {"samples": args.samples})
    run = sub["run"]
    if run is None:
        print("no run in progress", file=sys.stderr)
        return EXIT_REFUSED
    print("watching run %d: %s" % (run["run_id"], run["file"]), flush=True)
    return follow(client, run["run_id"])


def cmd_abort(client, args):
    r = client.call("run.abort")
    print("abort %s for run %d (%s)"
          % ("already requested" if r["already_requested"] else "requested", r["run_id"], r["file"]))
    return 0


def main():
    ap = argparse.ArgumentParser(description="Minimal nanoecrd client (docs/socket-protocol.md).")
    ap.add_argument("--socket", default=default_socket(), help="socket path (default: %(default)s)")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="daemon.info")
    p.add_argument("--json", action="store_true", help="print the raw result")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("status", help="run.status")
    p.add_argument("--json", action="store_true", help="print the raw result")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("submit", help="run.start with a config file's text")
    p.add_argument("config", help="run config (TOML)")
    p.add_argument("--fast", action="store_true", help="unpaced (simulated rig only)")
    p.add_argument("--seed", type=int, help="simulation seed")
    p.add_argument("--out-dir", help="output directory on the daemon's machine")
    p.add_argument("--watch", action="store_true", help="follow the run to its end")
    p.set_defaults(func=cmd_submit)
    p = sub.add_parser("watch", help="events.subscribe and print until run.end")
    p.add_argument("--samples", action="store_true", help="also print decimated sample batches")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("abort", help="run.abort")
    p.set_defaults(func=cmd_abort)
    args = ap.parse_args()
    try:
        client = Client(args.socket)
        return args.func(client, args)
    except Unreachable as e:
        print("error: nanoecrd unreachable: %s" % e, file=sys.stderr)
        return EXIT_UNREACHABLE
    except Refused as e:
        err = e.error
        print("error %d: %s" % (err.get("code", 0), err.get("message", "")), file=sys.stderr)
        data = err.get("data")
        if isinstance(data, dict) and "key" in data:
            print("  key %s (%s), expected %s" % (data["key"], data.get("kind"), data.get("expected")), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
