"""Camera recordings: MOTChallenge track files and `seqinfo.ini` (mot), frames from a folder or a video
(frames), and synthetic recordings with ground truth (synth: `occreid synth-video`). docs/recordings.md."""

from occreid.data.recordings.frames import folder_frames, folder_size, video_frames, video_info
from occreid.data.recordings.mot import SeqInfo, Tracks, read_seqinfo, read_tracks
from occreid.data.recordings.synth import SynthVideoSettings, synth_video

__all__ = [
    "SeqInfo",
    "SynthVideoSettings",
    "Tracks",
    "folder_frames",
    "folder_size",
    "read_seqinfo",
    "read_tracks",
    "synth_video",
    "video_frames",
    "video_info",
]
