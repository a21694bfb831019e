"""Data: dataset records and loaders, SynthOcc, transforms and samplers."""
