"""
The C{rest} scenario: logins per second (at the production password-hash
cost) and history pages per second, from concurrent keep-alive clients.
"""

import http.client
import json
import multiprocessing
import threading
import time

from bench import population
from bench.worker import worker_main

_CLIENTS = 8


def _hammer(server, seconds, request):
    """
    Run C{request(connection)} from several threads for C{seconds}; count
    successes, failures and latencies.
    """
    latencies, failures = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while time.monotonic() < deadline:
            started = time.monotonic()
            ok = request(connection)
            with lock:
                if ok:
                    latencies.append(time.monotonic() - started)
                else:
                    failures[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "per_second": len(latencies) / seconds,
        "failures": failures[0],
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 3) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * len(latencies))], 3) if latencies else None,
    }


def _post_json(connection, path, body, headers=None):
    connection.request("POST", path, json.dumps(body),
                       {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    envelope = json.loads(response.read())
    return envelope.get("code") == 0


def _get_json(connection, path, token):
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    envelope = json.loads(response.read())
    return envelope.get("code") == 0 and isinstance(envelope.get("data"), list)


def _fill_conversation(server, sender, receiver, seconds=3):
    """
    Send messages from C{sender} to C{receiver} over the WebSocket for a
    few seconds, so that history pages have something to read.
    """
    plan = {"worker": 0, "address": ("127.0.0.1", server.port),
            "ws_path": "/socket.io", "mode": "window",
            "window": 20, "rate": 0, "seconds": seconds, "drain": 10,
            "connections": [
                {"uuid": sender.uuid, "token": sender.token, "role": "sender",
                 "to": receiver.uuid, "message_type": 1, "key": "fill"},
                {"uuid": receiver.uuid, "token": receiver.token, "role": "receiver"}]}
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=worker_main, args=(plan, child_end))
    process.start()
    parent_end.recv()
    parent_end.send("go")
    # The worker reports "warmed" and "measured" on the way to its stats.
    kind, stats = parent_end.recv()
    while kind not in ("stats", "error"):
        kind, stats = parent_end.recv()
    parent_end.send("stop")
    process.join(30)
    return stats["acked"] if kind == "stats" else 0


def measure_rest(server, args):
    accounts = population.create_accounts(server.url, "rest", 2)
    sender, receiver = accounts
    population.befriend(server.url, [(sender, receiver)])
    stored = _fill_conversation(server, sender, receiver)

    def login(connection):
        return _post_json(connection, "/user/login",
                          {"username": sender.username, "password": population.PASSWORD})

    history_path = (f"/message?Uuid={sender.uuid}&FriendUsername={receiver.username}"
                    "&MessageType=1")

    def history(connection):
        return _get_json(connection, history_path, sender.token)

    cpu_before = server.cpu_seconds()
    logins = _hammer(server, args.seconds, login)
    login_cpu = server.cpu_seconds() - cpu_before
    cpu_before = server.cpu_seconds()
    pages = _hammer(server, args.seconds, history)
    pages_cpu = server.cpu_seconds() - cpu_before
    return {
        "messages_in_conversation": stored,
        "logins_per_second": logins["per_second"],
        "login_p50_ms": logins["p50_ms"],
        "login_p99_ms": logins["p99_ms"],
        "login_failures": logins["failures"],
        "login_server_cpu_percent": 100 * login_cpu / args.seconds,
        "history_pages_per_second": pages["per_second"],
        "history_p50_ms": pages["p50_ms"],
        "history_p99_ms": pages["p99_ms"],
        "history_failures": pages["failures"],
        "history_server_cpu_percent": 100 * pages_cpu / args.seconds,
    }
