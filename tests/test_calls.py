"""
Tests for L{chatd.calls}: the call state machine on a test clock, with fake
devices that keep the frames they are sent.
"""

import json
from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd import calls
from chatd.config import CallsConfig, ConfigError, config_from_dict
from chatd.errors import ChatError, TooManyRequests
from chatd.protocol.frames import Message, error_code


@dataclass(frozen=True)
class FakeUser:
    id: int
    uuid: str
    username: str
    avatar: str = ""


class FakeDevice:
    def __init__(self, user, name):
        self.user = user
        self.name = name
        self.frames = []

    def take(self):
        frames, self.frames = self.frames, []
        return frames

    def __repr__(self):
        return f"<device {self.name}>"


def content(frame):
    return json.loads(frame.content)


class CallTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.users = {}
        self.friends = set()
        self.online = {}
        self.records = []
        self.alice = self.user(1, "alice")
        self.bob = self.user(2, "bob")
        self.carol = self.user(3, "carol")
        self.dave = self.user(4, "dave")
        self.befriend(self.alice, self.bob)
        self.befriend(self.carol, self.bob)
        self.befriend(self.carol, self.dave)
        self.make_manager()

    def make_manager(self, **settings):
        ids = iter(range(1, 1000))
        self.manager = calls.CallManager(
            self.clock, CallsConfig(**settings), self.devices_of, self.deliver,
            self.lookup, self.are_friends, self.records.append,
            new_id=lambda: f"call-{next(ids)}")

    def user(self, user_id, name):
        user = FakeUser(user_id, f"uuid-{name}", name, f"{name}.png")
        self.users[user.uuid] = user
        return user

    def befriend(self, a, b):
        self.friends |= {(a.id, b.id), (b.id, a.id)}

    def connect(self, user, name=None):
        device = FakeDevice(user, name or user.username)
        self.online.setdefault(user.id, []).append(device)
        return device

    def disconnect(self, device):
        self.online[device.user.id].remove(device)
        self.manager.disconnected(device)

    # The callables the manager gets.

    def devices_of(self, user_id):
        return tuple(self.online.get(user_id, ()))

    def deliver(self, device, frame):
        device.frames.append(frame)

    async def lookup(self, uuid):
        return self.users.get(uuid)

    async def are_friends(self, user_id, other_id):
        return (user_id, other_id) in self.friends

    # Sending frames.

    def send(self, device, **fields):
        """
        Hand the manager a frame from C{device}; raise what it raises.
        """
        fields.setdefault("type", "webrtc")
        if "from_" in fields:
            fields["from"] = fields.pop("from_")
        results = []
        Deferred.fromCoroutine(
            self.manager.handle(device, Message(**fields))).addBoth(
                results.append)
        self.assertEqual(len(results), 1, "handle() did not finish")
        if isinstance(results[0], Failure):
            results[0].raiseException()

    def refused(self, code, device, **fields):
        error = self.assertRaises(ChatError, self.send, device, **fields)
        self.assertEqual(error_code(error), code, error.message)
        return error

    def dial(self, caller_device, callee, content_type=calls.DIAL_VOICE):
        self.send(caller_device, contentType=content_type, to=callee.uuid,
                  messageType=1)

    def assertControl(self, frame, content_type, sender, recipient, **fields):
        self.assertEqual(
            (frame.type, frame.contentType, getattr(frame, "from"),
             frame.fromUsername, frame.avatar, frame.to),
            ("webrtc", content_type, sender.uuid, sender.username,
             sender.avatar, recipient.uuid))
        got = content(frame)
        for key, value in fields.items():
            self.assertEqual(got[key], value, key)
        return got

    def ringing_call(self, callee_devices=1):
        """
        alice (one device) calls bob (C{callee_devices} devices); the ring
        frames are consumed.
        """
        a = self.connect(self.alice)
        bs = [self.connect(self.bob, f"bob{n}") for n in range(callee_devices)]
        self.dial(a, self.bob)
        for b in bs:
            self.assertEqual(len(b.take()), 1)
        return a, bs

    def active_call(self):
        a, (b,) = self.ringing_call()
        self.send(b, contentType=calls.ACCEPT_VOICE, to=self.alice.uuid)
        a.take()
        return a, b


class DialTests(CallTestCase):
    def test_rings_every_device_of_the_callee(self):
        a = self.connect(self.alice)
        a2 = self.connect(self.alice, "alice2")
        b1, b2 = self.connect(self.bob, "b1"), self.connect(self.bob, "b2")
        self.dial(a, self.bob)
        for b in (b1, b2):
            (ring,) = b.take()
            self.assertControl(ring, calls.DIAL_VOICE, self.alice, self.bob,
                               callId="call-1", kind="voice")
        self.assertEqual((a.frames, a2.frames), ([], []))
        call = self.manager.call_of(self.bob.id)
        self.assertIs(call, self.manager.call_of(self.alice.id))
        self.assertEqual((call.state, call.kind), (calls.RINGING, "voice"))
        self.assertEqual(self.records, [])

    def test_device_connecting_while_it_rings(self):
        """
        A device of the callee that connects while the call rings rings
        too (once its connection is open) and may answer.
        """
        a, (b,) = self.ringing_call()
        late = self.connect(self.bob, "late")
        self.manager.connected(late)
        self.assertEqual(late.frames, [])
        self.clock.advance(0)
        (ring,) = late.take()
        self.assertControl(ring, calls.DIAL_VOICE, self.alice, self.bob,
                           callId="call-1")
        self.manager.connected(late)
        self.clock.advance(0)
        self.assertEqual(late.frames, [])
        self.send(late, contentType=calls.ACCEPT_VOICE)
        self.assertEqual(a.take()[0].contentType, calls.ACCEPT_VOICE)
        self.assertEqual(content(b.take()[0])["reason"], "answered_elsewhere")

    def test_connecting_rings_only_a_ringing_callee(self):
        a, b = self.active_call()
        for device in (self.connect(self.bob, "bob2"),
                       self.connect(self.alice, "alice2"),
                       self.connect(self.carol)):
            self.manager.connected(device)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((a.frames, b.frames), ([], []))

    def test_connected_then_call_over(self):
        a, (b,) = self.ringing_call()
        late = self.connect(self.bob, "late")
        self.manager.connected(late)
        self.send(a, contentType=calls.CANCEL_VOICE)
        self.clock.advance(0)
        self.assertEqual([content(f)["reason"] for f in late.take()],
                         ["cancelled"])

    def test_video(self):
        a, b = self.connect(self.alice), self.connect(self.bob)
        self.dial(a, self.bob, calls.DIAL_VIDEO)
        (ring,) = b.take()
        self.assertControl(ring, calls.DIAL_VIDEO, self.alice, self.bob,
                           kind="video")
        self.send(b, contentType=calls.ACCEPT_VIDEO)
        (accepted,) = a.take()
        self.assertControl(accepted, calls.ACCEPT_VIDEO, self.bob, self.alice)

    def test_redial_while_ringing_is_a_no_op(self):
        """
        go-chat-web repeats its dial every 3 s: no new ring, no new call,
        and it does not count against the dial rate.
        """
        self.make_manager(dial_burst=1)
        a, (b,) = self.ringing_call()
        for _ in range(5):
            self.dial(a, self.bob)
            self.clock.advance(3)
        self.assertEqual(b.frames, [])
        self.assertEqual(len(self.manager.calls()), 1)

    def test_only_friends(self):
        a = self.connect(self.alice)
        c = self.connect(self.carol)
        self.refused("not_friend", a, contentType=calls.DIAL_VOICE,
                     to=self.carol.uuid)
        self.assertEqual((c.frames, self.manager.calls(), self.records),
                         ([], [], []))

    def test_refused_dial_is_also_rejected(self):
        """
        A refused dial gets a reject frame besides the error, so that
        go-chat-web stops repeating it.
        """
        a = self.connect(self.alice)
        self.refused("not_friend", a, contentType=calls.DIAL_VIDEO,
                     to=self.carol.uuid)
        (reject,) = a.take()
        self.assertEqual(
            (reject.type, reject.contentType, getattr(reject, "from"),
             reject.to, content(reject)),
            ("webrtc", calls.REJECT_VIDEO, self.carol.uuid, self.alice.uuid,
             {"reason": "not_friend"}))

    def test_caller_gone_during_the_checks(self):
        a, b = self.connect(self.alice), self.connect(self.bob)
        checked = self.are_friends

        async def are_friends(user_id, other_id):
            self.disconnect(a)
            return await checked(user_id, other_id)

        self.are_friends = are_friends
        self.make_manager()
        self.dial(a, self.bob)
        self.assertEqual((b.frames, self.manager.calls(), self.records),
                         ([], [], []))

    def test_strangers_when_not_friends_only(self):
        self.make_manager(friends_only=False)
        a, c = self.connect(self.alice), self.connect(self.carol)
        self.dial(a, self.carol)
        self.assertEqual([f.contentType for f in c.take()], [calls.DIAL_VOICE])

    def test_not_yourself(self):
        self.make_manager(friends_only=False)
        a = self.connect(self.alice)
        a2 = self.connect(self.alice, "alice2")
        self.refused("call_self", a, contentType=calls.DIAL_VOICE,
                     to=self.alice.uuid)
        self.assertEqual(a2.frames, [])

    def test_bad_dials(self):
        a = self.connect(self.alice)
        self.refused("unknown_recipient", a, contentType=calls.DIAL_VOICE,
                     to="nobody")
        self.refused("no_recipient", a, contentType=calls.DIAL_VOICE)
        self.refused("group_call", a, contentType=calls.DIAL_VOICE,
                     to=self.bob.uuid, messageType=2)
        self.refused("spoofed_from", a, contentType=calls.DIAL_VOICE,
                     to=self.bob.uuid, from_=self.carol.uuid)
        self.refused("bad_call_frame", a, contentType=10, to=self.bob.uuid)
        self.refused("bad_call_frame", a, contentType=calls.CALL_LOG,
                     to=self.bob.uuid, content="{}")
        self.assertEqual(self.manager.calls(), [])

    def test_own_uuid_in_from_is_fine(self):
        a, b = self.connect(self.alice), self.connect(self.bob)
        self.send(a, contentType=calls.DIAL_VOICE, to=self.bob.uuid,
                  from_=self.alice.uuid)
        self.assertEqual(len(b.frames), 1)

    def test_one_outgoing_call_at_a_time(self):
        a, (b,) = self.ringing_call()
        self.connect(self.dave)
        self.befriend(self.alice, self.dave)
        self.refused("already_calling", a, contentType=calls.DIAL_VOICE,
                     to=self.dave.uuid)
        a2 = self.connect(self.alice, "alice2")
        self.refused("already_calling", a2, contentType=calls.DIAL_VOICE,
                     to=self.bob.uuid)
        self.assertEqual(b.frames, [])

    def test_in_call_cannot_dial(self):
        a, b = self.active_call()
        self.befriend(self.alice, self.dave)
        self.connect(self.dave)
        self.refused("in_call", a, contentType=calls.DIAL_VOICE,
                     to=self.dave.uuid)
        self.refused("in_call", b, contentType=calls.DIAL_VOICE,
                     to=self.carol.uuid)

    def test_busy(self):
        """
        A callee already in a call: the caller hears busy (a reject frame
        with reason "busy"); the callee's call goes on; the attempt is
        logged.
        """
        a, b = self.active_call()
        c = self.connect(self.carol)
        self.dial(c, self.bob)
        (busy,) = c.take()
        self.assertControl(busy, calls.REJECT_VOICE, self.bob, self.carol,
                           reason="busy")
        self.assertEqual((a.frames, b.frames), ([], []))
        self.assertEqual(self.manager.call_of(self.bob.id).caller, self.alice)
        self.assertIsNone(self.manager.call_of(self.carol.id))
        (entry,) = self.records
        self.assertEqual((entry.caller, entry.callee, entry.outcome,
                          entry.answered_at), (self.carol, self.bob, "busy",
                                               None))

    def test_busy_while_ringing(self):
        a, (b,) = self.ringing_call()
        c = self.connect(self.carol)
        self.dial(c, self.bob, calls.DIAL_VIDEO)
        (busy,) = c.take()
        self.assertControl(busy, calls.REJECT_VIDEO, self.bob, self.carol,
                           reason="busy")
        self.assertEqual(b.frames, [])

    def test_callee_offline(self):
        a = self.connect(self.alice)
        self.dial(a, self.bob)
        (refused,) = a.take()
        self.assertControl(refused, calls.REJECT_VOICE, self.bob, self.alice,
                           reason="unavailable")
        self.assertEqual(self.manager.calls(), [])
        self.assertEqual([(e.outcome, e.reason) for e in self.records],
                         [("missed", "unavailable")])

    def test_dial_rate(self):
        """
        dial_burst calls in a row, then dials_per_minute.
        """
        self.make_manager(dial_burst=2, dials_per_minute=6.0)
        a = self.connect(self.alice)
        self.connect(self.bob)
        for _ in range(2):
            self.dial(a, self.bob)
            self.send(a, contentType=calls.CANCEL_VOICE)
        error = self.refused("dial_rate", a, contentType=calls.DIAL_VOICE,
                             to=self.bob.uuid)
        self.assertIsInstance(error, TooManyRequests)
        self.assertEqual(error.retry_after, 10)
        self.clock.advance(9)
        self.refused("dial_rate", a, contentType=calls.DIAL_VOICE,
                     to=self.bob.uuid)
        self.clock.advance(1)
        self.dial(a, self.bob)
        self.assertEqual(self.manager.call_of(self.alice.id).state,
                         calls.RINGING)

    def test_busy_counts_against_the_dial_rate(self):
        self.make_manager(dial_burst=1)
        self.active_call()
        c = self.connect(self.carol)
        self.dial(c, self.bob)
        self.refused("dial_rate", c, contentType=calls.DIAL_VOICE,
                     to=self.bob.uuid)


class AnswerTests(CallTestCase):
    def test_first_device_to_accept_wins(self):
        a, (b1, b2, b3) = self.ringing_call(callee_devices=3)
        self.send(b2, contentType=calls.ACCEPT_VOICE, to=self.alice.uuid)
        (accepted,) = a.take()
        self.assertControl(accepted, calls.ACCEPT_VOICE, self.bob, self.alice,
                           callId="call-1")
        for other in (b1, b3):
            (stop,) = other.take()
            self.assertControl(stop, calls.CANCEL_VOICE, self.alice, self.bob,
                               reason="answered_elsewhere")
        self.assertEqual(b2.frames, [])
        self.refused("answered_elsewhere", b1, contentType=calls.ACCEPT_VOICE)
        self.send(b2, contentType=calls.ACCEPT_VOICE)
        self.assertEqual(a.frames, [])
        call = self.manager.call_of(self.alice.id)
        self.assertEqual((call.state, call.devices[calls.CALLEE]),
                         (calls.ACTIVE, b2))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_accept_without_a_call(self):
        b = self.connect(self.bob)
        self.refused("not_ringing", b, contentType=calls.ACCEPT_VOICE)
        a, _ = self.ringing_call()
        self.refused("not_ringing", a, contentType=calls.ACCEPT_VOICE)

    def test_reject(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.clock.advance(5)
        self.send(b1, contentType=calls.REJECT_VOICE, to=self.alice.uuid)
        (rejected,) = a.take()
        self.assertControl(rejected, calls.REJECT_VOICE, self.bob, self.alice,
                           reason="rejected")
        (stop,) = b2.take()
        self.assertControl(stop, calls.CANCEL_VOICE, self.alice, self.bob,
                           reason="rejected")
        self.assertEqual(b1.frames, [])
        self.assertEqual(self.manager.calls(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        (entry,) = self.records
        self.assertEqual(
            (entry.caller, entry.callee, entry.kind, entry.outcome,
             entry.started_at, entry.answered_at, entry.ended_at,
             entry.duration),
            (self.alice, self.bob, "voice", "rejected", 1000000, None,
             1005000, 0))

    def test_cancel(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.send(a, contentType=calls.CANCEL_VOICE, to=self.bob.uuid)
        for b in (b1, b2):
            (stop,) = b.take()
            self.assertControl(stop, calls.CANCEL_VOICE, self.alice, self.bob,
                               reason="cancelled")
        self.assertEqual(a.frames, [])
        self.assertEqual([e.outcome for e in self.records], ["cancelled"])
        self.assertEqual(self.manager.calls(), [])

    def test_cancel_from_another_device_of_the_caller(self):
        a, (b,) = self.ringing_call()
        a2 = self.connect(self.alice, "alice2")
        self.send(a2, contentType=calls.CANCEL_VOICE)
        (stopped,) = a.take()
        self.assertControl(stopped, calls.REJECT_VOICE, self.bob, self.alice,
                           reason="cancelled")
        self.assertEqual(len(b.take()), 1)

    def test_ring_timeout(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.clock.advance(44.9)
        self.assertEqual((a.frames, b1.frames, b2.frames), ([], [], []))
        self.clock.advance(0.1)
        (timeout,) = a.take()
        self.assertControl(timeout, calls.REJECT_VOICE, self.bob, self.alice,
                           reason="timeout")
        for b in (b1, b2):
            (stop,) = b.take()
            self.assertControl(stop, calls.CANCEL_VOICE, self.alice, self.bob,
                               reason="timeout")
        (entry,) = self.records
        self.assertEqual((entry.outcome, entry.reason, entry.ended_at),
                         ("missed", "timeout", 1045000))
        self.assertEqual(self.manager.calls(), [])

    def test_ring_timeout_configurable(self):
        self.make_manager(ring_timeout=5.0)
        a, _ = self.ringing_call()
        self.clock.advance(5)
        self.assertEqual(content(a.take()[0])["reason"], "timeout")

    def test_answered_call_does_not_time_out(self):
        a, b = self.active_call()
        self.clock.advance(3600)
        self.assertEqual((a.frames, b.frames, self.records), ([], [], []))


class HangUpTests(CallTestCase):
    def test_hang_up(self):
        a, b = self.active_call()
        self.clock.advance(125.4)
        self.send(b, contentType=calls.HANG_UP)
        (ended,) = a.take()
        self.assertEqual((ended.type, ended.contentType, getattr(ended, "from"),
                          ended.to), ("webrtc", calls.HANG_UP, self.bob.uuid,
                                      self.alice.uuid))
        self.assertEqual(content(ended), {"callId": "call-1",
                                          "reason": "hangup"})
        self.assertEqual(b.frames, [])
        (entry,) = self.records
        self.assertEqual(
            (entry.outcome, entry.reason, entry.started_at, entry.answered_at,
             entry.ended_at, entry.duration),
            ("completed", "hangup", 1000000, 1000000, 1125400, 125))
        self.assertEqual(self.manager.calls(), [])

    def test_cancel_or_reject_in_a_call_hangs_up(self):
        """
        go-chat-web has no hang-up frame: its cancel and reject end an
        answered call too.
        """
        for content_type, by in [(calls.CANCEL_VOICE, "caller"),
                                 (calls.REJECT_VOICE, "callee"),
                                 (calls.CANCEL_VIDEO, "callee")]:
            self.online.clear()
            a, b = self.active_call()
            device, other = (a, b) if by == "caller" else (b, a)
            self.send(device, contentType=content_type)
            self.assertEqual([f.contentType for f in other.take()],
                             [calls.HANG_UP])
        self.assertEqual([e.outcome for e in self.records], ["completed"] * 3)

    def test_hang_up_from_another_device_of_a_party(self):
        a, b = self.active_call()
        b2 = self.connect(self.bob, "bob2")
        self.send(b2, contentType=calls.HANG_UP)
        for device in (a, b):
            self.assertEqual([f.contentType for f in device.take()],
                             [calls.HANG_UP])

    def test_end_without_a_call(self):
        a = self.connect(self.alice)
        for content_type in (calls.CANCEL_VOICE, calls.REJECT_VIDEO,
                             calls.HANG_UP):
            self.refused("not_in_call", a, contentType=content_type)

    def test_callee_dials_after_the_call(self):
        a, b = self.active_call()
        self.send(a, contentType=calls.HANG_UP)
        self.dial(b, self.alice, calls.DIAL_VIDEO)
        self.assertEqual([f.contentType for f in a.take()],
                         [calls.DIAL_VIDEO])


class DisconnectTests(CallTestCase):
    def test_grace_period(self):
        a, b = self.active_call()
        self.disconnect(b)
        self.clock.advance(9.9)
        self.assertEqual((a.frames, self.records), ([], []))
        self.clock.advance(0.1)
        (ended,) = a.take()
        self.assertEqual((ended.contentType, content(ended)["reason"]),
                         (calls.HANG_UP, "disconnected"))
        (entry,) = self.records
        self.assertEqual((entry.outcome, entry.reason, entry.duration),
                         ("completed", "disconnected", 10))
        self.assertEqual(self.manager.calls(), [])

    def test_both_disconnect(self):
        a, b = self.active_call()
        self.disconnect(b)
        self.clock.advance(5)
        self.disconnect(a)
        self.clock.advance(5)
        self.assertEqual(len(self.records), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_grace(self):
        self.make_manager(disconnect_grace=0.0)
        a, b = self.active_call()
        self.disconnect(a)
        self.assertEqual(content(b.take()[0])["reason"], "disconnected")
        self.assertEqual(self.manager.calls(), [])

    def test_back_within_the_grace_period(self):
        """
        A new connection of the party that dropped takes its place with
        its first call frame; the call goes on.
        """
        a, b = self.active_call()
        self.disconnect(b)
        self.clock.advance(5)
        b2 = self.connect(self.bob, "bob2")
        self.send(b2, contentType=calls.VOICE_SIGNAL,
                  content='{"type":"offer","sdp":"v=0"}')
        (offer,) = a.take()
        self.assertEqual(offer.content, '{"type":"offer","sdp":"v=0"}')
        self.clock.advance(60)
        self.assertEqual((a.frames, self.records), ([], []))
        self.send(a, contentType=calls.VOICE_SIGNAL, content="{}")
        self.assertEqual(len(b2.take()), 1)

    def test_other_device_disconnecting_is_ignored(self):
        a, b = self.active_call()
        b2 = self.connect(self.bob, "bob2")
        self.disconnect(b2)
        self.clock.advance(60)
        self.assertEqual((a.frames, self.records), ([], []))

    def test_caller_disconnects_while_ringing(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.disconnect(a)
        for b in (b1, b2):
            (stop,) = b.take()
            self.assertControl(stop, calls.CANCEL_VOICE, self.alice, self.bob,
                               reason="disconnected")
        self.assertEqual([(e.outcome, e.reason) for e in self.records],
                         [("cancelled", "disconnected")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_ringing_devices_disconnect(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.disconnect(b1)
        self.assertEqual(a.frames, [])
        self.disconnect(b2)
        (gone,) = a.take()
        self.assertControl(gone, calls.REJECT_VOICE, self.bob, self.alice,
                           reason="unavailable")
        self.assertEqual([e.outcome for e in self.records], ["missed"])

    def test_stop(self):
        self.ringing_call()
        self.manager.stop()
        self.assertEqual(self.manager.calls(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SignalTests(CallTestCase):
    OFFER = '{"type":"offer","sdp":"v=0 offer"}'
    ANSWER = '{"type":"answer","sdp":"v=0 answer"}'
    ICE = '{"type":"offer_ice","iceCandidate":{"candidate":"c1"}}'

    def test_relayed_between_the_two_devices(self):
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.send(b1, contentType=calls.ACCEPT_VOICE)
        a.take(), b2.take()
        self.send(a, contentType=calls.VOICE_SIGNAL, content=self.OFFER,
                  to=self.bob.uuid, avatar="spoof", fromUsername="spoof")
        (offer,) = b1.take()
        self.assertEqual(
            (offer.type, offer.contentType, offer.content,
             getattr(offer, "from"), offer.fromUsername, offer.avatar,
             offer.to),
            ("webrtc", calls.VOICE_SIGNAL, self.OFFER, self.alice.uuid,
             "alice", "alice.png", self.bob.uuid))
        self.send(b1, contentType=calls.VOICE_SIGNAL, content=self.ANSWER)
        (answer,) = a.take()
        self.assertEqual(answer.content, self.ANSWER)
        # go-chat-web sends ICE with type "webrtc" and no contentType.
        self.send(a, content=self.ICE)
        self.assertEqual(b1.take()[0].content, self.ICE)
        self.send(b1, content=self.ICE.replace("offer_ice", "answer_ice"))
        self.assertIn("answer_ice", a.take()[0].content)
        self.assertEqual(b2.frames, [])

    def test_while_ringing(self):
        """
        A caller's early offer reaches every ringing device; a ringing
        device's frames reach the caller's.
        """
        a, (b1, b2) = self.ringing_call(callee_devices=2)
        self.send(a, contentType=calls.VIDEO_SIGNAL, content=self.OFFER)
        self.assertEqual([len(b1.take()), len(b2.take())], [1, 1])
        self.send(b2, contentType=calls.VIDEO_SIGNAL, content=self.ANSWER)
        self.assertEqual(len(a.take()), 1)

    def test_third_party_cannot_inject(self):
        a, b = self.active_call()
        c = self.connect(self.carol)
        self.refused("not_in_call", c, contentType=calls.VOICE_SIGNAL,
                     content=self.OFFER, to=self.bob.uuid)
        self.refused("spoofed_from", c, contentType=calls.VOICE_SIGNAL,
                     content=self.OFFER, to=self.bob.uuid,
                     from_=self.alice.uuid)
        self.assertEqual((a.frames, b.frames), ([], []))

    def test_party_of_another_call_cannot_inject(self):
        """
        carol is in a call with dave: her frames go to dave only, whatever
        their to says.
        """
        a, b = self.active_call()
        c, d = self.connect(self.carol), self.connect(self.dave)
        self.dial(c, self.dave)
        self.send(d, contentType=calls.ACCEPT_VOICE)
        c.take()
        self.send(c, contentType=calls.VOICE_SIGNAL, content=self.OFFER,
                  to=self.bob.uuid)
        self.assertEqual((a.frames, b.frames), ([], []))
        self.assertEqual(d.take()[0].to, self.dave.uuid)

    def test_other_devices_of_a_party(self):
        a, b = self.active_call()
        a2 = self.connect(self.alice, "alice2")
        b2 = self.connect(self.bob, "bob2")
        for device in (a2, b2):
            self.refused("not_call_device", device,
                         contentType=calls.VOICE_SIGNAL, content=self.OFFER)
        self.assertEqual((a.frames, b.frames), ([], []))

    def test_size_and_rate_limited(self):
        """
        A signalling frame over max_signal_bytes is refused, not relayed;
        past a burst of four seconds' worth, frames are refused until the
        allowance refills.
        """
        a, b = self.active_call()
        self.refused("too_large", a, contentType=calls.VOICE_SIGNAL,
                     content="x" * (64 * 1024))
        self.assertEqual(b.frames, [])
        for _ in range(80):
            self.send(a, content=self.ICE)
        self.assertEqual(len(b.take()), 80)
        self.refused("signal_rate", a, content=self.ICE)
        self.send(b, content=self.ICE)  # the other party has its own
        self.assertEqual(len(a.take()), 1)
        self.clock.advance(0.05)
        self.send(a, content=self.ICE)
        self.assertEqual(len(b.take()), 1)

    def test_device_unknown_to_the_manager(self):
        a, (b,) = self.ringing_call()
        late = self.connect(self.bob, "late")
        self.refused("not_call_device", late, contentType=calls.VOICE_SIGNAL,
                     content=self.ANSWER)


class MediaTests(CallTestCase):
    def frame(self, device, size=10, content_type=calls.SCREEN_FRAME):
        self.send(device, type="", contentType=content_type,
                  file=b"x" * size)

    def test_relayed_to_the_other_party(self):
        a, b = self.active_call()
        self.frame(a, content_type=calls.VIDEO_FRAME)
        (got,) = b.take()
        self.assertEqual((got.contentType, got.file, getattr(got, "from"),
                          got.to), (calls.VIDEO_FRAME, b"x" * 10,
                                    self.alice.uuid, self.bob.uuid))
        self.frame(b)
        self.assertEqual(len(a.take()), 1)

    def test_only_in_an_answered_call(self):
        a, (b,) = self.ringing_call()
        self.refused("call_not_active", a, type="", contentType=calls.SCREEN_FRAME,
                     file=b"x")
        c = self.connect(self.carol)
        self.refused("not_in_call", c, type="", contentType=calls.VIDEO_FRAME,
                     to=self.bob.uuid, file=b"x")
        self.assertEqual(b.frames, [])

    def test_frame_rate(self):
        self.make_manager(media_frames_per_second=3.0)
        a, b = self.active_call()
        for _ in range(3):
            self.frame(a)
        error = self.refused("media_rate", a, type="",
                             contentType=calls.SCREEN_FRAME, file=b"x")
        self.assertIsInstance(error, TooManyRequests)
        self.assertEqual(len(b.take()), 3)
        # The other party has its own allowance.
        self.frame(b)
        self.clock.advance(1 / 3)
        self.frame(a)
        self.assertEqual(len(b.take()), 1)

    def test_over_the_rate_heard_once_a_second(self):
        """
        Frames over the rate are dropped; the sender gets an error for the
        first, then at most one a second (so that it is not closed as
        abusive for being a little too fast).
        """
        self.make_manager(media_frames_per_second=2.0)
        a, b = self.active_call()
        self.frame(a)
        self.frame(a)
        self.refused("media_rate", a, type="", contentType=calls.SCREEN_FRAME,
                     file=b"x")
        for _ in range(5):
            self.frame(a)
        self.assertEqual(len(b.take()), 2)
        self.clock.advance(0.5)
        self.frame(a)
        self.frame(a)
        self.clock.advance(0.5)
        self.frame(a)
        self.refused("media_rate", a, type="", contentType=calls.SCREEN_FRAME,
                     file=b"x")
        self.assertEqual(len(b.take()), 2)

    def test_outside_a_call_heard_once_a_second(self):
        """
        go-chat-web shares screens outside calls, every 60 ms: the frames
        are dropped, with an error at most once a second.
        """
        a, b = self.connect(self.alice), self.connect(self.bob)
        self.refused("not_in_call", a, type="", contentType=calls.SCREEN_FRAME,
                     to=self.bob.uuid, content="data:image/jpeg;base64,x")
        for _ in range(16):
            self.clock.advance(0.06)
            self.frame(a)
        self.clock.advance(0.1)
        self.refused("not_in_call", a, type="", contentType=calls.SCREEN_FRAME,
                     to=self.bob.uuid, content="data:image/jpeg;base64,x")
        self.assertEqual(b.frames, [])
        # A new connection is told at once.
        self.disconnect(a)
        a = self.connect(self.alice)
        self.refused("not_in_call", a, type="", contentType=calls.SCREEN_FRAME,
                     file=b"x")

    def test_byte_rate(self):
        self.make_manager(media_bytes_per_second=1000)
        a, b = self.active_call()
        self.frame(a, size=600)
        self.refused("media_rate", a, type="", contentType=calls.SCREEN_FRAME,
                     file=b"x" * 600)
        self.clock.advance(0.5)
        self.frame(a, size=400)
        self.assertEqual(len(b.take()), 2)

    def test_allowance_resets_with_a_new_call(self):
        self.make_manager(media_frames_per_second=1.0)
        a, b = self.active_call()
        self.frame(a)
        self.send(a, contentType=calls.HANG_UP)
        self.online.clear()
        a, b = self.active_call()
        self.frame(a)


class RecordTests(CallTestCase):
    def test_content(self):
        a, b = self.active_call()
        self.clock.advance(61)
        self.send(a, contentType=calls.HANG_UP)
        (entry,) = self.records
        self.assertEqual(json.loads(entry.content()), {
            "callId": "call-1", "kind": "voice",
            "caller": self.alice.uuid, "callerName": "alice",
            "callee": self.bob.uuid, "calleeName": "bob",
            "startedAt": 1000000, "answeredAt": 1000000,
            "endedAt": 1061000, "duration": 61,
            "outcome": "completed", "reason": "hangup"})

    def test_failures_are_logged(self):
        class Broken(Exception):
            pass

        self.manager._record = lambda entry: fail(Broken())
        a, b = self.active_call()
        self.send(a, contentType=calls.HANG_UP)
        self.assertEqual(len(self.flushLoggedErrors(Broken)), 1)
        self.assertEqual(b.take()[0].contentType, calls.HANG_UP)

    def test_coroutines_awaited(self):
        recorded = []

        async def record(entry):
            recorded.append(entry.outcome)

        self.manager._record = record
        a, (b,) = self.ringing_call()
        self.send(b, contentType=calls.REJECT_VOICE)
        self.assertEqual(recorded, ["rejected"])


class ConfigTests(SynchronousTestCase):
    def test_defaults(self):
        c = CallsConfig()
        self.assertEqual(
            (c.ring_timeout, c.disconnect_grace, c.friends_only, c.stun_urls,
             c.turn_urls, c.turn_secret, c.turn_credential_lifetime),
            (45.0, 10.0, True, (), (), "", 86400))

    def test_urls_checked(self):
        error = self.assertRaises(ConfigError, config_from_dict,
                                  {"calls": {"turn_urls": ["stun:x"]}}, "f")
        self.assertIn("calls.turn_urls", str(error))
        error = self.assertRaises(ConfigError, config_from_dict,
                                  {"calls": {"stun_urls": ["http://x"]}}, "f")
        self.assertIn("calls.stun_urls", str(error))

    def test_turn_needs_a_secret(self):
        error = self.assertRaises(ConfigError, config_from_dict,
                                  {"calls": {"turn_urls": ["turn:t"]}}, "f")
        self.assertIn("f: calls.turn_urls: needs calls.turn_secret",
                      str(error))

    def test_turn_secret_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\n")
        config = config_from_dict({"calls": {"turn_secret_file": path}})
        self.assertEqual(config.calls.turn_secret, "s3cret")
