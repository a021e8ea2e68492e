"""AniRec engine: media loading, models, vector index, recognition and feedback (no chat code)."""

__version__ = "0.1.0"
