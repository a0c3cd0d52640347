"""
Tests for L{chatd.protocol.frames}.
"""

import base64

from twisted.trial.unittest import SynchronousTestCase

from chatd import errors
from chatd.protocol import frames
from chatd.protocol.message_pb2 import Message


class EncodeDecodeTests(SynchronousTestCase):
    def test_round_trip(self):
        frame = Message(content="hi", to="u-1", contentType=1, messageType=1,
                        clientMsgId="c-1", id=7, createAt=1234)
        self.assertEqual(frames.decode(frames.encode(frame)), frame)

    def test_go_chat_bytes(self):
        """
        A frame as go-chat encodes it (fields 1-11 only) decodes; chatd's
        additions are absent.
        """
        payload = b"\x1a\x01a\x22\x01b\x2a\x02hi\x30\x01\x40\x01"
        frame = frames.decode(payload)
        self.assertEqual((getattr(frame, "from"), frame.to, frame.content,
                          frame.contentType, frame.messageType),
                         ("a", "b", "hi", 1, 1))
        self.assertEqual(frame.id, 0)

    def test_undecodable(self):
        error = self.assertRaises(errors.BadRequest, frames.decode,
                                  b"\xff\xff\xff")
        self.assertEqual(frames.error_code(error), "bad_request")


class ErrorFrameTests(SynchronousTestCase):
    def test_class_codes(self):
        for cls, code in [(errors.Forbidden, "forbidden"),
                          (errors.NotFound, "not_found"),
                          (errors.PayloadTooLarge, "too_large"),
                          (errors.BadRequest, "bad_request"),
                          (errors.Unauthorized, "unauthorized")]:
            frame = frames.error_frame(cls("why"), "c-9")
            self.assertEqual((frame.type, frame.errorCode, frame.content,
                              frame.clientMsgId),
                             ("error", code, "why", "c-9"))

    def test_specific_code(self):
        error = frames.refuse(errors.Forbidden, "not your friend", "not_friend")
        self.assertIsInstance(error, errors.Forbidden)
        self.assertEqual(frames.error_frame(error).errorCode, "not_friend")


class DataUrlTests(SynchronousTestCase):
    def test_decode(self):
        encoded = base64.b64encode(b"\x89PNG data").decode()
        self.assertEqual(
            frames.decode_data_url(f"data:image/png;base64,{encoded}"),
            (b"\x89PNG data", "image/png"))

    def test_bad_base64(self):
        error = self.assertRaises(errors.BadRequest, frames.decode_data_url,
                                  "data:image/png;base64,@@@!")
        self.assertEqual(frames.error_code(error), "bad_base64")

    def test_not_a_data_url(self):
        error = self.assertRaises(errors.BadRequest, frames.decode_data_url,
                                  "hello")
        self.assertEqual(frames.error_code(error), "bad_base64")

    def test_content_type_for(self):
        self.assertEqual(
            [frames.content_type_for(t) for t in
             ["image/png", "audio/ogg", "video/mp4", "application/pdf"]],
            [frames.IMAGE, frames.AUDIO, frames.VIDEO, frames.FILE])


class FixedFramesTests(SynchronousTestCase):
    def test_welcome(self):
        frame = frames.welcome_frame("u-1")
        self.assertEqual((getattr(frame, "from"), frame.to, frame.content),
                         ("System", "u-1", "welcome!"))

    def test_pong(self):
        self.assertEqual((frames.pong_frame().type, frames.pong_frame().content),
                         ("heatbeat", "pong"))
