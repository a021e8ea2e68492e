"""The composition root: the one place where `Settings` become objects.

`App.from_settings(settings)` gives every command, the bots, the web chat and the benchmarks
the same sessions (catalog database, migrations applied), stores, embedder, index, indexer,
recogniser and service, so a setting means the same wherever it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from core.feedback import FeedbackStore
    from core.framestore import FrameStore
    from core.index import RegionSpec
    from core.index.milvus import MilvusConfig
    from core.media import MediaLimits
    from core.models.embedder import SceneEmbedder
    from core.recognition import Recognizer
    from core.service import RecognitionService
    from data.indexer import Indexer, Progress


@dataclass
class App:
    """Runtime objects for one process, built lazily from one `Settings`."""

    settings: Settings
    _sessions: sessionmaker[Session] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> App:
        return cls(settings)

    # -- storage -------------------------------------------------------------------------------
    @property
    def sessions(self) -> sessionmaker[Session]:
        """The catalog's session factory; opening it brings the schema up to date."""
        if self._sessions is None:
            from core.db import open_database

            self.settings.home.mkdir(parents=True, exist_ok=True)
            _, self._sessions = open_database(self.settings.db_url)
        return self._sessions

    def open(self) -> None:
        """Open the catalog now (bringing its schema up to date) rather than at first use."""
        self.sessions  # noqa: B018 (the property opens it)

    def framestore(self) -> FrameStore:
        from core.framestore import FrameStore

        return FrameStore(self.settings.framestore_dir)

    def feedback_store(self) -> FeedbackStore:
        from core.feedback import FeedbackStore, load_salt

        return FeedbackStore(self.sessions, load_salt(self.settings.home))

    # -- models --------------------------------------------------------------------------------
    def configure_torch(self, default: int = 0) -> None:
        """Set torch's CPU threads: ANIREC_TORCH_THREADS if set, else `default` (0: torch's).

        Serving uses 1 thread by default: two torch threads sharing two cores with anything
        else collapse (26 ms → 200+ ms a query here)."""
        import torch

        n = self.settings.torch_threads or default
        if n:
            torch.set_num_threads(n)

    def embedder(self) -> SceneEmbedder:
        """The promoted scene embedder (the fixed-seed default until one is trained)."""
        from core.models.registry import load_scene_embedder

        return load_scene_embedder(self.sessions, self.settings.models_dir)

    # -- indexing ------------------------------------------------------------------------------
    def region_spec(self) -> RegionSpec | None:
        """The region vectors a new index keeps (ANIREC_INDEX_REGIONS; None: none)."""
        from core.index import RegionSpec

        return RegionSpec() if self.settings.index_regions else None

    def milvus_config(self) -> MilvusConfig | None:
        """The Milvus backend's settings when ANIREC_VECTOR_BACKEND=milvus (None: hnswlib).
        The scalar fields (series, episode, time) of a frame are read from the catalog."""
        st = self.settings
        if st.vector_backend != "milvus":
            return None
        from core.index.milvus import MilvusConfig, catalog_fields

        token = st.milvus_token.get_secret_value() if st.milvus_token else ""
        return MilvusConfig(uri=st.milvus_uri or str(st.home / "milvus.db"),
                            collection=st.milvus_collection, index_type=st.milvus_index,
                            token=token, frame_fields=catalog_fields(self.sessions))

    def indexer(self, *, embedder: SceneEmbedder | None = None, progress: Progress | None = None,
                fps: float | None = None, ray: bool = False, ray_address: str | None = None) -> Indexer:
        """The indexer every command uses: `embedder` defaults to the promoted one, `fps` to
        ANIREC_INDEX_FPS; sampling, batch size, region vectors and where episodes are decoded
        (ANIREC_INDEX_WORKERS / ANIREC_RAY_ADDRESS, or `ray`: on Ray) follow the settings."""
        from data.indexer import Indexer, Progress
        from data.parallel import make_runner

        st = self.settings
        return Indexer(sessions=self.sessions, embedder=embedder or self.embedder(),
                       index_dir=st.index_dir, framestore=self.framestore(),
                       fps=fps or st.index_fps, max_fps=st.index_max_fps, decode=st.index_decode,
                       batch_size=st.embed_batch, progress=progress or Progress(),
                       regions=self.region_spec(), milvus=self.milvus_config(),
                       runner=make_runner(st.index_workers, ray_address or st.ray_address, ray=ray))

    # -- recognition ---------------------------------------------------------------------------
    def recognizer(self) -> Recognizer:
        """A recogniser over the promoted models and the index, with the settings' search
        and thresholds. Raises IndexUnavailable/IndexMismatch when the index is not ready."""
        from core.recognition import build_recognizer

        st = self.settings
        return build_recognizer(self.sessions, index_dir=st.index_dir, models_dir=st.models_dir,
                                search_k=st.search_k, match_threshold=st.match_threshold,
                                unsure_threshold=st.unsure_threshold, subcrops=st.subcrops,
                                framestore_dir=st.framestore_dir, milvus=self.milvus_config())

    def media_limits(self) -> MediaLimits:
        from core.media import MediaLimits

        st = self.settings
        return MediaLimits(max_bytes=st.max_upload_bytes, max_pixels=st.max_pixels,
                           max_frames=st.max_frames, max_seconds=st.max_clip_seconds,
                           max_animation_frames=st.max_animation_frames,
                           max_frame_pixels=st.max_frame_pixels,
                           max_decode_pixels=st.max_decode_pixels,
                           max_decode_seconds=st.max_decode_seconds)

    def service(self, *, user_rate: int | None = None,
                chat_rate: int | None = None) -> RecognitionService:
        """The RecognitionService the bots, the web chat and the commands share. The rate
        limits are ANIREC_USER_RATE_PER_MINUTE and ANIREC_CHAT_RATE_PER_MINUTE unless given."""
        from core.previews import PreviewMaker
        from core.service import RecognitionService

        st = self.settings
        return RecognitionService(
            self.recognizer, self.feedback_store(), limits=self.media_limits(),
            previews=PreviewMaker(st.previews_dir), queue_size=st.queue_size,
            user_rate_per_minute=user_rate or st.user_rate_per_minute,
            chat_rate_per_minute=chat_rate or st.chat_rate_per_minute,
            images_dir=(st.home / "query-images") if st.store_query_images else None,
            deployed=self.deployed_state)

    def deployed_state(self) -> str:
        """What a recogniser would load now (a running bot reloads when it changes)."""
        from core.models.registry import deployed_state

        st = self.settings
        return deployed_state(self.sessions, st.models_dir, st.index_dir)
