"""
Input rules shared by the handlers: user names, passwords, nicknames,
e-mail addresses, group names and notices, message ids. Each check returns
the clean value or raises L{BadRequest} naming the field.
"""

import re
import unicodedata

from chatd.errors import BadRequest
from chatd.stores import ID_MAX

USERNAME_MIN = 3
USERNAME_MAX = 32
PASSWORD_MAX = 1024
NICKNAME_MAX = 64
EMAIL_MAX = 255
GROUP_NAME_MAX = 64
GROUP_NOTICE_MAX = 1024

# Letters and digits of any script, '_', '.', '-'; starting with a letter,
# digit or '_'.
_USERNAME = re.compile(r"^\w[\w.-]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def message_id(value, field="id"):
    """
    @return: C{value}, a message id.
    @raise BadRequest: not a positive integer the database can hold.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= ID_MAX:
        raise BadRequest(f"{field}: must be a message id")
    return value


def _printable(value, field):
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")
           for c in value):
        raise BadRequest(f"{field}: must not contain control characters")


def username(value, field="username"):
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string")
    value = unicodedata.normalize("NFC", value.strip())
    if not USERNAME_MIN <= len(value) <= USERNAME_MAX:
        raise BadRequest(
            f"{field}: must be {USERNAME_MIN} to {USERNAME_MAX} characters")
    if not _USERNAME.match(value):
        raise BadRequest(
            f"{field}: only letters, digits, '_', '.' and '-', starting with"
            " a letter, digit or '_'")
    return value


def password(value, min_length, field="password"):
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string")
    if len(value) < min_length:
        raise BadRequest(f"{field}: must be at least {min_length} characters")
    if len(value) > PASSWORD_MAX:
        raise BadRequest(f"{field}: must be at most {PASSWORD_MAX} characters")
    return value


def text(value, field, maximum, required=False):
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"{field}: must not be empty")
    if len(value) > maximum:
        raise BadRequest(f"{field}: must be at most {maximum} characters")
    _printable(value.replace("\n", "").replace("\t", ""), field)
    return value


def nickname(value, field="nickname"):
    return text(value, field, NICKNAME_MAX)


def email(value, field="email"):
    value = text(value, field, EMAIL_MAX)
    if value and not _EMAIL.match(value):
        raise BadRequest(f"{field}: is not an e-mail address")
    return value


def group_name(value, field="name"):
    return text(value, field, GROUP_NAME_MAX, required=True)


def group_notice(value, field="notice"):
    return text(value, field, GROUP_NOTICE_MAX)
