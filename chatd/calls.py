"""
Voice and video calls: the state of each call, and who may send what.

go-chat relays call signalling blindly; chatd keeps every call as a small
state machine and relays a call's frames only between its two parties.
Frames are go-chat-web's (C{type} "webrtc", docs/protocol.md, "Calls"):

  contentType  client -> server            server -> client
  11 / 15      dial voice / video           ring (every device of the callee,
                                            and those connecting while it rings)
  12 / 16      accept (first device wins)   accepted (the caller's device)
  13 / 17      cancel (caller), or          stop ringing (callee devices):
               hang up                      cancelled, answered elsewhere,
                                            timeout, ...
  14 / 18      reject (callee), or          call refused or over before it
               hang up                      began (the caller's device):
                                            rejected, busy, timeout, ...;
                                            a refused dial (with the error)
  19           hang up                      the call ended (the other party)
  6 / 7        SDP or ICE (JSON in content; go-chat-web sends ICE with no
               contentType): relayed to the other party's device only
  8 / 9        video / screen-share frame: relayed to the other party of an
               active call, within per-sender frame and byte rates
  20           -                            call log entry (a stored message
                                            of type "", see L{CallLogEntry})

Server-made control frames carry JSON in C{content}: C{callId}, and
C{reason} ("busy", "rejected", "cancelled", "timeout", "unavailable",
"answered_elsewhere", "hangup", "disconnected") on the ending ones, C{kind}
("voice" or "video") on the ring. Refusals are error frames (see
L{chatd.protocol.frames.error_frame}) with the codes named below.

States: RINGING (the caller's device dialled; the callee's devices ring)
-> ACTIVE (a callee device accepted) -> ended. A user is in at most one
call at a time: a caller already in one is refused ("in_call",
"already_calling"), a callee already in one makes the caller hear "busy".
A call that rings for C{ring_timeout} seconds ends as missed for both. A
party whose device disconnects during an active call has
C{disconnect_grace} seconds to send any frame of the call from a new
connection; then the call ends for the other. A caller whose device
disconnects while ringing cancels the call; a callee whose ringing devices
all disconnect misses it.

Every ended call (completed, missed, rejected, cancelled, busy) is handed to
the C{record} callable as a L{CallLogEntry}.

This module is pure: no sockets, no SQL. It gets a clock and callables.
"""

import inspect
import json
import math
import uuid
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.errors import (
    BadRequest,
    ChatError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
)
from chatd.protocol.frames import WEBRTC, Message, error_code, refuse

log = Logger()

# contentType values of call frames.
VOICE_SIGNAL = 6
VIDEO_SIGNAL = 7
VIDEO_FRAME = 8
SCREEN_FRAME = 9
DIAL_VOICE = 11
ACCEPT_VOICE = 12
CANCEL_VOICE = 13
REJECT_VOICE = 14
DIAL_VIDEO = 15
ACCEPT_VIDEO = 16
CANCEL_VIDEO = 17
REJECT_VIDEO = 18
HANG_UP = 19
CALL_LOG = 20

# The contentTypes handed to the call manager whatever the frame's type (it
# handles every frame of type "webrtc" too). 10 and 20 are refused: 20 is
# only ever sent by the server.
CALL_CONTENT_TYPES = frozenset(range(VOICE_SIGNAL, CALL_LOG + 1))

VOICE = "voice"
VIDEO = "video"

_CODES = {
    VOICE: {"dial": DIAL_VOICE, "accept": ACCEPT_VOICE, "cancel": CANCEL_VOICE,
            "reject": REJECT_VOICE},
    VIDEO: {"dial": DIAL_VIDEO, "accept": ACCEPT_VIDEO, "cancel": CANCEL_VIDEO,
            "reject": REJECT_VIDEO},
}
_DIALS = {DIAL_VOICE: VOICE, DIAL_VIDEO: VIDEO}
_ACCEPTS = frozenset({ACCEPT_VOICE, ACCEPT_VIDEO})
_ENDS = frozenset({CANCEL_VOICE, REJECT_VOICE, CANCEL_VIDEO, REJECT_VIDEO,
                   HANG_UP})
_MEDIA = frozenset({VIDEO_FRAME, SCREEN_FRAME})

# Call states.
RINGING = "ringing"
ACTIVE = "active"

# Outcomes in the call log.
COMPLETED = "completed"
MISSED = "missed"
REJECTED = "rejected"
CANCELLED = "cancelled"
BUSY = "busy"

# Sides of a call.
CALLER = "caller"
CALLEE = "callee"
_OTHER = {CALLER: CALLEE, CALLEE: CALLER}

_GROUP = 2
_PRUNE_AT = 1024
# Rounding slack for token buckets refilled by float clocks.
_EPSILON = 1e-9


def _too_many(message, code, retry_after):
    error = TooManyRequests(message, retry_after)
    error.frame_code = code
    return error


def _ms(seconds):
    return int(round(seconds * 1000))


@dataclass(frozen=True)
class CallLogEntry:
    """
    One ended call, for the conversation history.

    @ivar caller, callee: the parties (L{chatd.stores.users.User}s).
    @ivar started_at: when the caller dialled, milliseconds since the epoch.
    @ivar answered_at: when a callee device accepted, or None.
    @ivar outcome: L{COMPLETED}, L{MISSED}, L{REJECTED}, L{CANCELLED} or
        L{BUSY}.
    @ivar reason: the end's reason, as in the control frames.
    """

    call_id: str
    kind: str
    caller: object
    callee: object
    started_at: int
    answered_at: int | None
    ended_at: int
    outcome: str
    reason: str

    @property
    def duration(self):
        """
        Whole seconds from answer to end (0 for a call never answered).
        """
        if self.answered_at is None:
            return 0
        return max(0, round((self.ended_at - self.answered_at) / 1000))

    def content(self):
        """
        The JSON content of the call's log message (contentType 20).
        """
        return json.dumps({
            "callId": self.call_id,
            "kind": self.kind,
            "caller": self.caller.uuid,
            "callerName": self.caller.username,
            "callee": self.callee.uuid,
            "calleeName": self.callee.username,
            "startedAt": self.started_at,
            "answeredAt": self.answered_at,
            "endedAt": self.ended_at,
            "duration": self.duration,
            "outcome": self.outcome,
            "reason": self.reason,
        }, separators=(",", ":"))


class _Bucket:
    """
    A token bucket holding up to C{capacity}, refilled at C{rate} a second.
    """

    def __init__(self, capacity, rate, now):
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.level = self.capacity
        self.since = now

    def refill(self, now):
        self.level = min(self.capacity,
                         self.level + (now - self.since) * self.rate)
        self.since = now
        return self.level

    def full(self, now):
        return self.refill(now) >= self.capacity


class Call:
    """
    One call. C{devices} maps each side to its device in the call (the
    callee's is None until one accepts, and a side's is None while it is
    disconnected within the grace period); C{ringing} holds the callee's
    devices that ring.
    """

    def __init__(self, call_id, kind, caller, caller_device, callee, ringing,
                 started_at):
        self.id = call_id
        self.kind = kind
        self.caller = caller
        self.callee = callee
        self.devices = {CALLER: caller_device, CALLEE: None}
        self.ringing = list(ringing)
        self.state = RINGING
        self.started_at = started_at
        self.answered_at = None
        self.ring_timer = None
        self.grace_timers = {}

    def side_of(self, user_id):
        return CALLER if user_id == self.caller.id else CALLEE

    def user(self, side):
        return self.caller if side == CALLER else self.callee


class CallManager(Service):
    """
    The calls in progress on this node; a service that forgets them when
    it stops.

    @param clock: an L{twisted.internet.interfaces.IReactorTime}; tests may
        replace the C{clock} attribute before any call starts.
    @param config: the L{chatd.config.CallsConfig}.
    @param devices_of: user id -> the connections (devices) of that user.
    @param send: C{send(device, frame)} sends a L{Message} to one device.
    @param lookup_user: async, uuid -> the L{User}, or None.
    @param are_friends: async, C{(user_id, other_id)} -> bool.
    @param record: C{record(entry)} stores a L{CallLogEntry}; may return a
        Deferred or a coroutine (failures are logged).

    Devices have a C{user} (with C{id}, C{uuid}, C{username}, C{avatar}).
    """

    def __init__(self, clock, config, devices_of, send, lookup_user,
                 are_friends, record, new_id=None):
        self.clock = clock
        self._config = config
        self._devices_of = devices_of
        self._send = send
        self._lookup_user = lookup_user
        self._are_friends = are_friends
        self._record = record
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._calls = {}
        self._dial_buckets = {}
        self._media_buckets = {}
        self._signal_buckets = {}
        self._media_notices = {}

    # Looking.

    def call_of(self, user_id):
        """
        The L{Call} a user is in, or None.
        """
        return self._calls.get(user_id)

    def calls(self):
        """
        The calls in progress.
        """
        return list({id(c): c for c in self._calls.values()}.values())

    # Frames in.

    async def handle(self, device, frame):
        """
        Handle one call frame (type "webrtc", or a contentType of
        L{CALL_CONTENT_TYPES}) from C{device}.

        @raise chatd.errors.ChatError: the frame is refused.
        """
        claimed = getattr(frame, "from")
        if claimed and claimed != device.user.uuid:
            raise refuse(Forbidden, "from must be your own uuid; you cannot"
                         " send as someone else", "spoofed_from")
        content_type = frame.contentType
        if content_type in _DIALS:
            try:
                await self._dial(device, frame, _DIALS[content_type])
            except ChatError as error:
                self._dial_refused(device, frame, _DIALS[content_type], error)
                raise
        elif content_type in _ACCEPTS:
            self._accept(device)
        elif content_type in _ENDS:
            self._end_by(device)
        elif content_type in _MEDIA:
            self._media(device, frame)
        elif content_type in (VOICE_SIGNAL, VIDEO_SIGNAL, 0):
            self._signal(device, frame)
        else:
            raise refuse(BadRequest, f"contentType {content_type} is not a"
                         " call frame", "bad_call_frame")

    def connected(self, device):
        """
        C{device} connected: if its user's phone is ringing, it rings too
        (soon after: the connection is not open yet while it is attached).
        """
        call = self._calls.get(device.user.id)
        if (call is None or call.state != RINGING
                or call.side_of(device.user.id) != CALLEE
                or device in call.ringing):
            return
        call.ringing.append(device)
        self.clock.callLater(0, self._ring_late, call, device)

    def _ring_late(self, call, device):
        if (self._current(call) and call.state == RINGING
                and device in call.ringing):
            self._send_control(device, call, "dial", call.caller, call.callee)

    def disconnected(self, device):
        """
        C{device}'s connection is gone.
        """
        self._media_notices.pop(device, None)
        call = self._calls.get(device.user.id)
        if call is None:
            return
        side = call.side_of(device.user.id)
        if call.state == RINGING:
            if side == CALLER:
                if device is call.devices[CALLER]:
                    self._end(call, CANCELLED, "disconnected", actor=device)
            elif device in call.ringing:
                call.ringing.remove(device)
                if not call.ringing:
                    self._end(call, MISSED, "unavailable")
            return
        if call.devices[side] is not device:
            return
        call.devices[side] = None
        grace = self._config.disconnect_grace
        if grace <= 0:
            self._end(call, COMPLETED, "disconnected")
            return
        call.grace_timers[side] = self.clock.callLater(
            grace, self._grace_over, call, side)

    def stop(self):
        """
        Forget every call and cancel the timers (the server stops).
        """
        for call in self.calls():
            self._cancel_timers(call)
        self._calls.clear()

    def stopService(self):
        super().stopService()
        self.stop()

    # Dialling.

    async def _dial(self, device, frame, kind):
        caller = device.user
        if self._redial(device, frame):
            return
        if not frame.to:
            raise refuse(BadRequest, "a call needs a to: the callee's uuid",
                         "no_recipient")
        if frame.messageType == _GROUP:
            raise refuse(BadRequest, "group calls are not supported",
                         "group_call")
        if frame.to == caller.uuid:
            raise refuse(BadRequest, "you cannot call yourself", "call_self")
        callee = await self._lookup_user(frame.to)
        if callee is None:
            raise refuse(NotFound, "no such user", "unknown_recipient")
        if self._config.friends_only and not await self._are_friends(
                caller.id, callee.id):
            raise refuse(Forbidden, f"{callee.username} is not your friend",
                         "not_friend")
        # No awaits from here on: the checks and the change are one step.
        if self._redial(device, frame):
            return
        if device not in self._devices_of(caller.id):
            return  # the caller's device went away meanwhile
        current = self._calls.get(caller.id)
        if current is not None:
            if current.state == RINGING and current.caller.id == caller.id:
                raise refuse(Conflict, f"you are already calling"
                             f" {current.callee.username}: one outgoing call"
                             " at a time", "already_calling")
            raise refuse(Conflict, "you are already in a call", "in_call")
        self._charge_dial(caller.id)
        now = self.clock.seconds()
        call = Call(self._new_id(), kind, caller, device, callee,
                    self._devices_of(callee.id), now)
        if callee.id in self._calls:
            self._send_control(device, call, "reject", callee, caller, BUSY)
            self._log_entry(call, BUSY, BUSY)
            return
        if not call.ringing:
            self._send_control(device, call, "reject", callee, caller,
                               "unavailable")
            self._log_entry(call, MISSED, "unavailable")
            return
        self._calls[caller.id] = self._calls[callee.id] = call
        call.ring_timer = self.clock.callLater(
            self._config.ring_timeout, self._ring_timeout, call)
        for ringing in call.ringing:
            self._send_control(ringing, call, "dial", caller, callee)
        log.debug("{caller} calls {callee} ({kind}, {devices} devices)",
                  caller=caller.username, callee=callee.username, kind=kind,
                  devices=len(call.ringing))

    def _dial_refused(self, device, frame, kind, error):
        """
        Besides the error frame, answer a refused dial with a reject
        (reason: the error code): go-chat-web repeats a dial every 3
        seconds until it hears an accept or a reject.
        """
        refusal = Message(
            type=WEBRTC, contentType=_CODES[kind]["reject"], messageType=1,
            to=device.user.uuid,
            content=json.dumps({"reason": error_code(error)}))
        setattr(refusal, "from", frame.to)
        self._deliver(device, refusal)

    def _redial(self, device, frame):
        """
        go-chat-web sends its dial again every 3 seconds until it hears an
        answer: the same dial from the same device while it rings is a
        no-op.
        """
        call = self._calls.get(device.user.id)
        return (call is not None and call.state == RINGING
                and call.devices[CALLER] is device
                and call.callee.uuid == frame.to)

    def _charge_dial(self, user_id):
        now = self.clock.seconds()
        bucket = self._dial_buckets.get(user_id)
        if bucket is None:
            if len(self._dial_buckets) >= _PRUNE_AT:
                self._dial_buckets = {k: b for k, b in self._dial_buckets.items()
                                      if not b.full(now)}
            bucket = self._dial_buckets[user_id] = _Bucket(
                self._config.dial_burst, self._config.dials_per_minute / 60.0,
                now)
        if bucket.refill(now) < 1 - _EPSILON:
            wait = max(1, math.ceil((1 - bucket.level) / bucket.rate - _EPSILON))
            raise _too_many(f"too many calls; try again in {wait} seconds",
                            "dial_rate", wait)
        bucket.level -= 1

    # Answering and ending.

    def _accept(self, device):
        user = device.user
        call = self._calls.get(user.id)
        if call is None or call.callee.id != user.id:
            raise refuse(Conflict, "no call is ringing for you", "not_ringing")
        if call.state == ACTIVE:
            if call.devices[CALLEE] is device:
                return
            raise refuse(Conflict, "the call was answered on another of your"
                         " devices", "answered_elsewhere")
        self._cancel_ring(call)
        call.state = ACTIVE
        call.answered_at = self.clock.seconds()
        call.devices[CALLEE] = device
        others, call.ringing = call.ringing, []
        self._send_control(call.devices[CALLER], call, "accept", call.callee,
                           call.caller)
        for other in others:
            if other is not device:
                self._send_control(other, call, "cancel", call.caller,
                                   call.callee, "answered_elsewhere")

    def _end_by(self, device):
        user = device.user
        call = self._calls.get(user.id)
        if call is None:
            raise refuse(Conflict, "you are not in a call", "not_in_call")
        side = call.side_of(user.id)
        if call.state == RINGING:
            if side == CALLER:
                self._end(call, CANCELLED, "cancelled", actor=device)
            else:
                self._end(call, REJECTED, "rejected", actor=device)
        else:
            self._end(call, COMPLETED, "hangup", actor=device)

    def _ring_timeout(self, call):
        call.ring_timer = None
        if self._current(call):
            self._end(call, MISSED, "timeout")

    def _grace_over(self, call, side):
        call.grace_timers.pop(side, None)
        if self._current(call):
            self._end(call, COMPLETED, "disconnected")

    def _current(self, call):
        return self._calls.get(call.caller.id) is call

    def _end(self, call, outcome, reason, actor=None):
        """
        End C{call}: tell every device still in it but C{actor} (the device
        that ended it, if any), forget it, and record it.
        """
        self._cancel_timers(call)
        for user in (call.caller, call.callee):
            if self._calls.get(user.id) is call:
                del self._calls[user.id]
            self._media_buckets.pop(user.id, None)
            self._signal_buckets.pop(user.id, None)
        if call.state == RINGING:
            caller_device = call.devices[CALLER]
            if caller_device is not None and caller_device is not actor:
                self._send_control(caller_device, call, "reject", call.callee,
                                   call.caller, reason)
            for device in call.ringing:
                if device is not actor:
                    self._send_control(device, call, "cancel", call.caller,
                                       call.callee, reason)
        else:
            for side, device in call.devices.items():
                if device is not None and device is not actor:
                    self._send_hang_up(device, call, call.user(_OTHER[side]),
                                       call.user(side), reason)
        self._log_entry(call, outcome, reason)
        log.debug("Call {call} between {caller} and {callee}: {outcome}"
                  " ({reason})", call=call.id, caller=call.caller.username,
                  callee=call.callee.username, outcome=outcome, reason=reason)

    def _cancel_ring(self, call):
        if call.ring_timer is not None and call.ring_timer.active():
            call.ring_timer.cancel()
        call.ring_timer = None

    def _cancel_timers(self, call):
        self._cancel_ring(call)
        for timer in call.grace_timers.values():
            if timer.active():
                timer.cancel()
        call.grace_timers.clear()

    def _log_entry(self, call, outcome, reason):
        entry = CallLogEntry(
            call_id=call.id, kind=call.kind, caller=call.caller,
            callee=call.callee, started_at=_ms(call.started_at),
            answered_at=(None if call.answered_at is None
                         else _ms(call.answered_at)),
            ended_at=_ms(self.clock.seconds()), outcome=outcome, reason=reason)
        try:
            result = self._record(entry)
            if inspect.iscoroutine(result):
                result = Deferred.fromCoroutine(result)
        except Exception:
            log.failure("Recording call {call} failed", call=call.id)
            return
        if isinstance(result, Deferred):
            result.addErrback(lambda failure: log.failure(
                "Recording call {call} failed", failure, call=call.id))

    # Relaying.

    def _in_call(self, device):
        """
        The call C{device} may send signalling in, and its side. A device
        of a party that disconnected within the grace period takes its
        place.

        @raise Forbidden: the device is in no call.
        """
        user = device.user
        call = self._calls.get(user.id)
        if call is None:
            raise refuse(Forbidden, "you are not in a call: call frames go"
                         " only to the other party of your call",
                         "not_in_call")
        side = call.side_of(user.id)
        if call.state == RINGING:
            if (device is call.devices[CALLER] if side == CALLER
                    else device in call.ringing):
                return call, side
        elif call.devices[side] is device:
            return call, side
        elif call.devices[side] is None:
            timer = call.grace_timers.pop(side, None)
            if timer is not None and timer.active():
                timer.cancel()
            call.devices[side] = device
            return call, side
        raise refuse(Forbidden, "your call is on another of your devices",
                     "not_call_device")

    def _signal(self, device, frame):
        call, side = self._in_call(device)
        limit = self._config.max_signal_bytes
        if frame.ByteSize() > limit:
            raise refuse(PayloadTooLarge, f"call signalling frames are at most {limit}"
                         " bytes", "too_large")
        self._charge_signal(device.user.id)
        if call.state == RINGING:
            targets = call.ringing if side == CALLER else [call.devices[CALLER]]
        else:
            targets = [call.devices[_OTHER[side]]]
        self._relay(frame, call, side, targets)

    def _media(self, device, frame):
        """
        Relay a video or screen-share frame within an answered call. A
        refused one is dropped; its sender hears of it (an error frame) at
        most once a second: go-chat-web sends screen-share frames every
        60 ms, in a call or not, and a sender a little too fast should be
        slowed down, not closed as abusive for its refused frames.
        """
        try:
            call, side = self._in_call(device)
            if call.state != ACTIVE:
                raise refuse(Conflict, "video and screen-share frames need an"
                             " answered call", "call_not_active")
            self._charge_media(device.user.id, frame.ByteSize())
        except ChatError:
            now = self.clock.seconds()
            noticed_at = self._media_notices.get(device)
            if noticed_at is not None and now - noticed_at < 1:
                return
            self._media_notices[device] = now
            raise
        self._relay(frame, call, side, [call.devices[_OTHER[side]]])

    def _charge_signal(self, user_id):
        """
        Take a signalling frame from the sender's allowance.

        @raise TooManyRequests: over the allowance.
        """
        now = self.clock.seconds()
        bucket = self._signal_buckets.get(user_id)
        if bucket is None:
            rate = self._config.signal_frames_per_second
            bucket = self._signal_buckets[user_id] = _Bucket(4 * rate, rate, now)
        if bucket.refill(now) < 1 - _EPSILON:
            raise _too_many("call signalling frames arrive faster than allowed",
                            "signal_rate", 1)
        bucket.level -= 1

    def _charge_media(self, user_id, size):
        """
        Take a media frame of C{size} bytes from the sender's allowance.

        @raise TooManyRequests: over the allowance.
        """
        now = self.clock.seconds()
        buckets = self._media_buckets.get(user_id)
        if buckets is None:
            c = self._config
            buckets = self._media_buckets[user_id] = (
                _Bucket(c.media_frames_per_second, c.media_frames_per_second,
                        now),
                _Bucket(c.media_bytes_per_second, c.media_bytes_per_second,
                        now))
        frame_bucket, size_bucket = buckets
        if (frame_bucket.refill(now) < 1 - _EPSILON
                or size_bucket.refill(now) < size - _EPSILON):
            raise _too_many("video and screen-share frames arrive faster"
                            " than allowed; dropping some", "media_rate", 1)
        frame_bucket.level -= 1
        size_bucket.level -= size

    def _relay(self, frame, call, side, targets):
        sender, other = call.user(side), call.user(_OTHER[side])
        out = Message()
        out.CopyFrom(frame)
        out.avatar, out.fromUsername = sender.avatar, sender.username
        setattr(out, "from", sender.uuid)
        out.to = other.uuid
        out.messageType = 1
        for target in targets:
            if target is not None:
                self._deliver(target, out)

    # Frames out.

    def _send_control(self, device, call, action, sender, recipient,
                      reason=None):
        content = {"callId": call.id}
        if action == "dial":
            content["kind"] = call.kind
        if reason:
            content["reason"] = reason
        frame = Message(
            type=WEBRTC, contentType=_CODES[call.kind][action], messageType=1,
            to=recipient.uuid, fromUsername=sender.username,
            avatar=sender.avatar, content=json.dumps(content))
        setattr(frame, "from", sender.uuid)
        self._deliver(device, frame)

    def _send_hang_up(self, device, call, sender, recipient, reason):
        frame = Message(
            type=WEBRTC, contentType=HANG_UP, messageType=1,
            to=recipient.uuid, fromUsername=sender.username,
            avatar=sender.avatar,
            content=json.dumps({"callId": call.id, "reason": reason}))
        setattr(frame, "from", sender.uuid)
        self._deliver(device, frame)

    def _deliver(self, device, frame):
        try:
            self._send(device, frame)
        except Exception:
            log.failure("Sending a call frame to {user} failed",
                        user=device.user.username)
