"""
The generated protobuf module is what C{proto/generate.sh} makes from
C{proto/message.proto}: a stale module fails here.
"""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GeneratedCodeTests(TestCase):
    def test_message_pb2_is_current(self):
        """
        Regenerating into a temporary directory gives the committed module,
        byte for byte. If this fails, run C{sh proto/generate.sh}.
        """
        out = os.path.abspath(self.mktemp())
        env = dict(os.environ, PYTHON=sys.executable)
        subprocess.run(
            ["sh", os.path.join(ROOT, "proto", "generate.sh"), out],
            check=True, env=env)
        with open(os.path.join(out, "message_pb2.py"), "rb") as f:
            fresh = f.read()
        with open(os.path.join(ROOT, "chatd", "protocol", "message_pb2.py"),
                  "rb") as f:
            committed = f.read()
        self.assertEqual(
            fresh, committed,
            "chatd/protocol/message_pb2.py is stale: run sh proto/generate.sh")

    def test_go_chat_fields_unchanged(self):
        """
        go-chat's fields keep their numbers and types.
        """
        from google.protobuf.descriptor import FieldDescriptor as F

        from chatd.protocol.message_pb2 import Message

        expected = {
            "avatar": (1, F.TYPE_STRING), "fromUsername": (2, F.TYPE_STRING),
            "from": (3, F.TYPE_STRING), "to": (4, F.TYPE_STRING),
            "content": (5, F.TYPE_STRING), "contentType": (6, F.TYPE_INT32),
            "type": (7, F.TYPE_STRING), "messageType": (8, F.TYPE_INT32),
            "url": (9, F.TYPE_STRING), "fileSuffix": (10, F.TYPE_STRING),
            "file": (11, F.TYPE_BYTES),
        }
        fields = Message.DESCRIPTOR.fields_by_name
        for name, (number, kind) in expected.items():
            self.assertEqual((fields[name].number, fields[name].type),
                             (number, kind), name)
        self.assertEqual(Message.DESCRIPTOR.full_name, "protocol.Message")
        for field in Message.DESCRIPTOR.fields:
            if field.name not in expected:
                self.assertGreaterEqual(field.number, 12, field.name)
