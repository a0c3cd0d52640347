"""
Accounts over REST: register, login, logout, profile and password changes,
user look-ups, tokens from the header or the cookie, rate limits, and the
envelope and statuses of failures.
"""

import json

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest

from chatd.auth.passwords import verify_password_sync
from tests.helpers import api_client, sign_up


def cookie_of(response):
    """
    The Set-Cookie header of a response, as a dict of attribute to value.
    """
    [header] = response.headers.getRawHeaders("set-cookie")
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attributes = {name: value}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val
    return attributes


class RegisterTests(unittest.TestCase):
    async def test_register(self):
        client, parts = await api_client(self)
        code, answer = await client.call("POST", "/user/register", json={
            "username": "alice", "password": "correct horse",
            "nickname": "Alice", "email": "alice@example.com"})
        self.assertEqual(code, 201)
        self.assertEqual(answer["code"], 0)
        self.assertEqual(answer["msg"], "SUCCESS")
        data = answer["data"]
        self.assertEqual(data["username"], "alice")
        self.assertEqual(data["nickname"], "Alice")
        self.assertEqual(data["email"], "alice@example.com")
        self.assertEqual(data["avatar"], "")
        self.assertTrue(data["createAt"].endswith("Z"))
        self.assertEqual(len(data["uuid"]), 36)
        self.assertNotIn("password", data)
        credentials = await parts.users.credentials("uuid", data["uuid"])
        self.assertTrue(credentials.password_hash.startswith("scrypt$"))
        self.assertNotIn("correct horse", credentials.password_hash)
        self.assertTrue(verify_password_sync("correct horse",
                                             credentials.password_hash))

    async def test_nickname_defaults_to_username(self):
        client, _ = await api_client(self)
        code, answer = await client.call("POST", "/user/register", json={
            "username": "bob", "password": "password1"})
        self.assertEqual(code, 201)
        self.assertEqual(answer["data"]["nickname"], "bob")

    async def test_form_body(self):
        client, _ = await api_client(self)
        code, answer = await client.call(
            "POST", "/user/register", data={"username": "carol",
                                            "password": "password1"})
        self.assertEqual((code, answer["data"]["username"]), (201, "carol"))

    async def test_name_taken(self):
        client, _ = await api_client(self)
        await sign_up(client, "alice")
        for name in ("alice", "ALICE"):
            code, answer = await client.call("POST", "/user/register", json={
                "username": name, "password": "password1"})
            self.assertEqual(code, 409)
            self.assertEqual(answer, {"code": -1, "data": None,
                                      "msg": f"the user name {name!r} is taken"})

    async def test_bad_input(self):
        client, _ = await api_client(self, auth_register_address_burst=100)
        cases = [
            ({"username": "al", "password": "password1"}, "username: must be 3"),
            ({"username": "a" * 33, "password": "password1"}, "username: must be 3"),
            ({"username": "al ice", "password": "password1"}, "username: only"),
            ({"username": "../x", "password": "password1"}, "username: only"),
            ({"username": "alice", "password": "short"},
             "password: must be at least 8"),
            ({"username": "alice"}, "password: required"),
            ({"password": "password1"}, "username: required"),
            ({"username": 12, "password": "password1"},
             "username: must be a string"),
            ({"username": "alice", "password": ["x"]},
             "password: must be a string"),
            ({"username": "alice", "password": "password1", "email": "nope"},
             "email: is not an e-mail address"),
            ({"username": "alice", "password": "password1", "nickname": 5},
             "nickname: must be a string"),
            ({"username": "alice", "password": "password1",
              "nickname": "n" * 65}, "nickname: must be at most 64"),
        ]
        for body, message in cases:
            code, answer = await client.call("POST", "/user/register", json=body)
            self.assertEqual(code, 400, body)
            self.assertEqual(answer["code"], -1)
            self.assertIsNone(answer["data"])
            self.assertTrue(answer["msg"].startswith(message), (body, answer))

    async def test_malformed_json(self):
        client, _ = await api_client(self)
        for raw, message in [(b'{"username": "alice",', "body: not valid JSON"),
                             (b'["alice"]', "body: must be a JSON object"),
                             (b"\xff\xfe", "body: not valid JSON"),
                             (b"[" * 60000, "body: not valid JSON"),
                             (b'{"a": ' * 10000, "body: not valid JSON")]:
            code, answer = await client.call(
                "POST", "/user/register", data=raw,
                headers={"Content-Type": "application/json"})
            self.assertEqual(code, 400)
            self.assertTrue(answer["msg"].startswith(message), answer)

    async def test_body_too_large(self):
        client, _ = await api_client(self)
        code, answer = await client.call(
            "POST", "/user/register", data=b'{"a": "' + b"x" * 70000 + b'"}',
            headers={"Content-Type": "application/json"})
        self.assertEqual((code, answer["code"]), (413, -1))

    async def test_rate_limited_per_address(self):
        client, _ = await api_client(self, auth_register_address_burst=2,
                                     auth_register_address_per_hour=1)
        for name in ("user1", "user2"):
            code, _ = await client.call("POST", "/user/register", json={
                "username": name, "password": "password1"})
            self.assertEqual(code, 201)
        response, body = await client.request(
            "POST", "/user/register",
            json={"username": "user3", "password": "password1"})
        self.assertEqual(response.code, 429)
        retry = int(response.headers.getRawHeaders("retry-after")[0])
        self.assertTrue(0 < retry <= 3600, retry)
        self.assertIn(b"too many registrations", body)


class LoginTests(unittest.TestCase):
    async def test_login_sets_cookie_and_returns_token(self):
        client, parts = await api_client(self)
        await client.call("POST", "/user/register", json={
            "username": "alice", "password": "password1"})
        response, body = await client.request("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(response.code, 200)
        cookie = cookie_of(response)
        self.assertIn("httponly", cookie)
        self.assertEqual(cookie["samesite"], "Lax")
        self.assertEqual(cookie["path"], "/")
        self.assertNotIn("secure", cookie)
        self.assertEqual(int(cookie["max-age"]), 7 * 24 * 3600)
        token = cookie["chatd_token"]
        identity = await parts.tokens.verify(token)
        self.assertEqual(identity.username, "alice")
        self.assertIn(token.encode(), body)

    async def test_login_answer(self):
        client, _ = await api_client(self)
        user, token = await sign_up(client, "alice", email="a@example.com")
        self.assertEqual(user["username"], "alice")
        self.assertEqual(user["email"], "a@example.com")
        self.assertIn("expiresAt", user)
        self.assertNotIn("password", user)
        code, answer = await client.call("GET", "/user/" + user["uuid"],
                                         token=token)
        self.assertEqual((code, answer["data"]["username"]), (200, "alice"))

    async def test_cookie_authenticates(self):
        client, _ = await api_client(self)
        user, token = await sign_up(client, "alice")
        code, answer = await client.call(
            "GET", "/user/" + user["uuid"],
            headers={"Cookie": f"other=1; chatd_token={token}"})
        self.assertEqual(code, 200)
        self.assertEqual(answer["data"]["uuid"], user["uuid"])

    async def test_cookie_name_configurable(self):
        client, _ = await api_client(self, auth_cookie_name="sid")
        await client.call("POST", "/user/register", json={
            "username": "alice", "password": "password1"})
        response, _ = await client.request("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        token = cookie_of(response)["sid"]
        code, _ = await client.call("GET", "/user?uuid=x",
                                    headers={"Cookie": f"sid={token}"})
        self.assertEqual(code, 404)

    async def test_wrong_password_and_unknown_user_look_alike(self):
        client, _ = await api_client(self)
        await sign_up(client, "alice")
        wrong = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "password2"})
        unknown = await client.call("POST", "/user/login", json={
            "username": "nobody", "password": "password2"})
        self.assertEqual(wrong, unknown)
        self.assertEqual(wrong, (401, {"code": -1, "data": None,
                                       "msg": "wrong user name or password"}))

    async def test_login_bad_input(self):
        client, _ = await api_client(self)
        for body, message in [({"username": "alice"}, "password: required"),
                              ({"password": "x"}, "username: required"),
                              ({"username": 1, "password": "x"},
                               "username: must be a string")]:
            code, answer = await client.call("POST", "/user/login", json=body)
            self.assertEqual((code, answer["msg"]), (400, message))

    async def test_rate_limited_per_account(self):
        client, _ = await api_client(self, auth_login_account_burst=2,
                                     auth_login_account_per_hour=1)
        await sign_up(client, "alice")
        await sign_up(client, "bob")
        for _ in range(2):
            code, _ = await client.call("POST", "/user/login", json={
                "username": "alice", "password": "wrong-pass"})
            self.assertEqual(code, 401)
        response, body = await client.request("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(response.code, 429)
        self.assertTrue(response.headers.getRawHeaders("retry-after"))
        # The same limit for an unknown account: no hint that it is unknown.
        for _ in range(2):
            await client.call("POST", "/user/login", json={
                "username": "ghost", "password": "wrong-pass"})
        code, _ = await client.call("POST", "/user/login", json={
            "username": "ghost", "password": "wrong-pass"})
        self.assertEqual(code, 429)
        # Other accounts are not affected.
        code, _ = await client.call("POST", "/user/login", json={
            "username": "bob", "password": "password1"})
        self.assertEqual(code, 200)

    async def test_rate_limited_per_account_however_spelled(self):
        """
        Every spelling the database finds the account under (case; on
        MySQL also accents and ignorable characters) shares its limit.
        """
        client, parts = await api_client(self, auth_login_account_burst=2,
                                          auth_login_account_per_hour=1)
        await sign_up(client, "alice")
        spellings = [name for name in ("ALICE", "Alice", "álice", "alicé", "al\u200bice")
                     if await parts.users.credentials("username", name) is not None]
        self.assertIn("ALICE", spellings)
        for _ in range(2):
            code, _ = await client.call("POST", "/user/login", json={
                "username": "alice", "password": "wrong-pass"})
            self.assertEqual(code, 401)
        for name in spellings:
            code, _ = await client.call("POST", "/user/login", json={
                "username": name, "password": "another-guess"})
            self.assertEqual(code, 429, name)

    async def test_locked_account_costs_no_address_quota(self):
        """
        Tries refused because the account is locked do not use up the
        address's quota: others behind that address can still sign in.
        """
        # StubTreq's requests come from 127.0.0.1, a trusted proxy here.
        client, _ = await api_client(self, server_trusted_proxies=["127.0.0.1"],
                                     auth_login_account_burst=2,
                                     auth_login_account_per_hour=1,
                                     auth_login_address_burst=3,
                                     auth_login_address_per_hour=1)
        await sign_up(client, "alice")
        await sign_up(client, "bob")
        attacker, office = ({"X-Forwarded-For": "192.0.2.1"},
                            {"X-Forwarded-For": "198.51.100.7"})
        for _ in range(2):
            code, _ = await client.call("POST", "/user/login", headers=attacker, json={
                "username": "alice", "password": "wrong-pass"})
            self.assertEqual(code, 401)
        for _ in range(3):
            code, _ = await client.call("POST", "/user/login", headers=office, json={
                "username": "alice", "password": "password1"})
            self.assertEqual(code, 429)
        code, _ = await client.call("POST", "/user/login", headers=office, json={
            "username": "bob", "password": "password1"})
        self.assertEqual(code, 200)

    async def test_concurrent_guesses_limited(self):
        client, _ = await api_client(self, auth_login_account_burst=3,
                                     auth_login_account_per_hour=1)
        await sign_up(client, "alice")
        answers = await gatherResults([
            Deferred.fromCoroutine(client.call("POST", "/user/login", json={
                "username": "alice", "password": f"guess-{n:04d}"}))
            for n in range(12)])
        codes = sorted(code for code, _ in answers)
        self.assertEqual(codes, [401] * 3 + [429] * 9)

    async def test_success_does_not_count(self):
        client, _ = await api_client(self, auth_login_account_burst=2,
                                     auth_login_address_burst=2)
        await sign_up(client, "alice")
        for _ in range(5):
            code, _ = await client.call("POST", "/user/login", json={
                "username": "alice", "password": "password1"})
            self.assertEqual(code, 200)

    async def test_rate_limited_per_address(self):
        client, _ = await api_client(self, auth_login_address_burst=3,
                                     auth_login_address_per_hour=1)
        await sign_up(client, "alice")
        for name in ("x1", "x2", "x3"):
            code, _ = await client.call("POST", "/user/login", json={
                "username": name, "password": "wrong-pass"})
            self.assertEqual(code, 401)
        code, answer = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(code, 429)
        self.assertIn("too many failed logins from this address", answer["msg"])

    async def test_versioned_prefix(self):
        client, _ = await api_client(self)
        code, _ = await client.call("POST", "/api/v1/user/register", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(code, 201)
        code, answer = await client.call("POST", "/api/v1/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(code, 200)
        code, _ = await client.call(
            "GET", "/api/v1/user/" + answer["data"]["uuid"],
            token=answer["data"]["token"])
        self.assertEqual(code, 200)


class TokenTests(unittest.TestCase):
    async def test_no_token(self):
        client, _ = await api_client(self)
        user, _ = await sign_up(client, "alice")
        for method, path in [("GET", "/user/" + user["uuid"]),
                             ("GET", "/user?uuid=" + user["uuid"]),
                             ("PUT", "/user"), ("GET", "/user/name?name=a"),
                             ("POST", "/friend"), ("DELETE", "/friend"),
                             ("GET", "/message?MessageType=1"),
                             ("POST", "/file"), ("POST", "/user/logout"),
                             ("GET", "/group/" + user["uuid"]),
                             ("POST", "/group/" + user["uuid"]),
                             ("POST", "/group/join/a/b"),
                             ("GET", "/group/user/x")]:
            response, body = await client.request(method, path)
            self.assertEqual(response.code, 401, path)
            self.assertEqual(body, b'{"code":-1,"msg":"sign in first","data":null}')
            self.assertTrue(response.headers.getRawHeaders("www-authenticate"))

    async def test_bad_token(self):
        client, _ = await api_client(self)
        user, token = await sign_up(client, "alice")
        for bad in ("nonsense", token[:-2] + "xx", token + "x"):
            code, answer = await client.call("GET", "/user/" + user["uuid"],
                                             token=bad)
            self.assertEqual((code, answer["code"]), (401, -1))

    async def test_logout_revokes_and_clears_cookie(self):
        client, _ = await api_client(self)
        user, token = await sign_up(client, "alice")
        code, other = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        response, _ = await client.request("POST", "/user/logout", token=token)
        self.assertEqual(response.code, 200)
        self.assertEqual(cookie_of(response)["max-age"], "0")
        code, answer = await client.call("GET", "/user/" + user["uuid"],
                                         token=token)
        self.assertEqual(code, 401)
        self.assertIn("revoked", answer["msg"])
        code, _ = await client.call("GET", "/user/" + user["uuid"],
                                    token=other["data"]["token"])
        self.assertEqual(code, 200)

    async def test_cross_origin_sign_in_refused(self):
        """
        A foreign page cannot sign a browser in (nor up): no cookie is set.
        The server's own origin, an allowed one and clients that send no
        Origin may.
        """
        client, _ = await api_client(
            self, server_allowed_origins=["https://app.example.com"])
        await sign_up(client, "alice")
        credentials = {"username": "alice", "password": "password1"}
        for path, body in (("/user/login", credentials),
                           ("/user/register", {"username": "mallory",
                                               "password": "password1"})):
            response, answer = await client.request(
                "POST", path, json=body, headers={"Origin": "https://evil.example"})
            self.assertEqual(response.code, 403, answer)
            self.assertIsNone(response.headers.getRawHeaders("set-cookie"))
        for origin in ("http://chatd.test", "https://app.example.com", None):
            code, _ = await client.call("POST", "/user/login", json=credentials,
                                        headers={"Origin": origin} if origin else None)
            self.assertEqual(code, 200, origin)

    async def test_cross_origin_cookie_write_refused(self):
        client, _ = await api_client(
            self, server_allowed_origins=["https://app.example.com"])
        _, token = await sign_up(client, "alice")
        cookie = f"chatd_token={token}"
        code, answer = await client.call(
            "POST", "/user/logout",
            headers={"Cookie": cookie, "Origin": "https://evil.example"})
        self.assertEqual((code, answer["msg"]), (403, "cross-origin request refused"))
        code, _ = await client.call(
            "POST", "/user/logout",
            headers={"Cookie": cookie, "Origin": "http://chatd.test"})
        self.assertEqual(code, 200)
        _, token = await sign_up(client, "bob")
        code, _ = await client.call(
            "POST", "/user/logout",
            headers={"Cookie": f"chatd_token={token}",
                     "Origin": "https://app.example.com"})
        self.assertEqual(code, 200)


class UserTests(unittest.TestCase):
    async def test_get_user(self):
        client, _ = await api_client(self)
        alice, token = await sign_up(client, "alice", email="a@example.com")
        bob, _ = await sign_up(client, "bob", email="b@example.com")
        code, answer = await client.call("GET", "/user/" + bob["uuid"],
                                         token=token)
        self.assertEqual(code, 200)
        self.assertEqual(set(answer["data"]),
                         {"uuid", "username", "nickname", "avatar", "createAt"})
        self.assertEqual(answer["data"]["username"], "bob")
        code, answer = await client.call("GET", "/user/" + alice["uuid"],
                                         token=token)
        self.assertEqual(answer["data"]["email"], "a@example.com")

    async def test_unknown_user(self):
        client, _ = await api_client(self)
        _, token = await sign_up(client, "alice")
        code, answer = await client.call(
            "GET", "/user/00000000-0000-0000-0000-000000000000", token=token)
        self.assertEqual((code, answer["msg"]), (404, "no such user"))

    async def test_find_by_name(self):
        client, _ = await api_client(self)
        alice, token = await sign_up(client, "alice")
        await sign_up(client, "bob", nickname="Bobby", email="b@example.com")
        code, answer = await client.call("GET", "/user/name?name=bob",
                                         token=token)
        self.assertEqual(code, 200)
        self.assertEqual(answer["data"]["user"]["nickname"], "Bobby")
        self.assertNotIn("email", answer["data"]["user"])
        self.assertEqual(answer["data"]["group"], {"uuid": "", "name": ""})
        code, created = await client.call(
            "POST", "/group/" + alice["uuid"], json={"name": "walkers"},
            token=token)
        code, answer = await client.call("GET", "/user/name?name=walkers",
                                         token=token)
        self.assertEqual(answer["data"]["user"]["username"], "")
        self.assertEqual(answer["data"]["group"],
                         {"uuid": created["data"]["uuid"], "name": "walkers"})
        code, answer = await client.call("GET", "/user/name", token=token)
        self.assertEqual((code, answer["msg"]), (400, "name: required"))

    async def test_update_profile(self):
        client, _ = await api_client(self)
        alice, token = await sign_up(client, "alice")
        code, answer = await client.call("PUT", "/user", token=token, json={
            "username": "alice", "nickname": "Al", "email": "al@example.com"})
        self.assertEqual(code, 200)
        self.assertEqual(answer["data"]["nickname"], "Al")
        code, answer = await client.call("GET", "/user/" + alice["uuid"],
                                         token=token)
        self.assertEqual(answer["data"]["email"], "al@example.com")

    async def test_own_name_in_any_case(self):
        client, _ = await api_client(self)
        _, token = await sign_up(client, "alice")
        code, answer = await client.call("PUT", "/user", token=token, json={
            "username": "ALICE ", "nickname": "Al"})
        self.assertEqual((code, answer["data"]["nickname"]), (200, "Al"))
        code, answer = await client.call("POST", "/user/login", json={
            "username": " Alice", "password": "password1"})
        self.assertEqual(code, 200)

    async def test_path_not_utf8(self):
        client, _ = await api_client(self)
        code, answer = await client.call("GET", "/user/%ff%fe")
        self.assertEqual((code, answer["msg"]), (400, "the path is not valid UTF-8"))

    async def test_update_someone_else_refused(self):
        client, parts = await api_client(self)
        _, token = await sign_up(client, "alice")
        bob, _ = await sign_up(client, "bob")
        code, answer = await client.call("PUT", "/user", token=token, json={
            "username": "bob", "nickname": "pwned", "password": "password9"})
        self.assertEqual((code, answer["msg"]),
                         (403, "you may only change your own account"))
        self.assertEqual((await parts.users.get_by_uuid(bob["uuid"])).nickname,
                         "bob")
        code, _ = await client.call("PUT", "/user", token=token, json={
            "username": "nobody", "nickname": "x"})
        self.assertEqual(code, 404)

    async def test_update_bad_input(self):
        client, _ = await api_client(self)
        _, token = await sign_up(client, "alice")
        for body, status, message in [
                ({"email": "bad"}, 400, "email: is not an e-mail address"),
                ({"nickname": 3}, 400, "nickname: must be a string"),
                ({"password": "newpassword"}, 400,
                 "oldPassword: required to change the password"),
                ({"password": "short", "oldPassword": "password1"}, 400,
                 "password: must be at least 8 characters"),
                ({"password": "newpassword", "oldPassword": "wrong-one"}, 403,
                 "oldPassword: wrong password")]:
            code, answer = await client.call("PUT", "/user", token=token,
                                             json=body)
            self.assertEqual((code, answer["msg"]), (status, message), body)
        code, answer = await client.call(
            "PUT", "/user", token=token, data=b"{", headers={
                "Content-Type": "application/json"})
        self.assertEqual(code, 400)

    async def test_password_change_revokes_every_earlier_token(self):
        client, _ = await api_client(self)
        alice, token = await sign_up(client, "alice")
        code, second = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        response, body = await client.request(
            "PUT", "/user", token=token,
            json={"password": "new password", "oldPassword": "password1"})
        self.assertEqual(response.code, 200)
        new_token = json.loads(body)["data"]["token"]
        self.assertEqual(cookie_of(response)["chatd_token"], new_token)
        for old in (token, second["data"]["token"]):
            code, _ = await client.call("GET", "/user/" + alice["uuid"],
                                        token=old)
            self.assertEqual(code, 401)
        code, _ = await client.call("GET", "/user/" + alice["uuid"],
                                    token=new_token)
        self.assertEqual(code, 200)
        code, _ = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(code, 401)
        code, _ = await client.call("POST", "/user/login", json={
            "username": "alice", "password": "new password"})
        self.assertEqual(code, 200)


class HttpBehaviourTests(unittest.TestCase):
    async def test_unknown_route(self):
        client, _ = await api_client(self)
        for path in ("/nothing", "/api/v1/nothing", "/api/v2/user/login", "/api"):
            code, answer = await client.call("GET", path)
            self.assertEqual((code, answer["code"], answer["data"]),
                             (404, -1, None), path)

    async def test_method_not_allowed(self):
        client, _ = await api_client(self)
        response, body = await client.request("DELETE", "/user/login")
        self.assertEqual(response.code, 405)
        self.assertIn("POST", response.headers.getRawHeaders("allow")[0])
        self.assertEqual(body, b'{"code":-1,"msg":"method not allowed","data":null}')

    async def test_internal_error_has_no_traceback(self):
        client, parts = await api_client(self)
        alice, token = await sign_up(client, "alice")

        async def broken(uuid):
            raise ZeroDivisionError("secret detail")

        parts.accounts.get = broken
        response, body = await client.request("GET", "/user/" + alice["uuid"],
                                              token=token)
        self.assertEqual(response.code, 500)
        self.assertEqual(body, b'{"code":-1,"msg":"internal error","data":null}')
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_malformed_json_on_every_json_route(self):
        client, _ = await api_client(self)
        alice, token = await sign_up(client, "alice")
        group_uuid = "00000000-0000-0000-0000-000000000000"
        for method, path in [("POST", "/user/register"), ("POST", "/user/login"),
                             ("PUT", "/user"), ("POST", "/friend"),
                             ("DELETE", "/friend"),
                             ("POST", "/group/" + alice["uuid"]),
                             ("PUT", "/group/" + group_uuid)]:
            for raw, message in [(b"{oops", "body: not valid JSON"),
                                 (b"42", "body: must be a JSON object")]:
                code, answer = await client.call(
                    method, path, token=token, data=raw,
                    headers={"Content-Type": "application/json"})
                self.assertEqual(code, 400, (method, path))
                self.assertTrue(answer["msg"].startswith(message),
                                (method, path, answer))

    async def test_json_headers(self):
        client, _ = await api_client(self)
        response, _ = await client.request("POST", "/user/login", json={})
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/json; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders("x-content-type-options"),
                         ["nosniff"])
