"""
The JSON of the conversation routes (docs/api.md, "Conversations"): the
conversation list, history pages with cursors, read positions, search
results, recalls and edits, presence.
"""

from chatd.web import api as _api


def iso_time(ms):
    return _api.iso_time(ms)


def _optional_time(ms):
    return None if ms is None else iso_time(ms)


def marked_message_json(message):
    """
    A message as C{GET /message} gives it, plus C{editedAt} (or null) and
    C{recalled}.
    """
    data = _api.message_json(message)
    data["editedAt"] = _optional_time(message.edited_at)
    data["recalled"] = message.recalled_at is not None
    return data


def history_json(messages, limit):
    """
    A page of history, oldest first, with the cursors of the pages around
    it: C{before} (older; null when this page is the oldest) and C{after}
    (the newest id here, to poll for newer ones).
    """
    return {
        "messages": [marked_message_json(m) for m in messages],
        "before": messages[0].id if messages and len(messages) >= limit
        else None,
        "after": messages[-1].id if messages else None,
    }


def conversation_json(summary):
    last = None
    if summary.last_id:
        last = {
            "id": summary.last_id,
            "fromUuid": summary.last_sender_uuid,
            "fromUsername": summary.last_sender_username,
            "content": summary.last_content,
            "contentType": summary.last_content_type,
            "url": summary.last_url,
            "createAt": _optional_time(summary.last_created_at),
            "editedAt": _optional_time(summary.last_edited_at),
            "recalled": summary.last_recalled_at is not None,
        }
    data = {
        "uuid": summary.uuid,
        "messageType": summary.kind,
        "name": summary.name,
        "avatar": summary.avatar,
        "lastMessage": last,
        "unread": summary.unread,
        "lastReadId": summary.last_read_id,
        "cursor": summary.cursor,
    }
    if summary.kind == 1:
        data["peerReadId"] = summary.peer_read_id
    return data


def conversations_json(page, limit):
    return {
        "conversations": [conversation_json(s) for s in page],
        "next": page[-1].cursor if len(page) >= limit else None,
    }


def read_json(uuid, position):
    return {"uuid": uuid, "lastReadId": position.last_read_id,
            "unread": position.unread}


def search_json(messages, limit):
    return {
        "messages": [marked_message_json(m) for m in messages],
        "next": messages[-1].id if len(messages) >= limit else None,
    }


def change_json(change, recalled):
    return {
        "id": change.message_id,
        "messageType": change.message_type,
        "from": change.from_uuid,
        "to": change.to_uuid,
        "content": change.content,
        "recalled": recalled,
        "editedAt": None if recalled else iso_time(change.at),
        "at": iso_time(change.at),
    }


def presence_json(entries):
    return [{"uuid": user.uuid, "username": user.username, "online": online,
             "lastSeen": _optional_time(last_seen)}
            for user, online, last_seen in entries]
