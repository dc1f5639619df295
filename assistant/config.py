"""One `Settings` object read from the environment (and `.env`), documented in the README.

Every knob of the product is here and nowhere else, so the README's table can be checked
against `Settings.ENV` (a test does). Stdlib only: the retrieval package imports this.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from assistant.auth import parse_users
from assistant.embedding_models import DEFAULT_MODEL, EMBEDDING_PROVIDERS, KNOWN_DIMS
from assistant.retrieval.errors import ConfigError

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


def load_dotenv(path: Path = Path(".env")) -> None:
    """Read KEY=VALUE lines from `.env` into os.environ without overriding what is set."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def _env(name: str, *alts: str) -> str | None:
    for key in (name, *alts):
        value = os.environ.get(key)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range; use {lo}..{hi} (default {default})")
    return value


def _float(name: str, default: float, lo: float, hi: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range; use {lo}..{hi} (default {default})")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1 or 0")


@dataclass(frozen=True)
class Settings:
    """All configuration, read once. Field comments name the environment variable.

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
    database_url: str | None = field(default=None, repr=False)  # DATABASE_URL (may hold a password)
    data_dir: Path = field(default_factory=default_data_dir)  # ASSISTANT_DATA_DIR
    sample_docs: bool = True  # ASSISTANT_SAMPLE_DOCS
    db_pool_max: int = 5  # DB_POOL_MAX
    db_connect_timeout: int = 5  # DB_CONNECT_TIMEOUT (seconds)
    db_statement_timeout: float = 60.0  # DB_STATEMENT_TIMEOUT (seconds per SQL statement, 0 = none)
    # embeddings
    embedding_provider: str = "local"  # EMBEDDING_PROVIDER
    embedding_model: str = DEFAULT_MODEL  # EMBEDDING_MODEL
    embedding_dim: int = 384  # EMBEDDING_DIM
    hf_api_url: str = DEFAULT_HF_URL  # HF_API_URL
    hf_token: str | None = field(default=None, repr=False)  # HUGGINGFACE_TOKEN / HF_TOKEN
    embedding_api_url: str | None = None  # EMBEDDING_API_URL
    embedding_api_key: str | None = field(default=None, repr=False)  # EMBEDDING_API_KEY
    embedding_timeout: float = 10.0  # EMBEDDING_TIMEOUT (seconds per request)
    embedding_deadline: float = 30.0  # EMBEDDING_DEADLINE (seconds per ingest batch, all retries)
    query_embedding_deadline: float = 5.0  # QUERY_EMBEDDING_DEADLINE (seconds per question, all retries)
    embedding_batch_size: int = 32  # EMBEDDING_BATCH_SIZE
    embedding_breaker_failures: int = 3  # EMBEDDING_BREAKER_FAILURES (0 = no circuit breaker)
    embedding_breaker_cooldown: float = 30.0  # EMBEDDING_BREAKER_COOLDOWN (seconds)
    query_cache_size: int = 1024  # QUERY_CACHE_SIZE
    ingest_workers: int = 0  # INGEST_WORKERS (0 = one per available CPU)
    ingest_confirm_minutes: float = 10.0  # INGEST_CONFIRM_MINUTES (0 = never ask)
    # retrieval
    text_search_config: str = "simple"  # TEXT_SEARCH_CONFIG
    top_k: int = 5  # TOP_K
    rrf_k: int = 60  # RRF_K
    hnsw_ef_search: int = 100  # HNSW_EF_SEARCH (see "HNSW defaults" above)
    hnsw_filtered_ef_search: int = 400  # HNSW_FILTERED_EF_SEARCH (searches with a filter)
    chunk_tokens: int = 320  # CHUNK_TOKENS
    chunk_overlap: int = 48  # CHUNK_OVERLAP
    min_similarity: float | None = None  # MIN_SIMILARITY (unset: calibrated per corpus, see retrieval/relevance.py)
    # chat / LLM
    openai_api_key: str | None = field(default=None, repr=False)  # OPENAI_API_KEY
    openai_base_url: str | None = None  # OPENAI_BASE_URL
    llm_model: str = "gpt-4o-mini"  # LLM_MODEL
    llm_timeout: float = 30.0  # LLM_TIMEOUT (seconds)
    llm_deadline: float = 120.0  # LLM_DEADLINE (seconds for one whole LLM call, retries and streaming included)
    llm_max_retries: int = 2  # LLM_MAX_RETRIES
    llm_context_tokens: int = 8192  # LLM_CONTEXT_TOKENS
    llm_max_answer_tokens: int = 700  # LLM_MAX_ANSWER_TOKENS
    allowed_origins: tuple[str, ...] = ("*",)  # ALLOWED_ORIGINS
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # ASSISTANT_USERS (name, scrypt hash)
    admins: tuple[str, ...] = ()  # ASSISTANT_ADMINS (users who may upload and remove documents)
    allow_uploads: bool = True  # ALLOW_UPLOADS (without a login: may anyone upload and remove documents)
    upload_max_mb: int = 10  # UPLOAD_MAX_MB (per file)
    upload_max_files: int = 5  # UPLOAD_MAX_FILES (per message)
    login_max_failures: int = 5  # LOGIN_MAX_FAILURES (per user name per LOGIN_WINDOW; 4x per address; 0 = off)
    login_window: float = 900.0  # LOGIN_WINDOW (seconds)

    # Environment variable for each field, in README table order.
    ENV: ClassVar[dict[str, str]] = {
        "database_url": "DATABASE_URL",
        "data_dir": "ASSISTANT_DATA_DIR",
        "sample_docs": "ASSISTANT_SAMPLE_DOCS",
        "db_pool_max": "DB_POOL_MAX",
        "db_connect_timeout": "DB_CONNECT_TIMEOUT",
        "db_statement_timeout": "DB_STATEMENT_TIMEOUT",
        "embedding_provider": "EMBEDDING_PROVIDER",
        "embedding_model": "EMBEDDING_MODEL",
        "embedding_dim": "EMBEDDING_DIM",
        "hf_api_url": "HF_API_URL",
        "hf_token": "HUGGINGFACE_TOKEN",
        "embedding_api_url": "EMBEDDING_API_URL",
        "embedding_api_key": "EMBEDDING_API_KEY",
        "embedding_timeout": "EMBEDDING_TIMEOUT",
        "embedding_deadline": "EMBEDDING_DEADLINE",
        "query_embedding_deadline": "QUERY_EMBEDDING_DEADLINE",
        "embedding_batch_size": "EMBEDDING_BATCH_SIZE",
        "embedding_breaker_failures": "EMBEDDING_BREAKER_FAILURES",
        "embedding_breaker_cooldown": "EMBEDDING_BREAKER_COOLDOWN",
        "query_cache_size": "QUERY_CACHE_SIZE",
        "ingest_workers": "INGEST_WORKERS",
        "ingest_confirm_minutes": "INGEST_CONFIRM_MINUTES",
        "text_search_config": "TEXT_SEARCH_CONFIG",
        "top_k": "TOP_K",
        "rrf_k": "RRF_K",
        "hnsw_ef_search": "HNSW_EF_SEARCH",
        "hnsw_filtered_ef_search": "HNSW_FILTERED_EF_SEARCH",
        "chunk_tokens": "CHUNK_TOKENS",
        "chunk_overlap": "CHUNK_OVERLAP",
        "min_similarity": "MIN_SIMILARITY",
        "openai_api_key": "OPENAI_API_KEY",
        "openai_base_url": "OPENAI_BASE_URL",
        "llm_model": "LLM_MODEL",
        "llm_timeout": "LLM_TIMEOUT",
        "llm_deadline": "LLM_DEADLINE",
        "llm_max_retries": "LLM_MAX_RETRIES",
        "llm_context_tokens": "LLM_CONTEXT_TOKENS",
        "llm_max_answer_tokens": "LLM_MAX_ANSWER_TOKENS",
        "allowed_origins": "ALLOWED_ORIGINS",
        "users": "ASSISTANT_USERS",
        "admins": "ASSISTANT_ADMINS",
        "allow_uploads": "ALLOW_UPLOADS",
        "upload_max_mb": "UPLOAD_MAX_MB",
        "upload_max_files": "UPLOAD_MAX_FILES",
        "login_max_failures": "LOGIN_MAX_FAILURES",
        "login_window": "LOGIN_WINDOW",
    }

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
    def from_env(cls, *, dotenv: bool = True) -> Settings:
        """Read and validate the environment; raises ConfigError naming the variable."""
        if dotenv:
            load_dotenv()
        provider = (_env("EMBEDDING_PROVIDER") or "local").lower()
        if provider not in EMBEDDING_PROVIDERS:
            raise ConfigError(
                f"EMBEDDING_PROVIDER={provider!r} is not known; use one of {', '.join(EMBEDDING_PROVIDERS)}"
            )
        model = _env("EMBEDDING_MODEL") or DEFAULT_MODEL
        dim_default = KNOWN_DIMS.get(model, 0)
        dim = _int("EMBEDDING_DIM", dim_default, 1, 16000) if (_env("EMBEDDING_DIM") or dim_default) else 0
        if not dim:
            raise ConfigError(f"EMBEDDING_MODEL={model!r} has no known dimension; set EMBEDDING_DIM")
        if provider == "local" and model != DEFAULT_MODEL:
            raise ConfigError(
                f"EMBEDDING_PROVIDER=local runs only {DEFAULT_MODEL}; unset EMBEDDING_MODEL or use hf/openai"
            )
        if provider == "openai" and not _env("EMBEDDING_API_URL"):
            raise ConfigError("EMBEDDING_PROVIDER=openai needs EMBEDDING_API_URL (e.g. http://localhost:8080/v1)")
        data_dir = Path(_env("ASSISTANT_DATA_DIR") or default_data_dir()).expanduser()
        origins = tuple(o.strip() for o in (_env("ALLOWED_ORIGINS") or "*").split(",") if o.strip())
        chunk_tokens = _int("CHUNK_TOKENS", 320, 64, 500)
        users = parse_users(_env("ASSISTANT_USERS"))
        admins = _admins(_env("ASSISTANT_ADMINS"), users)
        text_config = _env("TEXT_SEARCH_CONFIG") or "simple"
        if not text_config.replace("_", "").isalnum():
            raise ConfigError(f"TEXT_SEARCH_CONFIG={text_config!r} is not a text search configuration name")
        return cls(
            database_url=_env("DATABASE_URL"),
            data_dir=data_dir,
            sample_docs=_bool("ASSISTANT_SAMPLE_DOCS", True),
            db_pool_max=_int("DB_POOL_MAX", 5, 1, 100),
            db_connect_timeout=_int("DB_CONNECT_TIMEOUT", 5, 1, 120),
            db_statement_timeout=_float("DB_STATEMENT_TIMEOUT", 60.0, 0.0, 86400),
            embedding_provider=provider,
            embedding_model=model,
            embedding_dim=dim,
            hf_api_url=_env("HF_API_URL") or DEFAULT_HF_URL,
            hf_token=_env("HUGGINGFACE_TOKEN", "HF_TOKEN"),
            embedding_api_url=_env("EMBEDDING_API_URL"),
            embedding_api_key=_env("EMBEDDING_API_KEY"),
            embedding_timeout=_float("EMBEDDING_TIMEOUT", 10.0, 0.1, 600),
            embedding_deadline=_float("EMBEDDING_DEADLINE", 30.0, 0.1, 3600),
            query_embedding_deadline=_float("QUERY_EMBEDDING_DEADLINE", 5.0, 0.1, 600),
            embedding_batch_size=_int("EMBEDDING_BATCH_SIZE", 32, 1, 1024),
            embedding_breaker_failures=_int("EMBEDDING_BREAKER_FAILURES", 3, 0, 1000),
            embedding_breaker_cooldown=_float("EMBEDDING_BREAKER_COOLDOWN", 30.0, 0.0, 86400),
            query_cache_size=_int("QUERY_CACHE_SIZE", 1024, 0, 1_000_000),
            ingest_workers=_int("INGEST_WORKERS", 0, 0, 64),
            ingest_confirm_minutes=_float("INGEST_CONFIRM_MINUTES", 10.0, 0.0, 100_000),
            text_search_config=text_config,
            top_k=_int("TOP_K", 5, 1, 50),
            rrf_k=_int("RRF_K", 60, 1, 1000),
            hnsw_ef_search=_int("HNSW_EF_SEARCH", 100, 1, 1000),
            hnsw_filtered_ef_search=_int("HNSW_FILTERED_EF_SEARCH", 400, 1, 1000),
            chunk_tokens=chunk_tokens,
            chunk_overlap=_int("CHUNK_OVERLAP", 48, 0, chunk_tokens // 2),
            min_similarity=_float("MIN_SIMILARITY", 0.83, 0.0, 1.0) if _env("MIN_SIMILARITY") else None,
            openai_api_key=_env("OPENAI_API_KEY"),
            openai_base_url=_env("OPENAI_BASE_URL"),
            llm_model=_env("LLM_MODEL") or "gpt-4o-mini",
            llm_timeout=_float("LLM_TIMEOUT", 30.0, 0.1, 600),
            llm_deadline=_float("LLM_DEADLINE", 120.0, 1.0, 3600),
            llm_max_retries=_int("LLM_MAX_RETRIES", 2, 0, 10),
            llm_context_tokens=_int("LLM_CONTEXT_TOKENS", 8192, 1024, 2_000_000),
            llm_max_answer_tokens=_int("LLM_MAX_ANSWER_TOKENS", 700, 32, 32000),
            allowed_origins=origins or ("*",),
            users=users,
            admins=admins,
            allow_uploads=_bool("ALLOW_UPLOADS", True),
            upload_max_mb=_int("UPLOAD_MAX_MB", 10, 1, 200),
            upload_max_files=_int("UPLOAD_MAX_FILES", 5, 1, 50),
            login_max_failures=_int("LOGIN_MAX_FAILURES", 5, 0, 10_000),
            login_window=_float("LOGIN_WINDOW", 900.0, 1.0, 86400),
        )


def _admins(raw: str | None, users: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """ASSISTANT_ADMINS: comma-separated names, each one of ASSISTANT_USERS (admins sign in)."""
    names = tuple(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))
    if not names:
        return ()
    if not users:
        raise ConfigError("ASSISTANT_ADMINS needs ASSISTANT_USERS: admins are users who sign in;"
                          " without a login, ALLOW_UPLOADS decides who may add documents")
    known = {name for name, _ in users}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"ASSISTANT_ADMINS: {', '.join(repr(n[:64]) for n in unknown)} not in ASSISTANT_USERS;"
                          " list only names that can sign in")
    return names


def settings_fields() -> list[str]:
    """Names of all Settings fields (for the README-table consistency test)."""
    return [f.name for f in fields(Settings)]
