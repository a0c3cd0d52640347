"""
Calls end to end: real Autobahn clients over loopback against the whole
daemon, on the test database (SQLite, or MariaDB with CHATD_TEST_MYSQL).
The call manager runs on a test clock, so ring timeouts and grace periods
are driven by the test.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from chatd import calls
from tests.helpers import (
    base_url,
    connect_user,
    http_client,
    make_friends,
    start_chat,
)

OFFER = json.dumps({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0"})
ANSWER = json.dumps({"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 0.0.0.0"})
ICE_A = json.dumps({"type": "offer_ice",
                    "iceCandidate": {"candidate": "candidate:1 1 udp 1 a"}})
ICE_B = json.dumps({"type": "answer_ice",
                    "iceCandidate": {"candidate": "candidate:2 1 udp 1 b"}})


def sleep(seconds):
    d = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def content(frame):
    return json.loads(frame.content)


class CallsTestCase(TestCase):
    timeout = 120

    async def start(self, **changes):
        await start_chat(self, **changes)
        self.manager = self.service.realtime.calls
        self.clock = self.manager.clock = Clock()
        await make_friends(self.database, self.carol, self.bob)

    def connect(self, user):
        return connect_user(self, self.service, user)

    async def barrier(self, *clients):
        """
        Everything each client sent before has been handled, and everything
        sent to it before has arrived (frames of one connection are handled
        and delivered in order); return the call frames, messages and
        errors that arrived meanwhile (not presence and the like).
        """
        arrived = []
        for client in clients:
            client.send(type="heatbeat", content="ping")
            while True:
                frame = await client.next()
                if frame.type == "heatbeat":
                    break
                if frame.type in ("webrtc", "", "error"):
                    arrived.append(frame)
        return arrived

    async def assert_quiet(self, *clients):
        self.assertEqual(await self.barrier(*clients), [])

    async def next_call_frame(self, client):
        return await client.next_of("webrtc")

    async def dial(self, caller, callee_user, content_type=calls.DIAL_VOICE):
        caller.send(type="webrtc", to=callee_user.uuid,
                    contentType=content_type, messageType=1)

    async def call(self, caller, callee, callee_user):
        """
        caller dials, callee's device rings and accepts.
        """
        await self.dial(caller, callee_user)
        ring = await self.next_call_frame(callee)
        self.assertEqual(ring.contentType, calls.DIAL_VOICE)
        callee.send(type="webrtc", to=getattr(ring, "from"),
                    contentType=calls.ACCEPT_VOICE, messageType=1)
        accepted = await self.next_call_frame(caller)
        self.assertEqual(accepted.contentType, calls.ACCEPT_VOICE)
        return content(ring)["callId"]

    async def log_entry(self, client):
        """
        The next call log message a client gets.
        """
        while True:
            frame = await client.next_of("")
            if frame.contentType == calls.CALL_LOG:
                return frame

    async def stored_log(self, user):
        messages = await self.service.parts.messages.since(user.id, [], 0, 100)
        return [json.loads(m.content) for m in messages
                if m.content_type == calls.CALL_LOG]

    async def rest_history(self, user, friend_name):
        token, _ = await self.service.parts.tokens.issue(user)
        response = await http_client().get(
            base_url(self.service) + "/message",
            params={"Uuid": user.uuid, "FriendUsername": friend_name,
                    "MessageType": "1"},
            headers={"Authorization": f"Bearer {token}"})
        answer = json.loads(await response.content())
        self.assertEqual((response.code, answer["code"]), (200, 0))
        return answer["data"]

    async def error(self, client):
        return (await client.next_of("error")).errorCode


class FullCallTests(CallsTestCase):
    async def test_full_call_and_its_log(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        ring = await self.next_call_frame(bob)
        self.assertEqual(
            (ring.contentType, getattr(ring, "from"), ring.fromUsername,
             ring.avatar, ring.to),
            (calls.DIAL_VOICE, self.alice.uuid, "alice", "a.png",
             self.bob.uuid))
        call_id = content(ring)["callId"]
        self.assertEqual(content(ring)["kind"], "voice")
        bob.send(type="webrtc", to=self.alice.uuid,
                 contentType=calls.ACCEPT_VOICE, messageType=1)
        accepted = await self.next_call_frame(alice)
        self.assertEqual((accepted.contentType, getattr(accepted, "from")),
                         (calls.ACCEPT_VOICE, self.bob.uuid))
        # Offer and answer, then ICE both ways (go-chat-web sends ICE with
        # no contentType).
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.VOICE_SIGNAL, content=OFFER, messageType=1)
        offer = await self.next_call_frame(bob)
        self.assertEqual((offer.contentType, offer.content,
                          getattr(offer, "from")),
                         (calls.VOICE_SIGNAL, OFFER, self.alice.uuid))
        bob.send(type="webrtc", to=self.alice.uuid,
                 contentType=calls.VOICE_SIGNAL, content=ANSWER, messageType=1)
        self.assertEqual((await self.next_call_frame(alice)).content, ANSWER)
        alice.send(type="webrtc", to=self.bob.uuid, content=ICE_A)
        self.assertEqual((await self.next_call_frame(bob)).content, ICE_A)
        bob.send(type="webrtc", to=self.alice.uuid, content=ICE_B)
        self.assertEqual((await self.next_call_frame(alice)).content, ICE_B)
        self.clock.advance(42)
        alice.send(type="webrtc", to=self.bob.uuid, contentType=calls.HANG_UP)
        ended = await self.next_call_frame(bob)
        self.assertEqual((ended.contentType, content(ended)),
                         (calls.HANG_UP, {"callId": call_id,
                                          "reason": "hangup"}))
        # The log entry reaches both, and stays in the history.
        for client in (alice, bob):
            entry = await self.log_entry(client)
            self.assertEqual((getattr(entry, "from"), entry.to, entry.type),
                             (self.alice.uuid, self.bob.uuid, ""))
            self.assertGreater(entry.id, 0)
            log = content(entry)
            self.assertEqual(
                (log["callId"], log["kind"], log["caller"], log["callee"],
                 log["outcome"], log["reason"], log["duration"]),
                (call_id, "voice", self.alice.uuid, self.bob.uuid,
                 "completed", "hangup", 42))
        (stored,) = await self.stored_log(self.bob)
        self.assertEqual((stored["callId"], stored["outcome"]),
                         (call_id, "completed"))
        self.assertEqual(self.manager.calls(), [])
        # REST history, as go-chat-web asks for it.
        (item,) = await self.rest_history(self.bob, "alice")
        self.assertEqual((item["contentType"], item["fromUsername"],
                          item["toUsername"], json.loads(item["content"])),
                         (calls.CALL_LOG, "alice", "bob", log))

    async def test_log_in_sync(self):
        """
        A missed call's entry is replayed by sync to a device that was not
        connected.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob, calls.DIAL_VIDEO)
        await self.next_call_frame(bob)
        self.clock.advance(45)
        await self.log_entry(alice)
        late = await self.connect(self.bob)
        late.send(type="sync", sinceId=0)
        replayed = []
        while True:
            frame = await late.next()
            if frame.type == "sync":
                break
            replayed.append(frame)
        (entry,) = [f for f in replayed if f.contentType == calls.CALL_LOG]
        self.assertEqual((content(entry)["outcome"], content(entry)["kind"]),
                         ("missed", "video"))


class AnswerTests(CallsTestCase):
    async def test_reject(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        await self.next_call_frame(bob)
        bob.send(type="webrtc", to=self.alice.uuid,
                 contentType=calls.REJECT_VOICE, messageType=1)
        rejected = await self.next_call_frame(alice)
        self.assertEqual((rejected.contentType, content(rejected)["reason"]),
                         (calls.REJECT_VOICE, "rejected"))
        self.assertEqual(content(await self.log_entry(bob))["outcome"],
                         "rejected")

    async def test_cancel(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        await self.next_call_frame(bob)
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.CANCEL_VOICE, messageType=1)
        stopped = await self.next_call_frame(bob)
        self.assertEqual((stopped.contentType, content(stopped)["reason"]),
                         (calls.CANCEL_VOICE, "cancelled"))
        self.assertEqual(content(await self.log_entry(alice))["outcome"],
                         "cancelled")

    async def test_timeout(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        await self.next_call_frame(bob)
        self.clock.advance(44)
        await self.assert_quiet(alice, bob)
        self.clock.advance(1)
        for client, code in ((alice, calls.REJECT_VOICE),
                             (bob, calls.CANCEL_VOICE)):
            frame = await self.next_call_frame(client)
            self.assertEqual((frame.contentType, content(frame)["reason"]),
                             (code, "timeout"))
        entry = content(await self.log_entry(bob))
        self.assertEqual((entry["outcome"], entry["answeredAt"],
                          entry["duration"]), ("missed", None, 0))

    async def test_busy(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        carol = await self.connect(self.carol)
        await self.call(alice, bob, self.bob)
        await self.dial(carol, self.bob)
        busy = await self.next_call_frame(carol)
        self.assertEqual((busy.contentType, content(busy)["reason"],
                          getattr(busy, "from")),
                         (calls.REJECT_VOICE, "busy", self.bob.uuid))
        # bob hears nothing but the log entry; his call goes on.
        entry = await self.log_entry(bob)
        self.assertEqual(content(entry)["outcome"], "busy")
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.VOICE_SIGNAL, content=OFFER)
        self.assertEqual((await self.next_call_frame(bob)).content, OFFER)

    async def test_first_device_to_accept_wins(self):
        await self.start()
        alice = await self.connect(self.alice)
        phone = await self.connect(self.bob)
        laptop = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        for device in (phone, laptop):
            self.assertEqual((await self.next_call_frame(device)).contentType,
                             calls.DIAL_VOICE)
        laptop.send(type="webrtc", to=self.alice.uuid,
                    contentType=calls.ACCEPT_VOICE)
        self.assertEqual((await self.next_call_frame(alice)).contentType,
                         calls.ACCEPT_VOICE)
        stop = await self.next_call_frame(phone)
        self.assertEqual((stop.contentType, content(stop)["reason"]),
                         (calls.CANCEL_VOICE, "answered_elsewhere"))
        phone.send(type="webrtc", to=self.alice.uuid,
                   contentType=calls.ACCEPT_VOICE)
        self.assertEqual(await self.error(phone), "answered_elsewhere")
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.VOICE_SIGNAL, content=OFFER)
        self.assertEqual((await self.next_call_frame(laptop)).content, OFFER)
        await self.assert_quiet(phone)


    async def test_device_connecting_while_it_rings(self):
        await self.start()
        alice = await self.connect(self.alice)
        phone = await self.connect(self.bob)
        await self.dial(alice, self.bob, calls.DIAL_VIDEO)
        await self.next_call_frame(phone)
        laptop = await self.connect(self.bob)
        self.clock.advance(0)
        ring = await self.next_call_frame(laptop)
        self.assertEqual((ring.contentType, getattr(ring, "from")),
                         (calls.DIAL_VIDEO, self.alice.uuid))
        laptop.send(type="webrtc", contentType=calls.ACCEPT_VIDEO)
        self.assertEqual((await self.next_call_frame(alice)).contentType,
                         calls.ACCEPT_VIDEO)
        self.assertEqual(content(await self.next_call_frame(phone))["reason"],
                         "answered_elsewhere")


class RefusalTests(CallsTestCase):
    async def test_third_party_cannot_inject(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        carol = await self.connect(self.carol)
        await self.call(alice, bob, self.bob)
        for fields in ({"contentType": calls.VOICE_SIGNAL, "content": OFFER},
                       {"content": ICE_A},
                       {"contentType": calls.SCREEN_FRAME, "file": b"x"}):
            carol.send(type="webrtc", to=self.bob.uuid, messageType=1,
                       **fields)
            self.assertEqual(await self.error(carol), "not_in_call")
        carol.send(type="webrtc", to=self.bob.uuid, from_=self.alice.uuid,
                   contentType=calls.VOICE_SIGNAL, content=OFFER)
        self.assertEqual(await self.error(carol), "spoofed_from")
        await self.assert_quiet(bob, alice)

    async def test_non_friend(self):
        await self.start()
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        await self.dial(carol, self.alice)
        self.assertEqual(await self.error(carol), "not_friend")
        await self.assert_quiet(alice)

    async def test_strangers_may_call_when_configured(self):
        await self.start(calls_friends_only=False)
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        await self.dial(carol, self.alice)
        self.assertEqual((await self.next_call_frame(alice)).contentType,
                         calls.DIAL_VOICE)

    async def test_yourself(self):
        await self.start()
        alice = await self.connect(self.alice)
        await self.dial(alice, self.alice)
        self.assertEqual(await self.error(alice), "call_self")

    async def test_dial_rate(self):
        await self.start(calls_dial_burst=1)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.dial(alice, self.bob)
        await self.next_call_frame(bob)
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.CANCEL_VOICE)
        await self.next_call_frame(bob)
        await self.dial(alice, self.bob)
        self.assertEqual(await self.error(alice), "dial_rate")

    async def test_media_frame_rate(self):
        """
        Screen-share frames reach the other party within the frame rate;
        the rest are dropped with an error frame.
        """
        await self.start(calls_media_frames_per_second=2.0)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.call(alice, bob, self.bob)
        for n in range(3):
            # go-chat-web sends these as type "" frames.
            alice.send(to=self.bob.uuid, contentType=calls.SCREEN_FRAME,
                       messageType=1, content=f"data:image/jpeg;base64,{n}")
        self.assertEqual(await self.error(alice), "media_rate")
        got = await self.barrier(bob)
        self.assertEqual([f.content for f in got],
                         ["data:image/jpeg;base64,0",
                          "data:image/jpeg;base64,1"])
        self.clock.advance(0.5)
        alice.send(to=self.bob.uuid, contentType=calls.VIDEO_FRAME,
                   messageType=1, file=b"\x00" * 100)
        frame = await bob.next()
        self.assertEqual((frame.contentType, len(frame.file),
                          getattr(frame, "from")),
                         (calls.VIDEO_FRAME, 100, self.alice.uuid))

    async def test_media_byte_rate(self):
        await self.start(calls_media_bytes_per_second=1000)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.call(alice, bob, self.bob)
        alice.send(type="webrtc", to=self.bob.uuid,
                   contentType=calls.VIDEO_FRAME, file=b"\x00" * 2000)
        self.assertEqual(await self.error(alice), "media_rate")
        await self.assert_quiet(bob)

    async def test_screen_share_outside_a_call_is_not_abuse(self):
        """
        go-chat-web shares screens outside calls, a frame every 60 ms:
        the frames go nowhere and the sender hears of it at most once a
        second, so it is not closed for too many refused frames.
        """
        await self.start(websocket_max_refusals_per_minute=10)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        for n in range(30):
            alice.send(to=self.bob.uuid, contentType=calls.SCREEN_FRAME,
                       messageType=1, content=f"data:image/jpeg;base64,{n}")
        errors = [f for f in await self.barrier(alice) if f.type == "error"]
        self.assertEqual([f.errorCode for f in errors], ["not_in_call"])
        await self.assert_quiet(bob)

    async def test_media_needs_a_call(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, contentType=calls.SCREEN_FRAME,
                   messageType=1, file=b"x")
        self.assertEqual(await self.error(alice), "not_in_call")
        await self.assert_quiet(bob)


class DisconnectTests(CallsTestCase):
    async def wait_detached(self, user):
        hub = self.service.realtime.hub
        while hub.is_connected(user.id):
            await sleep(0.01)

    async def test_disconnect_ends_the_call_after_the_grace_period(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.call(alice, bob, self.bob)
        await bob.close()
        await self.wait_detached(self.bob)
        self.clock.advance(9)
        await self.assert_quiet(alice)
        self.clock.advance(1)
        ended = await self.next_call_frame(alice)
        self.assertEqual((ended.contentType, content(ended)["reason"]),
                         (calls.HANG_UP, "disconnected"))
        entry = content(await self.log_entry(alice))
        self.assertEqual((entry["outcome"], entry["reason"]),
                         ("completed", "disconnected"))

    async def test_reconnect_within_the_grace_period(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.call(alice, bob, self.bob)
        await bob.close()
        await self.wait_detached(self.bob)
        self.clock.advance(5)
        bob = await self.connect(self.bob)
        bob.send(type="webrtc", to=self.alice.uuid, content=ICE_B)
        self.assertEqual((await self.next_call_frame(alice)).content, ICE_B)
        self.clock.advance(60)
        alice.send(type="webrtc", to=self.bob.uuid, content=ICE_A)
        self.assertEqual((await self.next_call_frame(bob)).content, ICE_A)

    async def test_server_stop_with_calls_in_progress(self):
        """
        Stopping the server forgets the calls (the manager stops before the
        Hub closes the connections): no timers are left behind.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.call(alice, bob, self.bob)
        await self.service.stopService()
        self.assertEqual(self.manager.calls(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
