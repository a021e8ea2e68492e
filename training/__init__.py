"""Training and evaluation of AniRec models (scene embedder, series head, faces, characters)."""
