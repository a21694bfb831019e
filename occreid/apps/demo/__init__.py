"""`occreid demo`: the main job on SynthOcc (run.py) and its report (report.py)."""
