"""Settings: the only code that reads the environment (and `.env`).

Build one `Settings` at an entry point and pass plain values down; core classes never
read `os.environ` themselves.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from core.errors import ConfigError

ENV_PREFIX = "ANIREC_"
# Variables read without the ANIREC_ prefix, by the names operators expect.
_PLAIN_NAMES = {"database_url": "DATABASE_URL", "discord_token": "DISCORD_TOKEN",
                "telegram_token": "TELEGRAM_TOKEN"}


def _alias(name: str) -> Any:
    return AliasChoices(_PLAIN_NAMES[name], ENV_PREFIX + name.upper(), name)


class Settings(BaseSettings):
    """Every setting AniRec has; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        populate_by_name=True
    )

    # --- where things live --------------------------------------------------------------
    home: Path = Field(Path("var"))  # runtime state folder
    database_url: str | None = Field(None, validation_alias=_alias("database_url"))  # None: SQLite in home
    log_level: str = Field("INFO")  # DEBUG, INFO, WARNING, ERROR

    # --- chat platforms (secrets) -------------------------------------------------------
    discord_token: SecretStr | None = Field(None, validation_alias=_alias("discord_token"))
    telegram_token: SecretStr | None = Field(None, validation_alias=_alias("telegram_token"))
    # lists of ids: "123,456" or a JSON list "[123, 456]"
    discord_owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    discord_auto_channels: Annotated[list[int], NoDecode] = Field(default_factory=list)
    allow_link_downloads: bool = Field(False)  # follow links to any public host, not only the platforms'
    telegram_webhook_url: str | None = Field(None)
    telegram_api_url: str | None = Field(None)  # self-hosted Bot API server, e.g. http://host:8081/bot
    telegram_file_url: str | None = Field(None)  # its file URL, e.g. http://host:8081/file/bot
    telegram_webhook_port: int = Field(8443, ge=1, le=65535)
    telegram_webhook_listen: str = Field("127.0.0.1")  # address the webhook listener binds to
    # the X-Telegram-Bot-Api-Secret-Token every webhook worker checks (None: derived from the token)
    telegram_webhook_secret: SecretStr | None = Field(None)
    # Discord sharding: shards in all (None: no sharding, one gateway connection) and the ones
    # this process runs (empty: all of them), e.g. 4 shards over two processes "0,1" and "2,3"
    discord_shard_count: int | None = Field(None, ge=1, le=100_000)
    discord_shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    web_host: str = Field("127.0.0.1")  # local web chat
    web_port: int = Field(8765, ge=0, le=65535)
    web_admin_token: SecretStr | None = Field(None)  # /admin from other machines (Bearer or ?token=)
    web_allowed_hosts: list[str] = Field(default_factory=list)  # host names besides IPs/localhost
    web_upload_timeout: float = Field(30.0, gt=0, le=3600)  # seconds an upload may take to arrive

    # --- input limits -------------------------------------------------------------------
    max_upload_bytes: int = Field(20_000_000, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)  # per frame
    max_frames: int = Field(8, ge=1, le=64)  # used from a GIF/clip
    max_clip_seconds: float = Field(60.0, gt=0)
    # the decode budget of one query (decompression bombs that hide in frames, not headers)
    max_animation_frames: int = Field(5000, ge=1, le=1_000_000)  # frames an animation may declare
    max_frame_pixels: int = Field(8_300_000, gt=0)  # each frame of an animation or clip
    max_decode_pixels: int = Field(600_000_000, gt=0)  # all frames decoded for one query
    max_decode_seconds: float = Field(20.0, gt=0, le=3600)  # wall-clock budget of one decode

    # --- indexing -------------------------------------------------------------------------
    index_fps: float = Field(2.0, gt=0, le=30)  # frames kept per second
    # densest sampling that fast motion (pans, zooms, action) may add between the regular
    # samples; the same as index_fps (or lower) turns the extra frames off
    index_max_fps: float = Field(6.0, gt=0, le=60)
    # frames decoded to sample from: "all", or "ref" (only the reference frames: with B-frames
    # ~57% of them, cuts and motion found on those; docs/indexing.md). Episodes indexed from then on
    index_decode: Literal["all", "ref"] = Field("all")
    embed_batch: int = Field(32, ge=1, le=1024)
    torch_threads: int = Field(0, ge=0, le=256)  # 0: torch default
    index_regions: bool = Field(True)  # region vectors of keyframes, for cropped screenshots
    # --- vector backend (core/index): hnswlib files in the home folder, or Milvus ---------
    vector_backend: Literal["hnsw", "milvus"] = Field("hnsw")
    # a Milvus server (http://host:19530) or a Milvus Lite file; default <home>/milvus.db
    milvus_uri: str | None = Field(None)
    milvus_token: SecretStr | None = Field(None)  # user:password or API key of the server
    milvus_collection: str = Field("anirec_frames", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    milvus_index: Literal["HNSW", "IVF_SQ8", "IVF_PQ", "IVF_FLAT", "FLAT"] = Field("HNSW")
    # region vectors below which the compact region index stays exact (read by
    # core/index/compact.py when it is imported; docs/latency.md)
    compact_train_min: int = Field(16384, ge=256)
    # decode+embed episodes in Ray workers (data/parallel.py): N >= 2 starts a local Ray with
    # N workers; 0/1 indexes in one process. An address joins a running Ray cluster instead.
    index_workers: int = Field(0, ge=0, le=4096)
    ray_address: str | None = Field(None)

    # --- recognition ------------------------------------------------------------------------
    search_k: int = Field(200, ge=10, le=5000)  # neighbours per frame
    match_threshold: float = Field(0.80, ge=0, le=1)
    unsure_threshold: float = Field(0.35, ge=0, le=1)
    # search the sub-crops of a cropped screenshot among the region vectors too: "auto" does
    # with the model-free default embedder only (a trained CNN gains little for its cost)
    query_subcrops: Literal["auto", "on", "off"] = Field("auto")

    # --- service & chat behaviour ---------------------------------------------------------
    queue_size: int = Field(16, ge=1, le=10_000)  # waiting jobs
    user_rate_per_minute: int = Field(10, ge=1)
    chat_rate_per_minute: int = Field(30, ge=1)
    store_query_images: bool = Field(False)
    query_retention_days: int = Field(30, ge=1)

    # --- learning loop (`anirec retrain`, the hot swap) -------------------------------------
    reload_poll_seconds: float = Field(30.0, ge=0)  # a running bot checks for a promotion (0: never)
    retrain_holdout: float = Field(0.25, gt=0, lt=1)  # share of voted answers the gate holds out
    retrain_feedback_margin: float = Field(0.0, ge=0, le=1)  # must beat the current by more than this
    retrain_suite_margin: float = Field(0.01, ge=0, le=1)  # may not lose more than this on the suite
    retrain_suite_queries: int = Field(120, ge=0, le=100_000)  # eval-suite size of the gate (0: skip)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v

    @field_validator("discord_owner_ids", "telegram_owner_ids", "discord_auto_channels",
                     "discord_shard_ids", mode="before")
    @classmethod
    def _split_ids(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("is not a valid JSON list") from None
            return [x.strip() for x in text.split(",") if x.strip()]
        return v

    @field_validator("home")
    @classmethod
    def _check_home(cls, v: Path) -> Path:
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} is a file; it must be a folder (AniRec keeps its catalog, "
                             "index and models there)")
        return v

    @model_validator(mode="after")
    def _check_thresholds(self) -> Settings:
        if self.match_threshold < self.unsure_threshold:
            raise ValueError(f"ANIREC_MATCH_THRESHOLD ({self.match_threshold}) is below "
                             f"ANIREC_UNSURE_THRESHOLD ({self.unsure_threshold}); a match "
                             "must need at least the confidence of an unsure guess")
        return self

    @model_validator(mode="after")
    def _check_decode_budget(self) -> Settings:
        if self.max_frame_pixels > self.max_decode_pixels:
            raise ValueError(f"ANIREC_MAX_FRAME_PIXELS ({self.max_frame_pixels}) is above "
                             f"ANIREC_MAX_DECODE_PIXELS ({self.max_decode_pixels}); the budget "
                             "of a whole decode must hold at least one frame")
        if self.max_pixels > self.max_decode_pixels:
            raise ValueError(f"ANIREC_MAX_PIXELS ({self.max_pixels}) is above "
                             f"ANIREC_MAX_DECODE_PIXELS ({self.max_decode_pixels}); a still "
                             "image that is allowed must fit in the decode budget")
        return self

    @field_validator("discord_shard_count", "telegram_webhook_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _check_shards(self) -> Settings:
        if self.discord_shard_ids and self.discord_shard_count is None:
            raise ValueError("ANIREC_DISCORD_SHARD_IDS needs ANIREC_DISCORD_SHARD_COUNT (the "
                             "number of shards in all processes together)")
        bad = [i for i in self.discord_shard_ids if not 0 <= i < (self.discord_shard_count or 0)]
        if bad:
            raise ValueError(f"ANIREC_DISCORD_SHARD_IDS {bad} are not below "
                             f"ANIREC_DISCORD_SHARD_COUNT ({self.discord_shard_count})")
        if len(set(self.discord_shard_ids)) != len(self.discord_shard_ids):
            raise ValueError("ANIREC_DISCORD_SHARD_IDS lists a shard twice")
        return self

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v and "://" not in v:
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///var/catalog.db")
        return v or None

    # --- derived paths ------------------------------------------------------------------------
    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in the home folder."""
        return self.database_url or f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def previews_dir(self) -> Path:
        return self.home / "previews"

    @property
    def subcrops(self) -> bool | None:
        """`query_subcrops` as `build_recognizer` takes it (None: decided by the embedder)."""
        return {"on": True, "off": False}.get(self.query_subcrops)

    @property
    def framestore_dir(self) -> Path:
        return self.home / "framestore"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def env_name(field: str) -> str:
    """The environment variable an operator sets for a settings field."""
    return _PLAIN_NAMES.get(field, ENV_PREFIX + field.upper())


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; raise `ConfigError` naming the variable.

    Unknown `ANIREC_*` variables are errors too (a typo should not silently do nothing).
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.75)
            hints.append(f"{k} (did you mean {close[0]}?)" if close else k)
        raise ConfigError(f"Unknown setting(s): {', '.join(hints)}. See .env.example.")
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a value the environment source could not even decode
        raise ConfigError(f"Bad setting: {exc}") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            if not field:  # a check across settings (the thresholds)
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = env_name(field) if field in Settings.model_fields else field
            msg = str(err["msg"]).removeprefix("Value error, ")
            if field in _LIST_FIELDS:
                msg += f" (a list of ids, e.g. {name}=123456789012345678,234567890123456789)"
            lines.append(f"{name}: {msg}")
        raise ConfigError("Bad setting: " + "; ".join(lines)) from None


#: Settings that are lists of ids (written as JSON lists in the environment).
_LIST_FIELDS = frozenset({"discord_owner_ids", "telegram_owner_ids", "discord_auto_channels"})
