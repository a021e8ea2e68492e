"""Recognition: one query picture or clip in, the places of the library it comes from out.

One module per stage of the pipeline (`pipeline.Recognizer.recognize` lists them in order):
framing (the query's views), candidates (search, grouping, the frames' vote, verification,
ranking), regions (crops: region vectors, locating in thumbnails), checks (colour, detail,
near-ties), correlation (their maths), thumbnails (the frame store's decoded thumbnails),
calibration (the confidence), characters (faces and who they are); params gathers every
stage's tuning.
"""

from core.recognition.calibration import Calibration, features_of
from core.recognition.characters import CharacterRecognizer, build_character_recognizer
from core.recognition.framing import LUMA, View, clip_views, query_views
from core.recognition.params import RecognitionParams
from core.recognition.pipeline import Recognizer, SeriesHead, build_recognizer

__all__ = [
    "LUMA",
    "Calibration",
    "CharacterRecognizer",
    "RecognitionParams",
    "Recognizer",
    "SeriesHead",
    "View",
    "build_character_recognizer",
    "build_recognizer",
    "clip_views",
    "features_of",
    "query_views",
]
