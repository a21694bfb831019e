"""occreid: occluded person re-identification (PGFL-KD, OGFR and a strong baseline)."""

__version__ = "0.1.0"
