"""Password login for a private deployment: salted scrypt hashes in `ASSISTANT_USERS`.

A self-hoster who wants the chat (and its history) behind a login lists the people allowed in
one environment variable, `ASSISTANT_USERS="alice:scrypt:...,bob:scrypt:..."`, each entry made by
`python -m assistant hash-password alice`. Plain-text passwords are refused: the variable may end
up in a dashboard, a shell history or a backup. Hashes are scrypt (memory-hard, in the standard
library) with a random salt; checking compares in constant time, and an unknown user name costs
the same hash as a known one, so timing says nothing about which names exist. Error messages
never repeat the variable's value (a mistyped entry may be a real password).

Stdlib only: `assistant.config` validates the variable with `parse_users`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence

from assistant.errors import ConfigError

SCHEME = "scrypt"
# 16 MiB and ~0.1 s a check on a small CPU: slow for guessing, cheap for one login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_PASSWORD_BYTES = 1024  # longer input is refused before hashing (no cost amplification)
NAME = re.compile(r"^[^\s:,]{1,64}$")
# At most two checks hash at once (each holds 16 MiB): a burst of logins queues instead of
# pushing a 512 MB host out of memory.
_HASHING = threading.BoundedSemaphore(2)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                              maxmem=256 * n * r + (1 << 20))


def hash_password(password: str) -> str:
    """A storable hash of `password`: `scrypt:N:r:p:salt:key` (URL-safe base64, no `$` to escape)."""
    if not password:
        raise ValueError("the password is empty")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{SCHEME}:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{_b64(salt)}:{_b64(key)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split(":")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or n * r > 2**22:
        return None
    if len(salt) < 8 or len(key) < 16:
        return None
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    parsed = _parse_hash(encoded)
    if parsed is None or len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    n, r, p, salt, key = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), key)


def parse_users(raw: str | None, variable: str = "ASSISTANT_USERS") -> tuple[tuple[str, str], ...]:
    """`name:hash` entries separated by commas or new lines; raises ConfigError naming the entry."""
    users: dict[str, str] = {}
    for number, entry in enumerate((e.strip() for e in re.split(r"[,\n]", raw or "")), start=1):
        if not entry:
            continue
        name, sep, encoded = entry.partition(":")
        name = name.strip()
        if not sep or not NAME.match(name):
            raise ConfigError(f"{variable}: entry {number} is not NAME:HASH (names have no spaces, ':' or ',')")
        if _parse_hash(encoded.strip()) is None:
            raise ConfigError(f"{variable}: the entry for {name!r} is not a password hash; make one with"
                              f" `python -m assistant hash-password {name}` (plain passwords are not accepted)")
        if name in users:
            raise ConfigError(f"{variable}: {name!r} is listed twice")
        users[name] = encoded.strip()
    return tuple(users.items())


class PasswordChecker:
    """Checks a login against the configured users; unknown names cost a hash too."""

    def __init__(self, users: Mapping[str, str] | tuple[tuple[str, str], ...]) -> None:
        self._users = dict(users)
        self._decoy: str | None = None  # made on the first unknown name (not at start-up)

    def __bool__(self) -> bool:
        return bool(self._users)

    def check(self, username: str, password: str) -> str | None:
        """The user's name if the password is right, else None (blocking: run it off the event loop)."""
        name = (username or "").strip()
        encoded = self._users.get(name)
        if encoded is None and self._decoy is None:
            self._decoy = hash_password(secrets.token_urlsafe(16))
        # An unknown name is checked against the decoy, so a miss takes as long as a wrong password.
        ok = verify_password(password or "", encoded or self._decoy or "")
        return name if ok and encoded is not None else None


ADDRESS_FACTOR = 4  # an address may fail this many times the per-user limit (people share a NAT)
MAX_TRACKED = 10_000  # names and addresses remembered at most (oldest forgotten first): bounded memory


class LoginLimiter:
    """Failed sign-ins counted per user name and per client address over a sliding window.

    After `max_failures` failures for one name within `window` seconds, that name is refused
    until the oldest of them is `window` old; an address gets ADDRESS_FACTOR times as many (one
    guesser trying many names). Refused attempts are not hashed, so a guessing run also costs
    the host nothing. An attempt counts as a failure from the moment it starts (many parallel
    guesses cannot slip through before the first result); a success takes it back and clears
    that name's count. Unknown names count like known ones: the limit says nothing about which
    names exist. `max_failures=0` turns the limiter off.
    """

    def __init__(self, max_failures: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque()
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def begin(self, name: str, address: str) -> tuple[str, float] | None:
        """Start an attempt: None (go ahead; it counts as failed until `succeeded`) or, when over a
        limit, (`"user"` or `"address"`, seconds until the next attempt may be made)."""
        if not self.max_failures:
            return None
        now = self.clock()
        keys = {"user": ("user", (name or "").strip()[:64]), "address": ("address", address or "unknown")}
        limits = {"user": self.max_failures, "address": self.max_failures * ADDRESS_FACTOR}
        with self._lock:
            for kind, key in keys.items():
                times = self._recent(key, now)
                if len(times) >= limits[kind]:
                    return kind, max(1.0, times[-limits[kind]] + self.window - now)
            for key in keys.values():
                self._failures[key].append(now)
        return None

    def succeeded(self, name: str, address: str) -> None:
        """The attempt begun for `name` from `address` was right: clear the name, take the attempt back."""
        if not self.max_failures:
            return
        with self._lock:
            self._failures.pop(("user", (name or "").strip()[:64]), None)
            times = self._failures.get(("address", address or "unknown"))
            if times:
                times.pop()


def retry_message(kind: str, seconds: float) -> str:
    """What a refused sign-in is told: why, and when to try again."""
    whom = "for this user name" if kind == "user" else "from your network address"
    wait = f"{math.ceil(seconds / 60)} min" if seconds >= 90 else f"{math.ceil(seconds)} s"
    return f"Too many failed sign-in attempts {whom}; try again in {wait}."


def check_login_settings(users: Sequence[tuple[str, str]], allowed_origins: Sequence[str], auth_secret: str | None,
                         cookie_samesite: str = "lax") -> None:
    """With users configured, refuse settings that would not start or would not protect anything
    (CHAINLIT_AUTH_SECRET and CHAINLIT_COOKIE_SAMESITE, as read into Settings)."""
    if not users:
        return
    if not (auth_secret or "").strip():
        raise ConfigError("ASSISTANT_USERS needs CHAINLIT_AUTH_SECRET to sign the login cookie: "
                          "make one with `chainlit create-secret` and set it")
    if "*" in allowed_origins and cookie_samesite == "none":
        raise ConfigError("With a login and CHAINLIT_COOKIE_SAMESITE=none, ALLOWED_ORIGINS=* would let any website "
                          "read your users' conversations: list the sites that embed the chat in ALLOWED_ORIGINS")
