"""Access control and secrets: who may embed the widget, who may log in, who may read what, and
that no secret from the environment ever reaches a log line or a message.

Passwords and login settings are checked in process; per-user history and ratings both on the
data layer's methods and through Chainlit's real HTTP routes (two users logged in with the real
`/login`); CORS, the Socket.IO handshake and secret hygiene against a real `chainlit run` server
in a subprocess whose whole output is read at the end.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import chainlit as cl
import chainlit.data as cl_data
import pytest
from chainlit.auth import require_login
from chainlit.config import FILES_DIRECTORY
from chainlit.config import config as cl_config
from chainlit.context import ChainlitContext, context_var
from chainlit.server import app as server_app
from chainlit.session import WebsocketSession
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.user import PersistedUser
from starlette.testclient import TestClient

from assistant import auth
from assistant.__main__ import main as cli_main
from assistant.auth import PasswordChecker, hash_password, parse_users, verify_password
from assistant.config import Settings
from assistant.retrieval.errors import ConfigError
from assistant.retrieval.store import Store
from assistant.ui.datalayer import AccessDenied, ChatDataLayer, acting_as
from assistant.ui.login import enable_password_login, login_callback
from tests.conftest import make_settings
from tests.fakes.installed_app import install_for_tests
from tests.test_datalayer import SOURCES, rows, step

ALICE_PASSWORD = "alice-Pw-" + uuid.uuid4().hex
BOB_PASSWORD = "bob-Pw-" + uuid.uuid4().hex
ALICE_HASH = hash_password(ALICE_PASSWORD)
BOB_HASH = hash_password(BOB_PASSWORD)
USERS = f"alice:{ALICE_HASH},bob:{BOB_HASH}"


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    """The app's routes, CORS and user scope on Chainlit's server, as `chainlit run` installs them."""
    install_for_tests()


# -- passwords -----------------------------------------------------------------------------------


def test_password_hashes_are_salted_scrypt_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    again = hash_password(ALICE_PASSWORD)
    assert ALICE_HASH.startswith("scrypt:16384:8:1:") and again != ALICE_HASH  # a fresh salt each time
    assert ALICE_PASSWORD not in ALICE_HASH and "$" not in ALICE_HASH  # nothing for a shell to expand
    compared: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert verify_password(ALICE_PASSWORD, ALICE_HASH) and verify_password(ALICE_PASSWORD, again)
    assert not verify_password(ALICE_PASSWORD + "x", ALICE_HASH)
    assert len(compared) == 3
    assert not verify_password(ALICE_PASSWORD, ALICE_HASH.replace("scrypt:16384", "scrypt:16385"))  # tampered
    assert not verify_password(ALICE_PASSWORD, ALICE_PASSWORD)  # a plain "hash"
    assert not verify_password("x" * 2000, ALICE_HASH)  # refused before any hashing
    with pytest.raises(ValueError):
        hash_password("")


def test_an_unknown_name_costs_a_hash_like_a_wrong_password(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = PasswordChecker(parse_users(USERS))
    assert checker.check("alice", ALICE_PASSWORD) == "alice" and checker.check(" bob ", BOB_PASSWORD) == "bob"
    assert checker.check("alice", BOB_PASSWORD) is None and checker.check("", "") is None
    checker.check("nobody", "x")  # makes the decoy once
    hashed: list[int] = []
    real = auth._scrypt
    monkeypatch.setattr(auth, "_scrypt", lambda *a: hashed.append(1) or real(*a))
    assert checker.check("alice", "wrong") is None
    assert checker.check("mallory", ALICE_PASSWORD) is None
    assert len(hashed) == 2  # one scrypt each: timing does not tell which names exist


def test_users_setting_refuses_plain_passwords_without_repeating_them(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASSISTANT_USERS", USERS)
    s = Settings.from_env()
    assert s.users == (("alice", ALICE_HASH), ("bob", BOB_HASH))
    plain = "Tr0ub4dor&3-" + uuid.uuid4().hex
    for bad, needle in ((f"alice:{plain}", "hash-password alice"), (f"{plain}", "NAME:HASH"),
                        (f"alice:{ALICE_HASH},alice:{BOB_HASH}", "twice"), (f"al ice:{ALICE_HASH}", "NAME:HASH")):
        clean_env.setenv("ASSISTANT_USERS", bad)
        with pytest.raises(ConfigError, match=needle) as info:
            Settings.from_env()
        assert plain not in str(info.value) and ALICE_HASH not in str(info.value)
    assert parse_users("\n alice:" + ALICE_HASH + " ,\n") == (("alice", ALICE_HASH),)


def test_settings_repr_shows_no_secret() -> None:
    s = make_settings(database_url="postgresql://u:DbPw-123456@db/x", openai_api_key="sk-Key-123456",
                      hf_token="hf_Tok-123456", embedding_api_key="Emb-123456", users=parse_users(USERS))
    text = repr(s)
    for secret in ("DbPw-123456", "sk-Key-123456", "hf_Tok-123456", "Emb-123456", ALICE_HASH):
        assert secret not in text


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSISTANT_USERS", "a broken value")  # the command must not need a valid configuration
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert cli_main(["hash-password", "carol"]) == 0
    out, err = capsys.readouterr()
    name, _, encoded = out.strip().partition(":")
    assert name == "carol" and verify_password("correct horse battery", encoded)
    assert "correct horse" not in out + err and "ASSISTANT_USERS" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli_main(["hash-password", "carol"]) == 2
    assert cli_main(["hash-password", "bad:name"]) == 2


# -- turning the login on ------------------------------------------------------------------------


@pytest.fixture
def login_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The password login registered for alice and bob (undone afterwards: the app is open)."""
    secret = "test-auth-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", secret)  # Chainlit signs with the one in the environment
    before = cl_config.code.password_auth_callback
    settings = make_settings(users=parse_users(USERS), chainlit_auth_secret=secret)
    assert enable_password_login(settings)
    yield settings
    cl_config.code.password_auth_callback = before


def test_without_users_the_chat_stays_open() -> None:
    assert cl_config.code.password_auth_callback is None and not require_login()  # as the app module left it
    assert enable_password_login(make_settings()) is False and not require_login()


def test_users_need_an_auth_secret_and_named_origins_for_cross_site_cookies() -> None:
    settings = make_settings(users=parse_users(USERS))
    with pytest.raises(ConfigError, match="CHAINLIT_AUTH_SECRET"):
        enable_password_login(settings)
    with pytest.raises(ConfigError, match="ALLOWED_ORIGINS"):
        enable_password_login(make_settings(users=settings.users, chainlit_auth_secret="s",
                                            chainlit_cookie_samesite="none"))
    assert cl_config.code.password_auth_callback is None


def test_login_limiter_counts_failures_per_name_and_per_address() -> None:
    from assistant.auth import ADDRESS_FACTOR, LoginLimiter, retry_message

    now = [1000.0]
    limiter = LoginLimiter(3, 900, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.begin("alice", "10.0.0.1") is None  # each counts as failed until it succeeds
        now[0] += 10
    kind, wait = limiter.begin(" alice ", "10.0.0.2")  # the same name from anywhere
    assert kind == "user" and wait == 900 - 30
    assert retry_message(kind, wait) == "Too many failed sign-in attempts for this user name; try again in 15 min."
    assert limiter.begin("bob", "10.0.0.1") is None  # other names are not locked by alice's
    limiter.succeeded("bob", "10.0.0.1")
    now[0] += 870.5  # alice's first failure is now 900 s old: one more try
    assert limiter.begin("alice", "10.0.0.1") is None
    assert limiter.begin("alice", "10.0.0.1")[0] == "user"

    # one address trying many names: ADDRESS_FACTOR times the per-name limit, then refused for every name
    spray = LoginLimiter(2, 60, clock=lambda: now[0])
    for n in range(2 * ADDRESS_FACTOR):
        assert spray.begin(f"user{n}", "203.0.113.7") is None
    kind, wait = spray.begin("alice", "203.0.113.7")
    assert kind == "address" and retry_message(kind, wait) == (
        "Too many failed sign-in attempts from your network address; try again in 60 s.")
    assert spray.begin("alice", "198.51.100.1") is None  # ... but not from elsewhere
    spray.succeeded("alice", "198.51.100.1")  # a success clears the name
    assert spray.begin("alice", "198.51.100.1") is None and spray.begin("alice", "198.51.100.1") is None
    assert spray.begin("alice", "198.51.100.1")[0] == "user"
    assert LoginLimiter(0, 60).begin("alice", "x") is None  # 0: off


async def test_login_callback_logs_neither_name_nor_password(caplog: pytest.LogCaptureFixture) -> None:
    login = login_callback(PasswordChecker(parse_users(USERS)))
    user = await login("alice", ALICE_PASSWORD)
    assert user is not None and user.identifier == "alice"
    typed = "my-secret-" + uuid.uuid4().hex  # someone typing the password into the name field
    with caplog.at_level(logging.DEBUG):
        assert await login(typed, ALICE_PASSWORD) is None
        assert await login("alice", typed) is None
    assert "login refused" in caplog.text and typed not in caplog.text and ALICE_PASSWORD not in caplog.text


# -- per-user history and ratings: the data layer ---------------------------------------------------


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(make_settings(database_url=database_url, data_dir=tmp_path), announce=False)
    yield s
    s.close()


def user_session(made: list[WebsocketSession], user: PersistedUser | None) -> WebsocketSession:
    """A chat session of `user`, made current (Chainlit's context), as if its first message was sent."""
    session = WebsocketSession(id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=AsyncMock(),
                               emit_call=AsyncMock(), user_env={}, client_type="webapp", user=user)
    FILES_DIRECTORY.mkdir(exist_ok=True)
    session.has_first_interaction = True
    context_var.set(ChainlitContext(session))
    made.append(session)
    return session


async def converse(dl: ChatDataLayer, made: list[WebsocketSession], user: PersistedUser) -> dict[str, Any]:
    """One question and answer in `user`'s own session, with a source element and a thumbs-up."""
    thread = user_session(made, user).thread_id
    await dl.update_thread(thread, name=f"{user.identifier}'s question", user_id=user.id)
    question = step(thread, "user_message", f"{user.identifier} asks how to deploy")
    answer = step(thread, "assistant_message", "Wait [1].",
                  metadata={"question": question["output"], "answer": "Wait [1].", "sources": SOURCES})
    await dl.create_step(question)
    await dl.create_step(answer)
    element = cl.Text(name="[1]", content="passage", display="side", for_id=answer["id"], thread_id=thread)
    await dl.create_element(element)
    feedback = await dl.upsert_feedback(Feedback(forId=answer["id"], value=1, comment="good", threadId=thread))
    return {"thread": thread, "answer": answer["id"], "element": element.id, "feedback": feedback}


async def two_users(dl: ChatDataLayer, made: list[WebsocketSession]) -> tuple[Any, Any, dict, dict]:
    alice = await dl.get_user("alice") or await dl.create_user(cl.User(identifier="alice"))
    bob = await dl.get_user("bob") or await dl.create_user(cl.User(identifier="bob"))
    return alice, bob, await converse(dl, made, alice), await converse(dl, made, bob)


def snapshot(store: Store, thread: str) -> dict[str, Any]:
    """Everything stored for one thread, to show that an attempt changed nothing."""
    return {table: rows(store, f"SELECT * FROM {table} WHERE {col} = %s ORDER BY 1", thread)
            for table, col in (("chat_threads", "id"), ("chat_steps", "thread_id"),
                               ("chat_elements", "thread_id"), ("chat_feedback", "thread_id"))}


@pytest.mark.slow
async def test_the_data_layer_keeps_each_users_threads_and_ratings_to_themselves(store: Store,
                                                                                 sessions: list) -> None:
    dl = ChatDataLayer(lambda: store)
    alice, bob, a, b = await two_users(dl, sessions)
    bobs = snapshot(store, b["thread"])
    assert [r["user_identifier"] for r in bobs["chat_threads"]] == ["bob"] and len(bobs["chat_feedback"]) == 1

    user_session(sessions, alice)  # from here on, alice is acting
    mine = await dl.get_thread(a["thread"])
    assert mine is not None and mine["userIdentifier"] == "alice" and len(mine["steps"]) == 2
    assert await dl.get_thread(b["thread"]) is None
    listed = await dl.list_threads(Pagination(first=10), ThreadFilter(userId=bob.id))
    assert listed.data == []
    listed = await dl.list_threads(Pagination(first=10), ThreadFilter())
    assert [t["id"] for t in listed.data] == [a["thread"]]
    assert await dl.get_element(b["thread"], b["element"]) is None
    assert await dl.get_favorite_steps(bob.id) == []

    await dl.update_thread(b["thread"], name="renamed by alice")
    await dl.update_thread(b["thread"], user_id=alice.id)  # taking it over
    await dl.update_thread(a["thread"], user_id=bob.id)  # giving hers away
    await dl.delete_thread(b["thread"])
    await dl.delete_element(b["element"], b["thread"])
    await dl.delete_element(b["element"])
    await dl.delete_step(b["answer"])
    await dl.create_step(step(b["thread"], "assistant_message", "planted by alice"))
    await dl.update_step(step(a["thread"], "assistant_message", "overwritten by alice") | {"id": b["answer"]})
    with pytest.raises(AccessDenied):
        await dl.upsert_feedback(Feedback(forId=b["answer"], value=0, comment="spoiled", threadId=a["thread"]))
    with pytest.raises(AccessDenied):
        await dl.upsert_feedback(Feedback(id=b["feedback"], forId=b["answer"], value=0))
    assert await dl.delete_feedback(b["feedback"]) is False
    assert snapshot(store, b["thread"]) == bobs
    assert await dl.get_thread_author(a["thread"]) == "alice"

    user_session(sessions, bob)  # bob still does everything with his own
    assert (await dl.get_thread(b["thread"]))["name"] == "bob's question"  # type: ignore[index]
    assert await dl.upsert_feedback(Feedback(id=b["feedback"], forId=b["answer"], value=0)) == b["feedback"]
    assert await dl.delete_feedback(b["feedback"]) is True
    await dl.delete_thread(b["thread"])
    assert await dl.get_thread(b["thread"]) is None and snapshot(store, b["thread"])["chat_steps"] == []
    with acting_as("bob"):  # an HTTP request of bob's: the request's user wins over any session
        assert await dl.get_thread(a["thread"]) is None


async def test_without_a_signed_in_user_nothing_is_restricted(store: Store, sessions: list) -> None:
    """No login configured (or Chainlit's own connect-time check): the data layer does not filter."""
    dl = ChatDataLayer(lambda: store)
    _, _, a, b = await two_users(dl, sessions)
    user_session(sessions, None)
    assert await dl.get_thread(b["thread"]) is not None
    assert {t["id"] for t in (await dl.list_threads(Pagination(first=10), ThreadFilter())).data} == {a["thread"],
                                                                                                      b["thread"]}


# -- per-user history and ratings: Chainlit's HTTP routes -------------------------------------------


@pytest.fixture
def login_server(login_on: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> ChatDataLayer:
    """Chainlit's app with the login on and our data layer on a fresh database."""
    dl = ChatDataLayer(lambda: store)
    monkeypatch.setattr(cl_data, "_data_layer", dl)
    monkeypatch.setattr(cl_data, "_data_layer_initialized", True)
    return dl


def logged_in(name: str, password: str) -> TestClient:
    client = TestClient(server_app)
    response = client.post("/login", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    assert client.cookies.get("access_token")
    return client


@pytest.mark.slow
async def test_http_routes_show_and_change_only_your_own_history(login_server: ChatDataLayer, store: Store,
                                                                 sessions: list) -> None:
    anonymous = TestClient(server_app)
    assert anonymous.post("/login", data={"username": "alice", "password": BOB_PASSWORD}).status_code == 401
    assert anonymous.post("/project/threads", json={"pagination": {"first": 20}, "filter": {}}).status_code == 401
    alice_http, bob_http = logged_in("alice", ALICE_PASSWORD), logged_in("bob", BOB_PASSWORD)
    _, bob, a, b = await two_users(login_server, sessions)  # the users the logins created
    bobs = snapshot(store, b["thread"])

    listed = alice_http.post("/project/threads", json={"pagination": {"first": 20}, "filter": {"userId": bob.id}})
    assert listed.status_code == 200 and [t["id"] for t in listed.json()["data"]] == [a["thread"]]
    assert alice_http.get(f"/project/thread/{a['thread']}").json()["userIdentifier"] == "alice"
    assert alice_http.get(f"/project/thread/{b['thread']}").status_code == 401
    assert alice_http.get(f"/project/thread/{b['thread']}/element/{b['element']}").status_code == 401
    assert alice_http.put("/project/thread", json={"threadId": b["thread"], "name": "mine now"}).status_code == 401
    assert alice_http.request("DELETE", "/project/thread", json={"threadId": b["thread"]}).status_code == 401
    # Chainlit checks nothing on /feedback: the data layer refuses (the route turns that into a 500).
    spoiled = alice_http.put("/feedback", json={"sessionId": "x", "feedback": {
        "forId": b["answer"], "value": 0, "comment": "spoiled", "threadId": a["thread"]}})
    assert spoiled.status_code == 500 and "not in one of your conversations" in spoiled.text
    overwritten = alice_http.put("/feedback", json={"sessionId": "x", "feedback": {
        "id": b["feedback"], "forId": b["answer"], "value": 0}})
    assert overwritten.status_code == 500
    alice_http.request("DELETE", "/feedback", json={"feedbackId": b["feedback"]})  # answers success regardless
    assert anonymous.put("/feedback", json={"sessionId": "x", "feedback": {
        "forId": b["answer"], "value": 0}}).status_code == 401
    assert snapshot(store, b["thread"]) == bobs

    # bob does all of it with his own thread and rating
    listed = bob_http.post("/project/threads", json={"pagination": {"first": 20}, "filter": {}})
    assert [t["id"] for t in listed.json()["data"]] == [b["thread"]]
    assert bob_http.get(f"/project/thread/{b['thread']}/element/{b['element']}").json()["name"] == "[1]"
    rated = bob_http.put("/feedback", json={"sessionId": "x", "feedback": {
        "id": b["feedback"], "forId": b["answer"], "value": 0, "comment": "changed my mind"}})
    assert rated.status_code == 200 and rated.json()["feedbackId"] == b["feedback"]
    assert bob_http.put("/project/thread", json={"threadId": b["thread"], "name": "renamed"}).status_code == 200
    bob_http.request("DELETE", "/feedback", json={"feedbackId": b["feedback"]})
    assert rows(store, "SELECT id FROM chat_feedback WHERE thread_id = %s", b["thread"]) == []
    assert bob_http.request("DELETE", "/project/thread", json={"threadId": b["thread"]}).status_code == 200
    assert rows(store, "SELECT id FROM chat_threads WHERE id = %s", b["thread"]) == []
    assert len(rows(store, "SELECT id FROM chat_feedback WHERE thread_id = %s", a["thread"])) == 1  # alice's stays


# -- secrets never reach logs or messages ----------------------------------------------------------

DB_PASSWORD = "Db-Pw@" + uuid.uuid4().hex[:12]  # an '@' people forget to percent-encode
PROVIDER_KEY = "sk-Key-" + uuid.uuid4().hex


def pieces(secret: str) -> list[str]:
    """The secret and every part of it a parser might split off (at @ : / %)."""
    import re

    return [secret] + [p for p in re.split(r"[@:/%]", secret) if len(p) >= 4]


def assert_secret_free(text: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in pieces(secret):
            assert piece not in text, f"{piece!r} leaked in: {text[:2000]}"


@pytest.mark.parametrize("url", [
    f"postgresql://assistant:{DB_PASSWORD}@127.0.0.1:1/docs",  # unencoded '@': libpq reads part as the host
    "postgresql://assistant:{}@127.0.0.1:1/docs".format(DB_PASSWORD.replace("@", "%40")),  # refused connection
    "postgresql://assistant:{}%zz@127.0.0.1:1/docs".format(DB_PASSWORD.replace("@", "")),  # a bad % escape
    f"host=127.0.0.1 port=1 user=assistant password={DB_PASSWORD.replace('@', '')}",
])
def test_database_password_stays_out_of_errors_logs_and_commands(
        url: str, clean_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.health import HealthChecker, install_healthz
    from assistant.retrieval.errors import DatabaseError
    from assistant.ui.runtime import Runtime

    password = DB_PASSWORD
    settings = make_settings(database_url=url, data_dir=tmp_path, db_connect_timeout=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseError) as info:
        Store.open(settings, announce=False)
    message = str(info.value)
    assert "PostgreSQL" in message or "DATABASE_URL" in message
    assert_secret_free(message + caplog.text, password, password.replace("@", ""))

    clean_env.setenv("DATABASE_URL", url)
    clean_env.setenv("DB_CONNECT_TIMEOUT", "1")
    clean_env.setenv("ASSISTANT_DATA_DIR", str(tmp_path))
    assert cli_main(["db", "status"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and ("PostgreSQL" in err or "DATABASE_URL" in err)
    assert_secret_free(out + err, password, password.replace("@", ""))

    from fastapi import FastAPI

    health_app = FastAPI()
    runtime = Runtime(settings)
    install_healthz(health_app, HealthChecker(runtime))
    runtime.start_warmup().join(30)
    response = TestClient(health_app).get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "error"
    assert_secret_free(response.text + caplog.text, password, password.replace("@", ""))


@pytest.mark.parametrize("password", ["p", "ort", "a1", "s3cret"])
def test_a_short_password_is_redacted_as_a_word_never_inside_other_words(password: str, tmp_path: Path) -> None:
    """With a one-letter password the message said "***ort 1 failed": a short secret is taken out
    where it stands alone (where a driver would quote it), never out of the middle of a word."""
    from assistant.retrieval.database import redact
    from assistant.retrieval.errors import DatabaseError

    url = f"postgresql://assistant:{password}@127.0.0.1:1/docs"
    with pytest.raises(DatabaseError) as info:
        Store.open(make_settings(database_url=url, data_dir=tmp_path, db_connect_timeout=1), announce=False)
    message = str(info.value)
    assert "port 1 failed" in message and "***" not in message, message
    quoted = f'invalid value "{password}" for option; password={password}, ({password}) {password}'
    assert redact(quoted, url) == 'invalid value "***" for option; password=***, (***) ***'
    assert redact(f"x{password}y sport_{password} {password}2", url) == f"x{password}y sport_{password} {password}2"


def test_a_long_secret_is_redacted_even_when_glued_to_other_text() -> None:
    from assistant.retrieval.errors import redact_secrets

    key = "sk-" + uuid.uuid4().hex
    assert redact_secrets(f"Bearer{key}x and {key}", [key, None, ""]) == "Bearer***x and ***"


def test_db_status_of_a_working_database_shows_no_password(database_url: str, tmp_path: Path,
                                                           clean_env: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from psycopg import conninfo

    clean_env.setenv("DATABASE_URL", conninfo.make_conninfo(database_url, password=DB_PASSWORD))  # trusted: unused
    clean_env.setenv("ASSISTANT_DATA_DIR", str(tmp_path))
    clean_env.setenv("ASSISTANT_SAMPLE_DOCS", "0")
    for args in (["db", "status"], ["db", "status", "--json"]):
        assert cli_main(args) == 0
        out, err = capsys.readouterr()
        assert "pgvector" in out
        assert_secret_free(out + err, DB_PASSWORD)


@pytest.mark.slow
def test_embedding_keys_stay_out_of_errors_and_logs(embedding_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A provider that echoes the key in its 401/400 body (some do) must not get it shown or logged."""
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.errors import EmbeddingError

    echo = {"error": {"message": f"Invalid API key: {PROVIDER_KEY}"}}
    keyed_url = embedding_server.openai_url.replace("http://", f"http://me:{PROVIDER_KEY}@") + f"?key={PROVIDER_KEY}"
    for provider, changes in (("hf", {"hf_token": PROVIDER_KEY}), ("openai", {"embedding_api_key": PROVIDER_KEY}),
                              ("openai", {"embedding_api_url": keyed_url})):  # a key in the URL itself
        embedder = make_embedder(embedding_server.settings(provider, query_embedding_deadline=1.0, **changes))
        assert_secret_free(repr(embedder), PROVIDER_KEY)  # the runtime logs it at start-up
        try:
            for code in (401, 400, 500):  # 500: retried and logged until the deadline, then raised
                embedding_server.script(*[("status", code, echo)] * 100)
                with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingError) as info:
                    embedder.embed_query("how do I deploy?")
                assert_secret_free(str(info.value) + caplog.text, PROVIDER_KEY)
                while embedding_server.pending_faults:
                    embedding_server.next_fault()
        finally:
            embedder.close()
    assert any(r.headers.get("authorization") == f"Bearer {PROVIDER_KEY}" for r in embedding_server.requests)


@pytest.mark.slow
async def test_llm_key_stays_out_of_errors_and_logs(llm_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    from assistant.chat.llm import LLMClient, LLMError

    client = LLMClient(llm_server.settings(openai_api_key=PROVIDER_KEY))
    try:
        for code in (401, 400, 403, 404, 500):
            llm_server.script(("status", code, f"Incorrect API key provided: {PROVIDER_KEY}"))
            with caplog.at_level(logging.DEBUG), pytest.raises(LLMError) as info:
                async for _ in client.stream_chat([{"role": "user", "content": "hi"}], max_tokens=10):
                    pass
            assert_secret_free(str(info.value) + info.value.detail + caplog.text, PROVIDER_KEY)
    finally:
        await client.aclose()
    keyed_url = f"http://me:{PROVIDER_KEY}@127.0.0.1:9/v1?api_key={PROVIDER_KEY}"  # nothing listens on port 9
    client = LLMClient(llm_server.settings(openai_base_url=keyed_url))
    try:
        with pytest.raises(LLMError, match="could not be reached") as info:
            async for _ in client.stream_chat([{"role": "user", "content": "hi"}], max_tokens=10):
                pass
        assert "http://127.0.0.1:9/v1" in info.value.detail  # for the operator's log, not the reader
        assert "127.0.0.1" not in str(info.value)
        assert_secret_free(str(info.value) + info.value.detail, PROVIDER_KEY)
    finally:
        await client.aclose()


def test_ingest_with_a_rejected_token_prints_no_token(embedding_server: Any, database_url: str, tmp_path: Path,
                                                      clean_env: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Deploying\n\nPush to main and wait for the first deploy to finish.\n")
    embedding_server.require_token = "the-right-token"
    for name, value in {"DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
                        "ASSISTANT_SAMPLE_DOCS": "0", "EMBEDDING_PROVIDER": "hf",
                        "HF_API_URL": embedding_server.hf_url, "HUGGINGFACE_TOKEN": PROVIDER_KEY,
                        "EMBEDDING_DEADLINE": "3"}.items():
        clean_env.setenv(name, value)
    assert cli_main(["ingest", str(docs), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "rejected the token" in out + err
    assert_secret_free(out + err, PROVIDER_KEY)


# -- widget origins in process -------------------------------------------------------------------


@pytest.fixture
def origins() -> Iterator[Any]:
    """apply_allowed_origins on Chainlit's server, restored afterwards."""
    from assistant.ui.cors import apply_allowed_origins

    before = list(cl_config.project.allow_origins)
    yield apply_allowed_origins
    apply_allowed_origins(before)


def test_socket_polling_from_an_allowed_site_carries_one_cors_header(origins: Any) -> None:
    """engine.io used to add its own Access-Control-Allow-Origin next to the CORS middleware's, and
    browsers refuse a doubled header: the widget never connected from an allowed site."""
    from starlette.websockets import WebSocketDisconnect

    client = TestClient(server_app)
    handshake = "/ws/socket.io/?EIO=4&transport=polling"
    origins(["https://docs.example.com"])
    ok = client.get(handshake, headers={"Origin": "https://docs.example.com"})
    assert ok.status_code == 200 and ok.headers.get_list("access-control-allow-origin") == ["https://docs.example.com"]
    refused = client.get(handshake, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws/socket.io/?EIO=4&transport=websocket",
                                      headers={"Origin": "https://evil.example"}):
            pass
    assert closed.value.code == 1008

    for everyone in (["*"], [""], []):  # "*", and an empty value (which Settings also reads as "*")
        assert origins(everyone) == ["*"]
        ok = client.get(handshake, headers={"Origin": "https://evil.example"})
        assert ok.status_code == 200 and ok.headers.get_list("access-control-allow-origin") == ["https://evil.example"]


def test_empty_allowed_origins_means_every_site(clean_env: pytest.MonkeyPatch) -> None:
    for value in ("", " , ", "*"):
        clean_env.setenv("ALLOWED_ORIGINS", value)
        assert Settings.from_env().allowed_origins == ("*",)


# -- a real server: widget origins, the Socket.IO handshake, login, and its own output ----------------

ALLOWED = "https://docs.example.com"
EVIL = "https://evil.example"
SERVER_SECRETS = {
    "db": "Srv-Db-Pw-" + uuid.uuid4().hex,
    "CHAINLIT_AUTH_SECRET": "Srv-Auth-" + uuid.uuid4().hex,
    "OPENAI_API_KEY": "sk-Srv-" + uuid.uuid4().hex,
    "HUGGINGFACE_TOKEN": "hf_Srv" + uuid.uuid4().hex,
    "EMBEDDING_API_KEY": "Srv-Emb-" + uuid.uuid4().hex,
}
WRONG_PASSWORD = "Wrong-Pw-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`chainlit run` with a login for alice and bob, one allowed widget origin and every secret set.

    The LLM is the loopback fake, scripted to reject the key and echo it back (as OpenAI does in part).
    """
    from psycopg import conninfo

    from tests.fakes.app_server import AppServer
    from tests.fakes.llm_server import FakeLLMServer

    llm = FakeLLMServer().start()
    llm.script(*[("status", 401, f"Incorrect API key provided: {SERVER_SECRETS['OPENAI_API_KEY']}")] * 20)
    url = conninfo.make_conninfo(create_database(), password=SERVER_SECRETS["db"])  # the test server trusts
    env = {"DATABASE_URL": url, "ASSISTANT_SAMPLE_DOCS": "1", "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("d")),
           "ASSISTANT_USERS": USERS, "ALLOWED_ORIGINS": ALLOWED, "OPENAI_BASE_URL": llm.base_url,
           "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT": "5",
           "CI": "true",  # CI services set it; Chainlit then runs in CI mode, which replaced OPENAI_API_KEY
           **{k: v for k, v in SERVER_SECRETS.items() if k != "db"}}
    server = AppServer("secured", env, tmp_path_factory.mktemp("secured"))
    server.llm = llm  # type: ignore[attr-defined]
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        llm.stop()


def login_cookie(server: Any, name: str, password: str) -> str:
    import httpx

    response = httpx.post(server.url + "/login", data={"username": name, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return response.cookies["access_token"]


async def open_chat(server: Any, origin: str, cookie: str | None) -> Any:
    from tests.fakes.socket_chat import ChatSession

    headers = {"Origin": origin} | ({"Cookie": f"access_token={cookie}"} if cookie else {})
    chat = ChatSession(server.url, headers=headers)
    await chat.connect(timeout=60)
    return chat


@pytest.mark.slow
def test_only_allowed_origins_get_cors_answers(secured: Any) -> None:
    import httpx

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(secured.url + "/project/settings", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET"}, timeout=10)

    denied = preflight(EVIL)
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    allowed = preflight(ALLOWED)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ALLOWED
    simple = httpx.get(secured.url + "/auth/config", headers={"Origin": EVIL}, timeout=10)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers  # unreadable there
    simple = httpx.get(secured.url + "/auth/config", headers={"Origin": ALLOWED}, timeout=10)
    assert simple.headers["access-control-allow-origin"] == ALLOWED and simple.json()["requireLogin"] is True


@pytest.mark.slow
async def test_socket_handshake_checks_origin_then_login(secured: Any) -> None:
    from tests.fakes.socket_chat import ChatProtocolError

    cookie = login_cookie(secured, "alice", ALICE_PASSWORD)
    with pytest.raises(ChatProtocolError, match="could not open"):
        await open_chat(secured, EVIL, cookie)  # a signed-in user's browser on another site: refused
    with pytest.raises(ChatProtocolError, match="could not open"):
        await open_chat(secured, ALLOWED, None)  # an allowed site, but nobody signed in
    for origin in (ALLOWED, secured.url):  # the widget's site, and the assistant's own page
        chat = await open_chat(secured, origin, cookie)
        await chat.close()


@pytest.mark.slow
async def test_conversations_over_the_real_server_stay_private(secured: Any) -> None:
    import httpx

    alice, bob = login_cookie(secured, "alice", ALICE_PASSWORD), login_cookie(secured, "bob", BOB_PASSWORD)
    question = "How do I deploy on Render? " + uuid.uuid4().hex[:6]
    chat = await open_chat(secured, ALLOWED, alice)
    try:
        reply = await chat.ask(question, timeout=90)
    finally:
        await chat.close()
    assert reply.done_at is not None and reply.text.strip(), reply.events  # answered from the documents
    assert reply.answer_id

    def client(cookie: str) -> httpx.Client:
        return httpx.Client(base_url=secured.url, cookies={"access_token": cookie}, timeout=30)

    with client(alice) as as_alice, client(bob) as as_bob:
        threads: list[dict[str, Any]] = []
        for _ in range(100):  # Chainlit saves the thread in background tasks
            threads = as_alice.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}}).json()["data"]
            if any(t["name"] == question for t in threads):
                break
            time.sleep(0.1)
        [thread] = [t for t in threads if t["name"] == question]
        assert as_bob.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}}).json()["data"] == []
        assert as_bob.get(f"/project/thread/{thread['id']}").status_code == 401
        stolen = as_bob.put("/feedback", json={"sessionId": "x", "feedback": {"forId": reply.answer_id, "value": 0}})
        assert stolen.status_code == 500
        rated = as_alice.put("/feedback", json={"sessionId": "x", "feedback": {"forId": reply.answer_id, "value": 1}})
        assert rated.status_code == 200, rated.text
        steps = as_alice.get(f"/project/thread/{thread['id']}").json()["steps"]
        assert [s["feedback"]["value"] for s in steps if s.get("feedback")] == [1]
        assert httpx.post(secured.url + "/login", data={"username": "alice", "password": WRONG_PASSWORD},
                          timeout=30).status_code == 401
        assert httpx.post(secured.url + "/login", data={"username": WRONG_PASSWORD, "password": ALICE_PASSWORD},
                          timeout=30).status_code == 401
        assert httpx.get(secured.url + "/healthz", timeout=30).status_code == 200


@pytest.mark.slow
def test_login_attempts_are_limited_per_user_and_per_address_through_the_real_route(secured: Any) -> None:
    """Chainlit's own POST /login, on the real server: LOGIN_MAX_FAILURES (5) failures per name, 20 per
    address, then 429 with a one-line reason and Retry-After, before any hashing. The server trusts
    X-Forwarded-For from 127.0.0.1 (uvicorn's default FORWARDED_ALLOW_IPS), which stands in for visitors
    behind a proxy here; alice and bob, from the test's own address, are never locked out by it."""
    import httpx

    def login(name: str, password: str, address: str) -> httpx.Response:
        return httpx.post(secured.url + "/login", data={"username": name, "password": password},
                          headers={"X-Forwarded-For": address}, timeout=30)

    guessed = "carol-" + uuid.uuid4().hex[:6]  # a name that does not exist counts like one that does
    for _ in range(5):
        assert login(guessed, WRONG_PASSWORD, "203.0.113.7").status_code == 401
    for address in ("203.0.113.7", "198.51.100.2"):  # the name is locked wherever the guesses come from
        refused = login(guessed, WRONG_PASSWORD, address)
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"] == ("Too many failed sign-in attempts for this user name;"
                                            " try again in 15 min.")
        assert 890 <= int(refused.headers["retry-after"]) <= 900

    sprayer = "192.0.2.50"  # one address trying many names, each fewer than 5 times
    for n in range(20):
        assert login(f"user{n}-{guessed}", WRONG_PASSWORD, sprayer).status_code == 401
    refused = login("alice", ALICE_PASSWORD, sprayer)  # even the right password: the address is paused
    assert refused.status_code == 429 and "from your network address" in refused.json()["detail"]
    assert login_cookie(secured, "alice", ALICE_PASSWORD)  # alice from elsewhere is unaffected
    assert login("alice", ALICE_PASSWORD, "198.51.100.3").status_code == 200


@pytest.mark.slow
async def test_the_servers_own_output_holds_no_secret(secured: Any) -> None:
    """Everything the server printed (start-up, logins, a chat whose LLM rejected the key) is clean."""
    import httpx

    deadline = time.monotonic() + 60  # the sample corpus must be searchable before the question
    while (httpx.get(secured.url + "/healthz", timeout=30).json().get("documents", 0) < 1
           and time.monotonic() < deadline):
        time.sleep(0.5)
    cookie = login_cookie(secured, "bob", BOB_PASSWORD)
    assert httpx.post(secured.url + "/login", data={"username": "bob", "password": WRONG_PASSWORD},
                      timeout=30).status_code == 401
    chat = await open_chat(secured, ALLOWED, cookie)
    try:
        reply = await chat.ask("How do I deploy on Render?", timeout=90)
    finally:
        await chat.close()
    key = SERVER_SECRETS["OPENAI_API_KEY"]
    # The configured key reached the LLM (which rejected and echoed it) and the chat says so. Chainlit's
    # CI mode (`CI` set, as in clean-clone CI runs: the fixture sets it) used to swap in a fake key here.
    sent = [r.headers.get("authorization") for r in secured.llm.chat_requests]
    assert f"Bearer {key}" in sent, f"{len(sent)} LLM requests, none with the configured key; chat: {reply.text!r}"
    assert "rejected this site's API key" in reply.text.replace("\\", "")
    secured.stop()
    output = secured.log.read_text(errors="replace")
    assert "Uvicorn running" in output or "available at" in output
    assert_secret_free(output + reply.text + " ".join(reply.errors),  # ... and nothing printed or shown has a secret
                       *SERVER_SECRETS.values(), ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD, ALICE_HASH, BOB_HASH)


@pytest.mark.browser
def test_widget_answers_on_an_allowed_site_and_not_on_another(sample_database: str,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """In Chromium: the demo page on an allowed origin chats; the same page on another port cannot."""
    import functools
    import http.server
    import os
    import threading

    from tests.conftest import ARTIFACTS, ROOT
    from tests.fakes.app_server import AppServer

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
        pytest.skip("/usr/bin/chromium not found")
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_browser_app import CHROMIUM_ARGS, QUESTION, wait_answer_done

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    sites = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(ROOT / "public")))
             for _ in range(2)]
    for site in sites:
        threading.Thread(target=site.serve_forever, daemon=True).start()
    allowed, other = (f"http://127.0.0.1:{site.server_address[1]}" for site in sites)
    server = AppServer("widget-origins", {"DATABASE_URL": sample_database, "ASSISTANT_SAMPLE_DOCS": "0",
                                          "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("wo")),
                                          "ALLOWED_ORIGINS": allowed}, tmp_path_factory.mktemp("widget-origins"))
    try:
        server.wait_ready()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)
                seen: list[str] = []
                page.on("console", lambda m: seen.append(m.text))
                page.goto(f"{allowed}/widget-demo.html?server={server.url}")
                page.locator("#chainlit-copilot-button").click()
                page.locator("#chat-input").fill(QUESTION)
                try:  # enabled once the chat's socket is connected
                    page.locator("#chat-submit:enabled").wait_for(timeout=20_000)
                except sync_api.TimeoutError:
                    errors = [m for m in seen if "CORS" in m or "socket" in m.lower()]
                    raise AssertionError(f"the widget did not connect from an allowed site: {errors}") from None
                page.locator("#chat-submit").click()
                wait_answer_done(page)
                assert "Sources:" in page.locator('[data-step-type="assistant_message"]').last.inner_text()

                page = browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(m.text))
                page.goto(f"{other}/widget-demo.html?server={server.url}")
                page.locator("#chainlit-copilot-button").click()  # the script itself loads anywhere ...
                page.wait_for_timeout(3000)
                blocked = [m for m in console if "CORS policy" in m]
                assert blocked, console  # ... but the browser keeps the server's answers from this page
                assert page.locator('[data-step-type="assistant_message"]').count() == 0
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser-widget-disallowed-origin.png"))
            finally:
                browser.close()
    finally:
        server.stop()
        for site in sites:
            site.shutdown()
            site.server_close()


def test_chainlit_ci_mode_does_not_replace_the_configured_llm_key() -> None:
    from assistant.ui.ci_mode import CHAINLIT_CI_KEY, restore_openai_key

    real = "sk-real-" + uuid.uuid4().hex
    env = {"OPENAI_API_KEY": CHAINLIT_CI_KEY}
    assert restore_openai_key(env, lambda: {"OPENAI_API_KEY": real, "CI": "true"}) and env == {"OPENAI_API_KEY": real}
    env = {"OPENAI_API_KEY": CHAINLIT_CI_KEY}  # no key configured: no LLM (not one that always gets a 401)
    assert restore_openai_key(env, lambda: {"CI": "1"}) and env == {}
    env = {"OPENAI_API_KEY": CHAINLIT_CI_KEY}  # where the start environment is unknown: removed as well
    assert restore_openai_key(env, lambda: None) and env == {}
    env = {"OPENAI_API_KEY": real}
    assert not restore_openai_key(env, lambda: {"CI": "1"}) and env == {"OPENAI_API_KEY": real}
    env = {"OPENAI_API_KEY": CHAINLIT_CI_KEY}  # set so on purpose before the start: kept
    assert not restore_openai_key(env, lambda: {"OPENAI_API_KEY": CHAINLIT_CI_KEY}) and env[
        "OPENAI_API_KEY"] == CHAINLIT_CI_KEY


@pytest.mark.browser
def test_the_login_page_shows_why_sign_in_is_refused(create_database: Any,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """In Chromium, as a person signs in: after LOGIN_MAX_FAILURES wrong passwords the page says why
    the next try is refused and when to come back (Chainlit shows the 429's detail in a toast)."""
    import os

    from tests.conftest import ARTIFACTS
    from tests.fakes.app_server import AppServer
    from tests.fakes.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
        pytest.skip("/usr/bin/chromium not found")
    sync_api = pytest.importorskip("playwright.sync_api")
    env = {"DATABASE_URL": create_database(), "ASSISTANT_SAMPLE_DOCS": "0", "ASSISTANT_USERS": USERS,
           "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("ll")), "CHAINLIT_AUTH_SECRET": "s-" + uuid.uuid4().hex,
           "LOGIN_MAX_FAILURES": "2"}
    server = AppServer("login-limit", env, tmp_path_factory.mktemp("login-limit"))
    try:
        server.wait_ready()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)
                page.goto(server.url + "/login")
                for _ in range(3):
                    page.locator("input#email, input[name=email], input[type=text]").first.fill("alice")
                    page.locator("input[type=password]").first.fill(WRONG_PASSWORD)
                    page.locator("button[type=submit]").first.click()
                    page.wait_for_timeout(1000)
                page.get_by_text("Too many failed sign-in attempts for this user name; try again in 15 min.").wait_for()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser-login-rate-limited.png"))
            finally:
                browser.close()
    finally:
        server.stop()


def test_render_blueprint_asks_for_users_and_generates_the_secret() -> None:
    import yaml

    from tests.conftest import ROOT

    (web,) = yaml.safe_load((ROOT / "render.yaml").read_text())["services"]
    env = {v["key"]: v for v in web["envVars"]}
    assert env["ASSISTANT_USERS"] == {"key": "ASSISTANT_USERS", "sync": False}
    assert env["CHAINLIT_AUTH_SECRET"] == {"key": "CHAINLIT_AUTH_SECRET", "generateValue": True}
