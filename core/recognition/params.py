"""Every tuning value of the recognition pipeline in one place, each stage's own parameter
object gathered, so an evaluation can sweep them (`Recognizer(params=...)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.recognition.candidates import GroupParams, RankParams, VerifyParams
from core.recognition.checks import CheckParams, TieParams
from core.recognition.correlation import DetailParams
from core.recognition.regions import RegionParams
from core.recognition.thumbnails import ThumbParams


@dataclass(frozen=True)
class RecognitionParams:
    """The parameters of every stage; the defaults are the tuned values."""

    group: GroupParams = field(default_factory=GroupParams)  # grouping hits, the frames' vote
    verify: VerifyParams = field(default_factory=VerifyParams)  # pinning the timestamp
    regions: RegionParams = field(default_factory=RegionParams)  # crops: regions, locating
    thumbs: ThumbParams = field(default_factory=ThumbParams)  # thumbnail sizes and caches
    check: CheckParams = field(default_factory=CheckParams)  # the colour check
    detail: DetailParams = field(default_factory=DetailParams)  # the detail check
    ties: TieParams = field(default_factory=TieParams)  # near-ties settled by the detail check
    rank: RankParams = field(default_factory=RankParams)  # recap penalty, series fusion
