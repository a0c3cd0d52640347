"""
Creating the benchmark's users, friendships and groups through chatd's REST
API (the same routes go-chat-web uses), before anything is measured.
"""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

PASSWORD = "bench-password-1"


@dataclass
class Account:
    uuid: str
    username: str
    token: str


class ApiError(Exception):
    pass


def call(base_url, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            envelope = json.loads(response.read())
    except urllib.error.HTTPError as e:
        envelope = json.loads(e.read() or b"{}")
    if envelope.get("code") != 0:
        raise ApiError(f"{method} {path}: {envelope.get('msg')}")
    return envelope["data"]


def _account(base_url, username):
    call(base_url, "POST", "/user/register",
         {"username": username, "password": PASSWORD, "nickname": username})
    data = call(base_url, "POST", "/user/login",
                {"username": username, "password": PASSWORD})
    return Account(data["uuid"], data["username"], data["token"])


def create_accounts(base_url, prefix, count, threads=8):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: _account(base_url, f"{prefix}{i}"), range(count)))


def befriend(base_url, pairs, threads=8):
    """
    Make each C{(a, b)} pair of L{Account}s friends.
    """
    def one(pair):
        a, b = pair
        call(base_url, "POST", "/friend", {"uuid": a.uuid, "friendUsername": b.username},
             token=a.token)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, pairs))


def create_group(base_url, owner, members, name="bench", threads=8):
    """
    A group owned by C{owner} that every one of C{members} joins; returns
    its uuid.
    """
    call(base_url, "POST", f"/group/{owner.uuid}", {"name": name}, token=owner.token)
    groups = call(base_url, "GET", f"/group/{owner.uuid}", token=owner.token)
    group_uuid = next(g["uuid"] for g in groups if g["name"] == name)

    def join(member):
        call(base_url, "POST", f"/group/join/{member.uuid}/{group_uuid}",
             token=member.token)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(join, [m for m in members if m.uuid != owner.uuid]))
    return group_uuid


def fake_accounts(prefix, count):
    """
    Accounts for the baseline router, which has no users: the uuid is the
    name.
    """
    return [Account(f"{prefix}{i}", f"{prefix}{i}", "") for i in range(count)]
