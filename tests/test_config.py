"""
Tests for L{chatd.config}.
"""

import dataclasses
import os
import tomllib

from twisted.trial.unittest import SynchronousTestCase

from chatd.config import (
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    override,
    parse_database_url,
    sections,
)

SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "etc", "chatd.toml")


class LoadConfigTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertConfigError(self, text, *fragments):
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_config, path)
        for fragment in (path,) + fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_defaults(self):
        config = load_config(None)
        self.assertEqual(config.server.listen, ("tcp:8888",))
        self.assertEqual(config.server.data_dir, "chatd-data")
        self.assertEqual(config.database_url,
                         "sqlite:///" + os.path.join("chatd-data", "chatd.sqlite3"))

    def test_sample_lists_every_key_with_its_default(self):
        """
        etc/chatd.toml names every key of every section, each with its
        default value, and nothing else.
        """
        with open(SAMPLE, "rb") as f:
            sample = tomllib.load(f)
        defaults = Config()
        self.assertEqual(sorted(sample), sorted(name for name, _ in sections()))
        for name, cls in sections():
            keys = {f.name for f in dataclasses.fields(cls)}
            self.assertEqual(sorted(sample[name]), sorted(keys), name)
        self.assertEqual(load_config(SAMPLE), defaults)

    def test_values(self):
        path = self.write(
            '[server]\nlisten = ["tcp:1", "tcp:2"]\ndata_dir = "/srv/chat"\n'
            '[database]\nurl = "mysql://u:p@db:3307/chat"\npool_size = 9\n')
        config = load_config(path)
        self.assertEqual(config.server.listen, ("tcp:1", "tcp:2"))
        self.assertEqual(config.database_url, "mysql://u:p@db:3307/chat")
        self.assertEqual(config.database.pool_size, 9)

    def test_frozen(self):
        config = load_config(None)
        self.assertRaises(dataclasses.FrozenInstanceError,
                          setattr, config.server, "data_dir", "x")

    def test_unknown_section(self):
        self.assertConfigError("[serverr]\n", "[serverr]", "unknown section")

    def test_section_not_a_table(self):
        self.assertConfigError('server = "x"\n', "server", "must be a table")

    def test_unknown_key(self):
        self.assertConfigError("[server]\nlisten_on = []\n",
                               "server.listen_on", "unknown key")

    def test_wrong_type_string(self):
        self.assertConfigError("[server]\ndata_dir = 5\n",
                               "server.data_dir", "must be a string")

    def test_wrong_type_integer(self):
        self.assertConfigError('[database]\npool_size = "5"\n',
                               "database.pool_size", "must be an integer")

    def test_batch_size_at_most_one_statement(self):
        """
        A batch is at most what one MySQL statement of the writer takes.
        """
        self.assertConfigError("[websocket]\nbatch_size = 513\n",
                               "websocket.batch_size", "between 1 and 512")
        self.assertConfigError("[websocket]\nbatch_size = 0\n",
                               "websocket.batch_size", "between 1 and 512")

    def test_boolean_is_not_an_integer(self):
        self.assertConfigError("[database]\npool_size = true\n",
                               "database.pool_size", "must be an integer")

    def test_wrong_type_list(self):
        self.assertConfigError('[server]\nlisten = "tcp:1"\n',
                               "server.listen", "a list of strings")
        self.assertConfigError("[server]\nlisten = [1]\n",
                               "server.listen", "a list of strings")

    def test_bad_values(self):
        self.assertConfigError("[database]\npool_size = 0\n",
                               "database.pool_size", "greater than 0")
        self.assertConfigError("[database]\nretries = -1\n",
                               "database.retries", "negative")
        self.assertConfigError("[server]\nlisten = []\n",
                               "server.listen", "at least one")
        self.assertConfigError('[database]\nurl = "postgres://x/y"\n',
                               "database.url", "sqlite:/// or mysql://")
        self.assertConfigError('[server]\nallowed_origins = ["*"]\n',
                               "server.allowed_origins", "not an origin")
        self.assertConfigError(
            '[server]\nallowed_origins = ["https://a.example/path"]\n',
            "server.allowed_origins")

    def test_invalid_toml(self):
        self.assertConfigError("[server\n", "not valid TOML")

    def test_missing_file(self):
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))
        self.assertIn("cannot read", str(error))

    def test_secret_from_file(self):
        secret = self.write("s3cret" * 6 + "\n")
        path = self.write(f'[auth]\ntoken_secret_file = "{secret}"\n'
                          f'[database]\npassword_file = "{secret}"\n')
        config = load_config(path)
        self.assertEqual(config.auth.token_secret, "s3cret" * 6)
        self.assertEqual(config.database.password, "s3cret" * 6)

    def test_short_token_secret(self):
        self.assertConfigError('[auth]\ntoken_secret = "short"\n',
                               "auth.token_secret", "at least 32 bytes")

    def test_secret_file_missing(self):
        self.assertConfigError('[auth]\ntoken_secret_file = "/nonexistent/x"\n',
                               "auth.token_secret_file", "cannot read")

    def test_secret_inline_and_file(self):
        self.assertConfigError(
            '[auth]\ntoken_secret = "a"\ntoken_secret_file = "/x"\n',
            "auth.token_secret_file", "not both")

    def test_file_suffix_only_for_secrets(self):
        self.assertConfigError('[server]\ndata_dir_file = "/x"\n',
                               "server.data_dir_file", "unknown key")

    def test_config_from_dict_names_source(self):
        error = self.assertRaises(ConfigError, config_from_dict,
                                  {"auth": {"token_lifetime": 0}}, "here.toml")
        self.assertEqual(str(error), "here.toml: auth.token_lifetime: must be greater than 0")


class OverrideTests(SynchronousTestCase):
    def test_override_replaces_only_given_keys(self):
        base = config_from_dict({"database": {"pool_size": 7}})
        config = override(base, database_url="sqlite:///x.db",
                          server_listen=["tcp:1"])
        self.assertEqual(config.database.url, "sqlite:///x.db")
        self.assertEqual(config.database.pool_size, 7)
        self.assertEqual(config.server.listen, ("tcp:1",))

    def test_override_checked(self):
        error = self.assertRaises(ConfigError, override, Config(),
                                  database_url="oracle://x")
        self.assertIn("command line: database.url", str(error))


class DatabaseUrlTests(SynchronousTestCase):
    def test_sqlite_relative_and_absolute(self):
        self.assertEqual(parse_database_url("sqlite:///a/b.db"),
                         ("sqlite", {"path": "a/b.db"}))
        self.assertEqual(parse_database_url("sqlite:////var/x.db"),
                         ("sqlite", {"path": "/var/x.db"}))

    def test_mysql(self):
        kind, p = parse_database_url("mysql://chat:p%40ss@db.local:3307/chatd")
        self.assertEqual(kind, "mysql")
        self.assertEqual(p, {"host": "db.local", "port": 3307, "user": "chat",
                             "password": "p@ss", "database": "chatd"})

    def test_mysql_defaults(self):
        _, p = parse_database_url("mysql://127.0.0.1/chatd")
        self.assertEqual((p["user"], p["port"], p["password"]), ("root", 3306, ""))

    def test_bad_urls(self):
        for url in ["sqlite:///", "mysql://host", "mysql:///db", "pg://x/y",
                    "mysql://h:notaport/db", "sqlite:///:memory:",
                    "sqlite:///file:x?mode=memory"]:
            self.assertRaises(ConfigError, parse_database_url, url)

    def test_errors_hide_the_password(self):
        """
        A bad URL's error (printed, and logged to the journal) names it
        without its password.
        """
        for url in ("mysql://chatd:S3cret@db:notaport/chatd", "mysql://chatd:S3cret@db",
                    "pg://chatd:S3cret@db/chatd"):
            error = self.assertRaises(ConfigError, parse_database_url, url)
            self.assertNotIn("S3cret", str(error))
            self.assertIn("chatd:***@db", str(error))
