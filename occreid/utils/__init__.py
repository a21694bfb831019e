"""Small shared utilities every package may import: atomic file writes, output-path checks, content hashing,
device resolution, progress output and torch.distributed helpers. Nothing here imports the rest of occreid
(except its errors)."""
